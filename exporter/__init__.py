"""Export PyTorch models to ONNX, prove parity with ONNX Runtime, and publish them into a model repository."""

from exporter.errors import (
    CalibrationDataError,
    ConversionError,
    ExportArgumentError,
    ExportError,
    FixedBatchError,
    InputShapeError,
    ModelReferenceError,
    ParityError,
    RepositoryError,
    WeightsMismatchError,
)
from exporter.export import ExportResult, export_model
from exporter.parity import OutputComparison, ParityReport
from exporter.precision import DEFAULT_TOLERANCES, PRECISIONS, Precision, Tolerances

__all__ = [
    "DEFAULT_TOLERANCES",
    "PRECISIONS",
    "CalibrationDataError",
    "ConversionError",
    "ExportArgumentError",
    "ExportError",
    "ExportResult",
    "FixedBatchError",
    "InputShapeError",
    "ModelReferenceError",
    "OutputComparison",
    "ParityError",
    "ParityReport",
    "Precision",
    "RepositoryError",
    "Tolerances",
    "WeightsMismatchError",
    "export_model",
]
