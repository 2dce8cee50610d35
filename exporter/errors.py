"""Every way an export can fail, as one exception family so callers catch `ExportError` once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.parity import ParityReport


class ExportError(Exception):
    """Base class: the export failed and nothing was published."""


class ExportArgumentError(ExportError):
    """An argument to the export is invalid on its face (names, version, labels, dtype)."""


class CalibrationDataError(ExportArgumentError):
    """int8-static calibration data is missing, unreadable, or does not fit the model's inputs."""


class ModelReferenceError(ExportError):
    """A `package.module:factory` reference or TorchScript file does not give a model."""


class WeightsMismatchError(ExportError):
    """A state_dict does not fit the module: missing or unexpected keys, or tensor sizes differ."""


class InputShapeError(ExportError):
    """The model raised when called on an example input of the requested shape."""


class ConversionError(ExportError):
    """torch.onnx could not turn the model into an ONNX graph (e.g. an operator with no ONNX form)."""


class FixedBatchError(ExportError):
    """The exported graph has a fixed batch size, so it could not serve dynamic batches."""


class ParityError(ExportError):
    """ONNX Runtime's outputs differ from PyTorch's by more than the tolerances allow."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


class RepositoryError(ExportError):
    """The model repository could not be written, or the version already exists."""
