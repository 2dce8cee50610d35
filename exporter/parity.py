"""Prove an ONNX file computes what the PyTorch model computes, on the same seeded inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from exporter.model_io import output_tensors, random_inputs

EXECUTION_PROVIDER = "CPUExecutionProvider"
SEEDED_INPUTS = "seeded standard normal"
CALIBRATION_INPUTS = "calibration data"


@dataclass(frozen=True)
class OutputComparison:
    """One output at one batch size: how far ONNX Runtime strayed from PyTorch."""

    batch_size: int
    output: str
    max_abs_error: float
    max_rel_error: float
    passed: bool
    problem: str | None = None  # set when the outputs could not be compared (shape or dtype differ)
    # Share of rows whose highest-scoring class is the same in both runtimes; only for [batch, classes] outputs.
    top1_agreement: float | None = None

    def describe(self) -> str:
        where = f"output {self.output!r} at batch size {self.batch_size}"
        if self.problem is not None:
            return f"{where}: {self.problem}"
        return f"{where}: max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}"


@dataclass(frozen=True)
class ParityReport:
    """Every comparison made, the tolerances judged against, and the library versions that ran them."""

    batch_sizes: tuple[int, ...]
    atol: float
    rtol: float
    seed: int
    comparisons: tuple[OutputComparison, ...]
    precision: str = "fp32"  # of the ONNX graph; the PyTorch reference is always run as given (fp32)
    input_source: str = SEEDED_INPUTS

    @property
    def passed(self) -> bool:
        return all(comparison.passed for comparison in self.comparisons)

    @property
    def failures(self) -> list[OutputComparison]:
        return [comparison for comparison in self.comparisons if not comparison.passed]

    def max_errors(self) -> dict[str, dict[str, float]]:
        """Worst abs and rel error per output across all batch sizes, and top-1 agreement where it applies."""
        worst: dict[str, dict[str, float]] = {}
        for comparison in self.comparisons:
            entry = worst.setdefault(comparison.output, {"max_abs_error": 0.0, "max_rel_error": 0.0})
            entry["max_abs_error"] = max(entry["max_abs_error"], comparison.max_abs_error)
            entry["max_rel_error"] = max(entry["max_rel_error"], comparison.max_rel_error)
        for output, entry in worst.items():
            agreement = self.top1_agreement(output)
            if agreement is not None:
                entry["top1_agreement"] = agreement
        return worst

    def top1_agreement(self, output: str) -> float | None:
        """Share of all compared rows (every batch size pooled) on which both runtimes pick the same class."""
        rated = [c for c in self.comparisons if c.output == output and c.top1_agreement is not None]
        rows = sum(c.batch_size for c in rated)
        if not rated or rows == 0:
            return None
        return sum(c.top1_agreement * c.batch_size for c in rated if c.top1_agreement is not None) / rows

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "precision": self.precision,
            "batch_sizes": list(self.batch_sizes),
            "tolerances": {"atol": self.atol, "rtol": self.rtol},
            "seed": self.seed,
            "input_source": self.input_source,
            "outputs": self.max_errors(),
            "checks": [
                {
                    "batch_size": c.batch_size,
                    "output": c.output,
                    "max_abs_error": c.max_abs_error,
                    "max_rel_error": c.max_rel_error,
                    "passed": c.passed,
                    **({"top1_agreement": c.top1_agreement} if c.top1_agreement is not None else {}),
                    **({"problem": c.problem} if c.problem is not None else {}),
                }
                for c in self.comparisons
            ],
            "execution_provider": EXECUTION_PROVIDER,
            "torch_version": torch.__version__,
            "onnxruntime_version": onnxruntime.__version__,
        }


def check_parity(
    reference: Callable[..., Any],
    onnx_path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    input_batches: Sequence[tuple[torch.Tensor, ...]],
    atol: float,
    rtol: float,
    seed: int,
    precision: str = "fp32",
    input_source: str = SEEDED_INPUTS,
) -> ParityReport:
    """Run `reference` (under no_grad) and ONNX Runtime on each batch of inputs and compare every output."""
    session = onnxruntime.InferenceSession(str(onnx_path), providers=[EXECUTION_PROVIDER])
    comparisons: list[OutputComparison] = []
    for inputs in input_batches:
        batch_size = int(inputs[0].shape[0])
        with torch.no_grad():
            expected = output_tensors(reference(*inputs), output_names)
        actual = session.run(
            list(output_names), {name: tensor.numpy() for name, tensor in zip(input_names, inputs, strict=True)}
        )
        for name, expected_tensor, actual_array in zip(output_names, expected, actual, strict=True):
            comparisons.append(
                compare_output(
                    expected_tensor.detach().cpu().numpy(),
                    np.asarray(actual_array),
                    batch_size=batch_size,
                    output=name,
                    atol=atol,
                    rtol=rtol,
                )
            )
    return ParityReport(
        batch_sizes=tuple(int(inputs[0].shape[0]) for inputs in input_batches),
        atol=atol,
        rtol=rtol,
        seed=seed,
        comparisons=tuple(comparisons),
        precision=precision,
        input_source=input_source,
    )


def seeded_input_batches(
    *, batch_sizes: Sequence[int], input_shape: Sequence[int], input_dtype: torch.dtype, count: int, seed: int
) -> list[tuple[torch.Tensor, ...]]:
    """One tuple of `count` seeded random inputs per batch size; batch size b uses seed + b."""
    return [
        random_inputs(batch_size=size, input_shape=input_shape, dtype=input_dtype, count=count, seed=seed + size)
        for size in batch_sizes
    ]


def compare_output(
    expected: np.ndarray, actual: np.ndarray, *, batch_size: int, output: str, atol: float, rtol: float
) -> OutputComparison:
    """Pass when |actual - expected| <= atol + rtol * |expected| everywhere, as numpy.allclose decides."""
    if expected.shape != actual.shape:
        mismatch = f"shape differs: PyTorch {list(expected.shape)}, ONNX Runtime {list(actual.shape)}"
        return OutputComparison(batch_size, output, float("inf"), float("inf"), False, mismatch)
    if expected.dtype != actual.dtype:
        mismatch = f"dtype differs: PyTorch {expected.dtype}, ONNX Runtime {actual.dtype}"
        return OutputComparison(batch_size, output, float("inf"), float("inf"), False, mismatch)
    expected64 = expected.astype(np.float64)
    actual64 = actual.astype(np.float64)
    # A NaN where PyTorch also has a NaN is agreement, not an error.
    within = np.isclose(actual64, expected64, rtol=rtol, atol=atol, equal_nan=True)
    both_finite = np.isfinite(expected64) & np.isfinite(actual64)
    abs_error = np.abs(actual64 - expected64)[both_finite]
    magnitude = np.abs(expected64)[both_finite]
    # Relative error is undefined where PyTorch's value is exactly zero; atol covers those elements.
    nonzero = magnitude > 0
    max_abs = float(abs_error.max()) if abs_error.size else 0.0
    max_rel = float((abs_error[nonzero] / magnitude[nonzero]).max()) if nonzero.any() else 0.0
    passed = bool(within.all())
    problem: str | None = None
    if not passed and not np.array_equal(np.isfinite(expected64), np.isfinite(actual64)):
        problem = "NaN or infinity in one runtime's output but not the other's"
    return OutputComparison(batch_size, output, max_abs, max_rel, passed, problem, _top1_agreement(expected, actual))


def _top1_agreement(expected: np.ndarray, actual: np.ndarray) -> float | None:
    """For [batch, classes] float outputs, the share of rows whose argmax is the same; None for other shapes."""
    if expected.ndim != 2 or expected.shape[1] < 2 or expected.shape[0] == 0:
        return None
    if not np.issubdtype(expected.dtype, np.floating):
        return None
    return float(np.mean(np.argmax(expected, axis=1) == np.argmax(actual, axis=1)))
