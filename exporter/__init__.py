"""Export PyTorch models to ONNX, prove parity with ONNX Runtime, and publish them into a model repository."""

from exporter.errors import (
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

__all__ = [
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
    "RepositoryError",
    "WeightsMismatchError",
    "export_model",
]
