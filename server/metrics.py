"""Tau's Prometheus metrics: defined once, in prometheus_client's one default registry.

Each metric is recorded where the thing it measures happens: request outcomes
and end-to-end time at the gRPC edge, queue wait and batch formation in the
batcher, compute time around the ONNX Runtime call, load state in the
repository. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import Collector


class BufferedHistogram:
    """A histogram child whose observations are appended to a list on the hot path and folded into
    the Prometheus histogram in bulk (one numpy pass), before each scrape and once a second.

    A prometheus_client observation takes a lock and walks the buckets: measured, the per-request
    observations were most of what recording metrics cost. Folding relies on the child's bucket
    and sum values (`_upper_bounds`, `_buckets`, `_sum`), stable across prometheus_client 0.x.
    """

    def __init__(self, child: Histogram) -> None:
        self._child: Any = child
        self._bounds = np.asarray(self._child._upper_bounds, dtype=np.float64)
        self._pending: list[float] = []
        _BUFFERED.add(self)

    def observe(self, value: float) -> None:
        self._pending.append(value)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        values = np.asarray(pending, dtype=np.float64)
        # Prometheus buckets are "value <= bound": the first bound not below the value.
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._bounds))
        for index in np.flatnonzero(counts):
            self._child._buckets[index].inc(int(counts[index]))
        self._child._sum.inc(float(values.sum()))


class BufferedCounter:
    """A counter child incremented in a plain integer on the hot path, folded in like BufferedHistogram."""

    def __init__(self, child: Counter) -> None:
        self._child = child
        self._pending = 0
        _BUFFERED.add(self)

    def inc(self, amount: int = 1) -> None:
        self._pending += amount

    def flush(self) -> None:
        pending, self._pending = self._pending, 0
        if pending:
            self._child.inc(pending)


class BufferedGauge:
    """A gauge child whose latest value is kept in a plain attribute and written at flush time.

    The batcher samples queue depth and in-flight requests at every batch; a Prometheus gauge
    write takes a lock, and only the value at scrape time is ever read.
    """

    def __init__(self, child: Gauge) -> None:
        self._child = child
        self._pending: float | None = None
        _BUFFERED.add(self)

    def set(self, value: float) -> None:
        self._pending = value

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._child.set(pending)


_BUFFERED: weakref.WeakSet[BufferedHistogram | BufferedCounter | BufferedGauge] = weakref.WeakSet()


def flush_buffered_metrics() -> None:
    """Fold every pending observation into its metric (called before a scrape, and periodically)."""
    for metric in list(_BUFFERED):
        metric.flush()


class _FlushBeforeScrape(Collector):
    """Registered ahead of Tau's metrics, so a scrape of this process sees every observation."""

    def collect(self) -> Iterable[Any]:
        flush_buffered_metrics()
        return []


REGISTRY.register(_FlushBeforeScrape())

# Sub-millisecond resolution for small CPU models, up to seconds for big batches.
LATENCY_BUCKETS_SECONDS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MODEL_LABELS = ("model", "version")
RELEASE_REASONS = ("full", "preferred", "delay", "instance_free")
# Requests for models that do not exist are counted under this name, so a client cannot grow label cardinality.
UNKNOWN_MODEL = "_unknown"

