"""What the batcher reports about one model version: Triton's ModelStatistics, and the Prometheus metrics.

Both outlets are fed from these few methods, so the batcher records each fact once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from server.metrics import ModelMetrics


class ReleaseReason(StrEnum):
    """Why the batcher sent a batch to the model."""

    FULL = "full"  # reached max_batch_size
    PREFERRED = "preferred"  # reached one of preferred_batch_sizes
    DELAY = "delay"  # its oldest request waited max_queue_delay_microseconds
    INSTANCE_FREE = "instance_free"  # delay 0: whatever was queued when an instance came free


@dataclass
class Duration:
    """A count and a total in nanoseconds, as Triton's StatisticDuration."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class BatchSizeStatistics:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStatistics:
    """Updated only from the event loop thread, so it needs no lock."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows
    execution_count: int = 0  # batches run
    last_inference_ms: int = 0
    batches: dict[int, BatchSizeStatistics] = field(default_factory=dict)
    release_reasons: Counter[ReleaseReason] = field(default_factory=Counter)
    metrics: ModelMetrics | None = None  # None: Prometheus recording is off

    def record_queue_wait(self, seconds: float) -> None:
        self.queue.add(int(seconds * 1e9))
        if self.metrics is not None:
            self.metrics.queue_wait.observe(seconds)

    def record_load(self, queued: int, active: int) -> None:
        """Queue depth and in-flight requests. Sampled (at each batch, and when the model goes idle)
        rather than on every request: gauges are read every scrape interval, and two gauge writes
        per request were a measurable share of the cost of metrics."""
        if self.metrics is not None:
            self.metrics.queue_depth.set(queued)
            self.metrics.inflight.set(active)

    def record_queue_full(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_rejections.inc()

    def record_deadline_expired(self) -> None:
        if self.metrics is not None:
            self.metrics.deadline_expiries.inc()

    def record_execution(
        self,
        batch_size: int,
        request_count: int,
        reason: ReleaseReason,
        input_ns: int,
        infer_ns: int,
        output_ns: int,
    ) -> None:
        """One batch ran: Triton counts compute per request, and per batch size in batch_stats."""
        self.execution_count += 1
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.release_reasons[reason] += 1
        self.compute_input.add(input_ns * request_count, request_count)
        self.compute_infer.add(infer_ns * request_count, request_count)
        self.compute_output.add(output_ns * request_count, request_count)
        per_size = self.batches.setdefault(batch_size, BatchSizeStatistics())
        per_size.compute_input.add(input_ns)
        per_size.compute_infer.add(infer_ns)
        per_size.compute_output.add(output_ns)
        if self.metrics is not None:
            self.metrics.batch_size.observe(batch_size)
            self.metrics.compute_duration.observe((input_ns + infer_ns + output_ns) / 1e9)
            self.metrics.inferences.inc(batch_size)
            self.metrics.execution(reason.value).inc()
