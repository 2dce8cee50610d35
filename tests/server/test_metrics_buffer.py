"""Buffered metrics fold into exactly what direct prometheus_client calls would have recorded."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from server.metrics import LATENCY_BUCKETS_SECONDS, BufferedCounter, BufferedHistogram


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name.removeprefix(name), tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_buffered_histogram_matches_direct_observations_including_bucket_edges() -> None:
    direct_registry, buffered_registry = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("direct_h", "direct", buckets=LATENCY_BUCKETS_SECONDS, registry=direct_registry)
    buffered = BufferedHistogram(
        Histogram("buffered_h", "buffered", buckets=LATENCY_BUCKETS_SECONDS, registry=buffered_registry)
    )
    values = [*np.random.default_rng(0).exponential(0.01, 500), *LATENCY_BUCKETS_SECONDS, 0.0, 50.0]
    for value in values:
        direct.observe(value)
        buffered.observe(value)
    buffered.flush()
    buffered.flush()  # a second flush with nothing pending changes nothing
    assert samples(buffered_registry, "buffered_h") == samples(direct_registry, "direct_h")


def test_buffered_counter_folds_its_increments() -> None:
    registry = CollectorRegistry()
    counter = BufferedCounter(Counter("c", "counted", registry=registry))
    for _ in range(7):
        counter.inc()
    counter.inc(5)
    assert registry.get_sample_value("c_total") == 0
    counter.flush()
    assert registry.get_sample_value("c_total") == 12
