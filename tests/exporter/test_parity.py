"""compare_output judges like numpy.allclose and reports the worst absolute and relative errors."""

from __future__ import annotations

import numpy as np

from exporter.parity import OutputComparison, compare_output


def compare(expected: list[float], actual: list[float], *, atol: float = 1e-4, rtol: float = 1e-3) -> OutputComparison:
    return compare_output(
        np.array(expected, dtype=np.float32),
        np.array(actual, dtype=np.float32),
        batch_size=1,
        output="y",
        atol=atol,
        rtol=rtol,
    )


def test_difference_within_atol_plus_rtol_times_expected_passes() -> None:
    comparison = compare([100.0, 0.0], [100.09, 0.00005])

    assert comparison.passed
    assert comparison.max_abs_error > 0.05


def test_difference_beyond_tolerance_fails_and_reports_worst_errors() -> None:
    comparison = compare([2.0, 4.0], [2.5, 4.0], atol=0.0, rtol=0.0)

    assert not comparison.passed
    assert comparison.max_abs_error == 0.5
    assert comparison.max_rel_error == 0.25


def test_relative_error_ignores_elements_whose_expected_value_is_zero() -> None:
    comparison = compare([0.0, 1.0], [1e-5, 1.0])

    assert comparison.passed
    assert comparison.max_rel_error == 0.0


def test_nan_in_both_outputs_agrees_but_nan_in_one_fails() -> None:
    assert compare([float("nan"), 1.0], [float("nan"), 1.0]).passed

    one_sided = compare([float("nan"), 1.0], [0.0, 1.0])

    assert not one_sided.passed
    assert one_sided.problem is not None


def test_shape_mismatch_fails_with_both_shapes_named() -> None:
    comparison = compare_output(
        np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), batch_size=2, output="y", atol=1, rtol=1
    )

    assert not comparison.passed
    assert comparison.problem == "shape differs: PyTorch [2, 3], ONNX Runtime [2, 4]"


def test_top1_agreement_is_the_share_of_rows_whose_argmax_matches() -> None:
    expected = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    actual = np.array([[0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]], np.float32)

    comparison = compare_output(expected, actual, batch_size=4, output="y", atol=1, rtol=1)

    assert comparison.top1_agreement == 0.75


def test_top1_agreement_is_absent_for_outputs_that_are_not_class_scores() -> None:
    comparison = compare(np.zeros(3, np.float32).tolist(), np.zeros(3, np.float32).tolist())

    assert comparison.top1_agreement is None
