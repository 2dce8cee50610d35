"""Calibration data: read from .npy/.npz, checked against the model's inputs, repeated to fill parity batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from exporter.calibration import calibration_rows, check_calibration_data, load_calibration_file
from exporter.errors import CalibrationDataError


def check(data: object, input_names: tuple[str, ...] = ("x",)) -> dict[str, np.ndarray]:
    return check_calibration_data(
        data,  # type: ignore[arg-type]  # deliberately wrong types are part of what is checked
        input_names=input_names,
        input_shape=(4,),
        input_dtype=torch.float32,
    )


def test_npy_file_loads_as_one_array(tmp_path: Path) -> None:
    np.save(tmp_path / "calibration.npy", np.ones((3, 4), np.float32))

    loaded = load_calibration_file(tmp_path / "calibration.npy")

    assert isinstance(loaded, np.ndarray)
    assert loaded.shape == (3, 4)


def test_npz_file_loads_as_arrays_by_input_name(tmp_path: Path) -> None:
    np.savez(tmp_path / "calibration.npz", a=np.ones((3, 4), np.float32), b=np.zeros((3, 4), np.float32))

    loaded = load_calibration_file(tmp_path / "calibration.npz")

    assert isinstance(loaded, dict)
    assert sorted(loaded) == ["a", "b"]


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("calibration.csv", b"1,2,3,4", r"must be .npy \(one array\) or .npz"),
        ("calibration.npy", b"not numpy", "cannot read calibration data from"),
        ("calibration.npz", b"not a zip", "cannot read calibration data from"),
    ],
)
def test_unreadable_calibration_file_is_named(tmp_path: Path, filename: str, content: bytes, message: str) -> None:
    (tmp_path / filename).write_bytes(content)

    with pytest.raises(CalibrationDataError, match=message):
        load_calibration_file(tmp_path / filename)


def test_missing_calibration_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CalibrationDataError, match="cannot read calibration data from"):
        load_calibration_file(tmp_path / "absent.npy")


def test_single_array_is_taken_as_the_only_input() -> None:
    data = np.ones((2, 4), np.float32)

    assert check(data)["x"] is data


def test_single_array_for_a_model_with_two_inputs_asks_for_a_mapping() -> None:
    with pytest.raises(CalibrationDataError, match=r"has inputs \['a', 'b'\]: give a mapping"):
        check(np.ones((2, 4), np.float32), ("a", "b"))


def test_inputs_with_different_sample_counts_are_rejected() -> None:
    with pytest.raises(CalibrationDataError, match="same number of samples"):
        check({"a": np.ones((2, 4), np.float32), "b": np.ones((3, 4), np.float32)}, ("a", "b"))


def test_empty_or_non_finite_calibration_is_rejected() -> None:
    with pytest.raises(CalibrationDataError, match="holds no samples"):
        check(np.ones((0, 4), np.float32))
    with pytest.raises(CalibrationDataError, match="NaN or infinity"):
        check(np.array([[0.0, np.nan, 0.0, 0.0]], np.float32))


def test_something_that_is_not_an_array_is_rejected() -> None:
    with pytest.raises(CalibrationDataError, match="must be a numpy array or a mapping"):
        check([[1.0, 2.0, 3.0, 4.0]])


def test_calibration_rows_repeat_from_the_start_to_fill_a_batch() -> None:
    (rows,) = calibration_rows({"x": np.arange(8, dtype=np.float32).reshape(2, 4)}, ["x"], 5)

    assert rows.shape == (5, 4)
    assert rows[:, 0].tolist() == [0.0, 4.0, 0.0, 4.0, 0.0]


def test_calibration_rows_start_where_asked() -> None:
    (rows,) = calibration_rows({"x": np.arange(12, dtype=np.float32).reshape(3, 4)}, ["x"], 2, start=2)

    assert rows[:, 0].tolist() == [8.0, 0.0]
