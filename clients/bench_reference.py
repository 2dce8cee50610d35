"""In-process ONNX Runtime timings: the speed the server would reach if serving cost nothing."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

MIN_RUNS = 10
WARMUP_RUNS = 3


@dataclass(frozen=True)
class InProcessTiming:
    """`runs` calls of session.run at one batch size: median call time and rows per second."""

    batch: int
    runs: int
    p50_ms: float
    rows_per_s: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def time_in_process(session: ort.InferenceSession, inputs: dict[str, np.ndarray], seconds: float) -> InProcessTiming:
    """Run back to back for about `seconds` (at least MIN_RUNS calls) after a short warmup."""
    output_names = [node.name for node in session.get_outputs()]
    for _ in range(WARMUP_RUNS):
        session.run(output_names, inputs)
    call_seconds: list[float] = []
    started = time.perf_counter()
    while len(call_seconds) < MIN_RUNS or time.perf_counter() - started < seconds:
        before = time.perf_counter()
        session.run(output_names, inputs)
        call_seconds.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    batch = int(next(iter(inputs.values())).shape[0])
    return InProcessTiming(
        batch=batch,
        runs=len(call_seconds),
        p50_ms=float(np.percentile(call_seconds, 50) * 1e3),
        rows_per_s=batch * len(call_seconds) / elapsed,
    )
