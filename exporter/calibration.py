"""Calibration data for int8-static quantization: read from .npy/.npz, checked against the model's inputs."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from exporter.errors import CalibrationDataError

CalibrationData = np.ndarray | Mapping[str, np.ndarray]


def check_calibration_data(
    data: CalibrationData | None,
    *,
    input_names: Sequence[str],
    input_shape: Sequence[int],
    input_dtype: torch.dtype,
) -> dict[str, np.ndarray]:
    """Calibration rows per input name, each [rows, *input_shape] of the input's dtype, or CalibrationDataError.

    A bare array stands for the only input; a model with several inputs needs a mapping keyed by input name.
    """
    if data is None:
        raise CalibrationDataError(
            "int8-static quantization needs calibration data: representative inputs of shape "
            f"[N, {', '.join(str(size) for size in input_shape)}] (N samples; a few hundred is typical), "
            "as calibration_data= or --calibration-data FILE.npy/.npz"
        )
    arrays = _arrays_by_input(data, input_names)
    expected_dtype = np.dtype(torch.empty(0, dtype=input_dtype).numpy().dtype)
    checked = {name: _check_array(name, arrays[name], tuple(input_shape), expected_dtype) for name in input_names}
    row_counts = {name: array.shape[0] for name, array in checked.items()}
    if len(set(row_counts.values())) > 1:
        raise CalibrationDataError(f"calibration inputs must hold the same number of samples, got {row_counts}")
    return checked


def _arrays_by_input(data: CalibrationData, input_names: Sequence[str]) -> Mapping[str, object]:
    if isinstance(data, np.ndarray):
        if len(input_names) != 1:
            raise CalibrationDataError(
                f"a single calibration array fits a model with one input; this model has inputs "
                f"{list(input_names)}: give a mapping (or an .npz file) keyed by input name"
            )
        return {input_names[0]: data}
    if not isinstance(data, Mapping):
        raise CalibrationDataError(
            f"calibration data must be a numpy array or a mapping of input name to array, got {type(data).__name__}"
        )
    missing = [name for name in input_names if name not in data]
    unexpected = sorted(str(name) for name in data if name not in input_names)
    if missing or unexpected:
        raise CalibrationDataError(
            f"calibration data names {sorted(str(name) for name in data)}; expected the model's inputs "
            f"{list(input_names)} (missing {missing}, unexpected {unexpected})"
        )
    return data


def _check_array(name: str, array: object, input_shape: tuple[int, ...], expected_dtype: np.dtype) -> np.ndarray:
    where = f"calibration data for input {name!r}"
    if not isinstance(array, np.ndarray):
        raise CalibrationDataError(f"{where} must be a numpy array, got {type(array).__name__}")
    expected_shape = "[N, " + ", ".join(str(size) for size in input_shape) + "]"
    if array.ndim != len(input_shape) + 1 or tuple(array.shape[1:]) != input_shape:
        raise CalibrationDataError(f"{where}: expected shape {expected_shape} (N samples), got {list(array.shape)}")
    if array.shape[0] == 0:
        raise CalibrationDataError(f"{where} holds no samples; expected shape {expected_shape} with N >= 1")
    if array.dtype != expected_dtype:
        raise CalibrationDataError(
            f"{where}: expected dtype {expected_dtype}, the model input's dtype, got {array.dtype} "
            f"(convert it with .astype(numpy.{expected_dtype}))"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise CalibrationDataError(f"{where} contains NaN or infinity; calibration needs finite values")
    return array


def load_calibration_file(path: Path) -> CalibrationData:
    """A .npy file (one array, for a one-input model) or an .npz file (one array per input name)."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise CalibrationDataError(f"calibration file {path} must be .npy (one array) or .npz (arrays by input name)")
    try:
        # allow_pickle=False: a data file must not be able to run code when it is read.
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        return np.asarray(loaded)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise CalibrationDataError(f"cannot read calibration data from {path}: {error}") from error


def calibration_rows(
    calibration: Mapping[str, np.ndarray], input_names: Sequence[str], count: int, *, start: int = 0
) -> tuple[torch.Tensor, ...]:
    """`count` consecutive calibration samples of each input from row `start`, wrapping around at the end."""
    tensors = []
    for name in input_names:
        array = calibration[name]
        indices = (start + np.arange(count)) % array.shape[0]
        tensors.append(torch.from_numpy(np.ascontiguousarray(array[indices])))
    return tuple(tensors)
