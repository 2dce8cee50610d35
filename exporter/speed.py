"""How fast ONNX Runtime runs the fp32 graph and its reduced-precision copy, timed the same way in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
import torch

from exporter.model_io import random_inputs
from exporter.parity import EXECUTION_PROVIDER

# One thread, so the figure is per core and not a measure of how many cores the exporting machine has.
SPEED_THREADS = 1
DEFAULT_SPEED_RUNS = 30
WARMUP_RUNS = 5


@dataclass(frozen=True)
class BatchTiming:
    """Median latency of one session.run at one batch size, for the fp32 graph and the reduced one."""

    batch_size: int
    fp32_latency_ms: float
    latency_ms: float

    @property
    def speedup(self) -> float:
        """fp32 latency / reduced latency: above 1 the reduced graph is faster."""
        return self.fp32_latency_ms / self.latency_ms

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "fp32_latency_ms": self.fp32_latency_ms,
            "latency_ms": self.latency_ms,
            "fp32_throughput_samples_per_s": _throughput(self.batch_size, self.fp32_latency_ms),
            "throughput_samples_per_s": _throughput(self.batch_size, self.latency_ms),
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class SpeedComparison:
    """The fp32 graph against its `precision` copy: latency per batch size and file size."""

    precision: str
    runs: int
    fp32_model_bytes: int
    model_bytes: int
    timings: tuple[BatchTiming, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "baseline": "fp32",
            "precision": self.precision,
            "execution_provider": EXECUTION_PROVIDER,
            "intra_op_num_threads": SPEED_THREADS,
            "statistic": "median",
            "runs": self.runs,
            "warmup_runs": WARMUP_RUNS,
            "fp32_model_bytes": self.fp32_model_bytes,
            "model_bytes": self.model_bytes,
            "batches": [timing.to_json_dict() for timing in self.timings],
        }


def compare_speed(
    fp32_path: Path,
    reduced_path: Path,
    *,
    precision: str,
    input_names: Sequence[str],
    input_shape: Sequence[int],
    input_dtype: torch.dtype,
    batch_sizes: Sequence[int],
    runs: int,
    seed: int,
) -> SpeedComparison:
    """Time both graphs on the same seeded inputs, alternating run by run so drift hits both alike."""
    fp32_session = _timing_session(fp32_path)
    reduced_session = _timing_session(reduced_path)
    timings: list[BatchTiming] = []
    for batch_size in batch_sizes:
        inputs = random_inputs(
            batch_size=batch_size, input_shape=input_shape, dtype=input_dtype, count=len(input_names), seed=seed
        )
        feed = {name: tensor.numpy() for name, tensor in zip(input_names, inputs, strict=True)}
        for _ in range(WARMUP_RUNS):
            fp32_session.run(None, feed)
            reduced_session.run(None, feed)
        fp32_seconds: list[float] = []
        reduced_seconds: list[float] = []
        for _ in range(runs):
            fp32_seconds.append(_time_run(fp32_session, feed))
            reduced_seconds.append(_time_run(reduced_session, feed))
        timings.append(
            BatchTiming(
                batch_size=batch_size,
                fp32_latency_ms=statistics.median(fp32_seconds) * 1e3,
                latency_ms=statistics.median(reduced_seconds) * 1e3,
            )
        )
    return SpeedComparison(
        precision=precision,
        runs=runs,
        fp32_model_bytes=fp32_path.stat().st_size,
        model_bytes=reduced_path.stat().st_size,
        timings=tuple(timings),
    )


def _timing_session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = SPEED_THREADS
    options.inter_op_num_threads = SPEED_THREADS
    return onnxruntime.InferenceSession(str(path), options, providers=[EXECUTION_PROVIDER])


def _time_run(session: onnxruntime.InferenceSession, feed: dict[str, Any]) -> float:
    start = time.perf_counter()
    session.run(None, feed)
    return time.perf_counter() - start


def _throughput(batch_size: int, latency_ms: float) -> float:
    return batch_size / (latency_ms / 1e3)