REQUESTS = Counter(
    "tau_requests", "ModelInfer requests by outcome and gRPC status code", [*MODEL_LABELS, "outcome", "code"]
)
REQUEST_DURATION = Histogram(
    "tau_request_duration_seconds",
    "ModelInfer time from receipt to response, at the gRPC edge",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS_SECONDS,
)
QUEUE_WAIT = Histogram(
    "tau_queue_wait_seconds",
    "Time a request waited in the batcher's queue before its batch started",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS_SECONDS,
)
COMPUTE_DURATION = Histogram(
    "tau_compute_duration_seconds",
    "Time one batch took in ONNX Runtime (concatenate, run, split)",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS_SECONDS,
)
BATCH_SIZE = Histogram(
    "tau_batch_size_rows", "Rows in each batch the batcher formed", MODEL_LABELS, buckets=BATCH_SIZE_BUCKETS
)
EXECUTIONS = Counter("tau_executions", "Batches run, by why the batcher released them", [*MODEL_LABELS, "reason"])
INFERENCES = Counter("tau_inferences", "Rows inferred (Triton's inference count)", MODEL_LABELS)
# multiprocess_mode says how --workers N processes add up (ignored with one process).
QUEUE_DEPTH = Gauge(
    "tau_queue_depth_requests",
    "Requests waiting in the batcher's queue, sampled at each batch",
    MODEL_LABELS,
    multiprocess_mode="livesum",
)
QUEUE_CAPACITY = Gauge(
    "tau_queue_capacity_requests", "The queue's max_queue_size", MODEL_LABELS, multiprocess_mode="livesum"
)
INFLIGHT = Gauge(
    "tau_inflight_requests",
    "Admitted ModelInfer requests not yet answered (queued or running), sampled at each batch",
    MODEL_LABELS,
    multiprocess_mode="livesum",
)
QUEUE_REJECTIONS = Counter("tau_queue_rejections", "Requests refused because the queue was full", MODEL_LABELS)
DEADLINE_EXPIRIES = Counter("tau_deadline_expiries", "Requests whose deadline passed while queued", MODEL_LABELS)
MODEL_READY = Gauge(
    "tau_model_ready",
    "1 when the model version serves (in every worker), 0 when it failed to load",
    MODEL_LABELS,
    multiprocess_mode="livemin",
)
MODEL_LOAD_DURATION = Gauge(
    "tau_model_load_duration_seconds",
    "How long the model version took to load",
    MODEL_LABELS,
    multiprocess_mode="livemax",
)
# An info-style gauge (value 1) rather than prometheus_client's Info, which multiprocess mode cannot aggregate.
EXECUTION_PROVIDER = Gauge(
    "tau_model_execution_provider_info",
    "The ONNX Runtime execution provider actually active for the model (value 1)",
    [*MODEL_LABELS, "provider", "requested"],
    multiprocess_mode="livemax",
)


@dataclass
class ModelMetrics:
    """One model version's metric children, resolved once so the hot path does no label lookups."""

    requests_ok: BufferedCounter
    request_duration: BufferedHistogram
    queue_wait: BufferedHistogram
    compute_duration: BufferedHistogram
    batch_size: BufferedHistogram
    inferences: BufferedCounter
    queue_depth: BufferedGauge
    inflight: BufferedGauge
    queue_rejections: Counter
    deadline_expiries: Counter
    executions: dict[str, BufferedCounter]
    model: str
    version: str

    @classmethod
    def for_model(cls, model: str, version: str) -> ModelMetrics:
        labels = (model, version)
        return cls(
            requests_ok=BufferedCounter(REQUESTS.labels(*labels, "success", "OK")),
            request_duration=BufferedHistogram(REQUEST_DURATION.labels(*labels)),
            queue_wait=BufferedHistogram(QUEUE_WAIT.labels(*labels)),
            compute_duration=BufferedHistogram(COMPUTE_DURATION.labels(*labels)),
            batch_size=BufferedHistogram(BATCH_SIZE.labels(*labels)),
            inferences=BufferedCounter(INFERENCES.labels(*labels)),
            executions={reason: BufferedCounter(EXECUTIONS.labels(*labels, reason)) for reason in RELEASE_REASONS},
            queue_depth=BufferedGauge(QUEUE_DEPTH.labels(*labels)),
            inflight=BufferedGauge(INFLIGHT.labels(*labels)),
            queue_rejections=QUEUE_REJECTIONS.labels(*labels),
            deadline_expiries=DEADLINE_EXPIRIES.labels(*labels),
            model=model,
            version=version,
        )

    def execution(self, reason: str) -> BufferedCounter:
        return self.executions[reason]


def record_request(model: str, version: str, code: str) -> None:
    """Count one ModelInfer outcome at the gRPC edge; `code` is the gRPC status name."""
    REQUESTS.labels(model, version, "success" if code == "OK" else "failure", code).inc()


def record_model_loaded(model: str, version: str, provider: str, requested: str, load_seconds: float) -> None:
    MODEL_READY.labels(model, version).set(1)
    MODEL_LOAD_DURATION.labels(model, version).set(load_seconds)
    EXECUTION_PROVIDER.labels(model, version, provider, requested).set(1)


def record_model_failed(model: str, version: str) -> None:
    MODEL_READY.labels(model, version).set(0)


def set_queue_capacity(model: str, version: str, capacity: int) -> None:
    QUEUE_CAPACITY.labels(model, version).set(capacity)


def record_model_unloaded(model: str, version: str) -> None:
    MODEL_READY.labels(model, version).set(0)
