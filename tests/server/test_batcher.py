"""The batcher on a real ONNX Runtime session: merging, splitting, release rules, back-pressure, deadlines.

A `GatedGraph` wraps the real session so a test can hold the model's only
instance busy while it fills the queue; nothing about the model is faked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.batcher import Batcher
from server.config import DynamicBatchingConfig, ModelConfig
from server.errors import DeadlineExceededError, ExecutionError, QueueFullError
from server.runtime import OnnxSession
from server.statistics import ModelStatistics, ReleaseReason
from tests.server.onnx_builders import add_sub_model, variable_width_model

T = TypeVar("T")
OUTPUTS = ["OUTPUT0", "OUTPUT1"]


@pytest.fixture(scope="module")
def add_sub_session(tmp_path_factory: pytest.TempPathFactory) -> OnnxSession:
    path = add_sub_model(tmp_path_factory.mktemp("add_sub") / "model.onnx")
    return OnnxSession(path, ModelConfig(name="add_sub", max_batch_size=64))


class GatedGraph:
    """Runs the real session, optionally waiting for the test to open the gate; records each batch's rows."""

    def __init__(self, session: OnnxSession, gated: bool = False, seconds_per_call: float = 0.0) -> None:
        self.session = session
        self.seconds_per_call = seconds_per_call
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.batch_rows: list[int] = []
        self.started = threading.Event()

    def __call__(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        self.started.set()
        self.gate.wait(timeout=30)
        time.sleep(self.seconds_per_call)
        self.batch_rows.append(next(iter(inputs.values())).shape[0])
        return self.session.run(inputs, output_names)


def make_batcher(session: OnnxSession, graph: GatedGraph, **batching: object) -> tuple[Batcher, ModelStatistics]:
    config = replace(session.config, dynamic_batching=DynamicBatchingConfig(**batching))  # type: ignore[arg-type]
    statistics = ModelStatistics()
    return Batcher(graph, config, statistics, label="add_sub/1"), statistics


def with_max_batch_size(session: OnnxSession, max_batch_size: int) -> OnnxSession:
    clone = object.__new__(OnnxSession)
    clone.__dict__.update(session.__dict__)
    clone.config = replace(session.config, max_batch_size=max_batch_size)
    return clone


def rows_of(seed: int, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((rows, 16)).astype(np.float32) for name in ("INPUT0", "INPUT1")}


def run(coroutine: Awaitable[T]) -> T:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def wait_started(graph: GatedGraph) -> None:
    while not graph.started.is_set():
        await asyncio.sleep(0.001)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    row_counts=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=24),
    delay_microseconds=st.sampled_from([0, 500, 2000]),
    instances=st.integers(min_value=1, max_value=3),
)
def test_every_response_equals_running_that_request_alone(
    add_sub_session: OnnxSession, row_counts: list[int], delay_microseconds: int, instances: int
) -> None:
    session = with_max_batch_size(add_sub_session, 16)
    session.config = replace(session.config, instance_count=instances)

    async def scenario() -> None:
        batcher, statistics = make_batcher(
            session, GatedGraph(session), max_queue_delay_microseconds=delay_microseconds
        )
        requests = [rows_of(seed, rows) for seed, rows in enumerate(row_counts)]
        results = await asyncio.gather(
            *(batcher.infer(inputs, OUTPUTS, rows=len(inputs["INPUT0"])) for inputs in requests)
        )
        await batcher.close()
        for inputs, result in zip(requests, results, strict=True):
            alone = session.run(inputs, OUTPUTS)
            np.testing.assert_array_equal(result["OUTPUT0"], alone["OUTPUT0"])
            np.testing.assert_array_equal(result["OUTPUT1"], alone["OUTPUT1"])
        assert statistics.inference_count == sum(row_counts)
        assert max(statistics.batches) <= 16

    run(scenario())


def test_mixed_row_counts_merge_into_batches_that_never_exceed_the_max(add_sub_session: OnnxSession) -> None:
    session = with_max_batch_size(add_sub_session, 8)
    graph = GatedGraph(session, gated=True)

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher, statistics = make_batcher(session, graph, max_queue_delay_microseconds=0)
        first = asyncio.ensure_future(batcher.infer(rows_of(0, 1), OUTPUTS, rows=1))
        await wait_started(graph)  # the only instance is busy: the rest queue up together
        rest = [
            asyncio.ensure_future(batcher.infer(rows_of(i, n), OUTPUTS, rows=n))
            for i, n in enumerate([3, 2, 3, 5, 1], 1)
        ]
        await asyncio.sleep(0.05)
        graph.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        assert max(statistics.batches) <= 8
        return results

    results = run(scenario())
    assert graph.batch_rows[0] == 1
    assert graph.batch_rows[1] == 8  # 3 + 2 + 3 merged; 5 would overflow, so it waits
    assert sum(graph.batch_rows) == 15
    for seed, (rows, result) in enumerate(zip([1, 3, 2, 3, 5, 1], results, strict=True)):
        expected = session.run(rows_of(seed, rows), OUTPUTS)
        np.testing.assert_array_equal(result["OUTPUT0"], expected["OUTPUT0"])


def test_preferred_batch_size_is_released_without_waiting_for_the_delay(add_sub_session: OnnxSession) -> None:
    session = with_max_batch_size(add_sub_session, 16)
    graph = GatedGraph(session, gated=True)

    async def scenario() -> ModelStatistics:
        batcher, statistics = make_batcher(
            session, graph, max_queue_delay_microseconds=30_000_000, preferred_batch_sizes=[4]
        )
        blocker = asyncio.ensure_future(batcher.infer(rows_of(0, 4), OUTPUTS, rows=4))
        queued = [asyncio.ensure_future(batcher.infer(rows_of(i, 1), OUTPUTS, rows=1)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        graph.gate.set()
        await asyncio.wait_for(asyncio.gather(blocker, *queued[:4]), timeout=10)
        assert not queued[4].done()  # a lone fifth row waits for the 30 s delay
        queued[4].cancel()
        await batcher.close()
        return statistics

    statistics = run(scenario())
    assert graph.batch_rows == [4, 4]
    assert statistics.release_reasons[ReleaseReason.PREFERRED] == 2


def test_full_batch_is_released_at_once(add_sub_session: OnnxSession) -> None:
    session = with_max_batch_size(add_sub_session, 4)

    async def scenario() -> ModelStatistics:
        batcher, statistics = make_batcher(session, GatedGraph(session), max_queue_delay_microseconds=30_000_000)
        calls = [batcher.infer(rows_of(i, 1), OUTPUTS, rows=1) for i in range(4)]
        await asyncio.wait_for(asyncio.gather(*calls), timeout=10)
        await batcher.close()
        return statistics

    statistics = run(scenario())
    assert statistics.release_reasons == {ReleaseReason.FULL: 1}


def test_lone_request_is_released_by_the_delay(add_sub_session: OnnxSession) -> None:
    async def scenario() -> tuple[float, ModelStatistics]:
        batcher, statistics = make_batcher(
            add_sub_session, GatedGraph(add_sub_session), max_queue_delay_microseconds=200_000
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.infer(rows_of(0, 1), OUTPUTS, rows=1)
        elapsed = loop.time() - started
        await batcher.close()
        return elapsed, statistics

    elapsed, statistics = run(scenario())
    assert elapsed >= 0.2
    assert statistics.release_reasons == {ReleaseReason.DELAY: 1}


def test_zero_delay_takes_what_is_queued_when_an_instance_is_free(add_sub_session: OnnxSession) -> None:
    async def scenario() -> ModelStatistics:
        batcher, statistics = make_batcher(add_sub_session, GatedGraph(add_sub_session))
        await batcher.infer(rows_of(0, 2), OUTPUTS, rows=2)
        await batcher.close()
        return statistics

    assert run(scenario()).release_reasons == {ReleaseReason.INSTANCE_FREE: 1}


def test_full_queue_refuses_at_once_while_admitted_requests_succeed(add_sub_session: OnnxSession) -> None:
    graph = GatedGraph(add_sub_session, gated=True)

    async def scenario() -> None:
        batcher, _ = make_batcher(add_sub_session, graph, max_queue_size=2, enabled=False)
        running = asyncio.ensure_future(batcher.infer(rows_of(0, 1), OUTPUTS, rows=1))
        await wait_started(graph)
        admitted = [asyncio.ensure_future(batcher.infer(rows_of(i, 1), OUTPUTS, rows=1)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="queue is full"):
            await batcher.infer(rows_of(3, 1), OUTPUTS, rows=1)
        graph.gate.set()
        results = await asyncio.gather(running, *admitted)
        for seed, result in zip((0, 1, 2), results, strict=True):
            np.testing.assert_array_equal(result["OUTPUT0"], add_sub_session.run(rows_of(seed, 1), OUTPUTS)["OUTPUT0"])
        await batcher.close()

    run(scenario())


def test_request_whose_deadline_passes_in_the_queue_never_runs(add_sub_session: OnnxSession) -> None:
    graph = GatedGraph(add_sub_session, gated=True)

    async def scenario() -> ModelStatistics:
        batcher, statistics = make_batcher(add_sub_session, graph)
        running = asyncio.ensure_future(batcher.infer(rows_of(0, 1), OUTPUTS, rows=1))
        await wait_started(graph)
        with pytest.raises(DeadlineExceededError, match="timed out"):
            await batcher.infer(rows_of(1, 7), OUTPUTS, rows=7, timeout_seconds=0.05)
        assert batcher.queued == 0
        graph.gate.set()
        await running
        await batcher.close()
        return statistics

    statistics = run(scenario())
    assert graph.batch_rows == [1]
    assert statistics.inference_count == 1


def test_cancelled_request_leaves_the_queue_and_its_batch_mates_are_answered(add_sub_session: OnnxSession) -> None:
    session = with_max_batch_size(add_sub_session, 64)
    graph = GatedGraph(session, gated=True)

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher, _ = make_batcher(session, graph)
        running = asyncio.ensure_future(batcher.infer(rows_of(0, 1), OUTPUTS, rows=1))
        await wait_started(graph)
        queued = [asyncio.ensure_future(batcher.infer(rows_of(i, 2), OUTPUTS, rows=2)) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        queued[1].cancel()
        await asyncio.sleep(0.01)
        assert batcher.queued == 2
        graph.gate.set()
        results = await asyncio.gather(running, queued[0], queued[2])
        await batcher.close()
        return results

    results = run(scenario())
    assert graph.batch_rows == [1, 4]  # the cancelled request's two rows never ran
    for seed, result in zip((1, 3), results[1:], strict=True):
        np.testing.assert_array_equal(result["OUTPUT1"], session.run(rows_of(seed, 2), OUTPUTS)["OUTPUT1"])


def test_higher_priority_requests_leave_the_queue_first(add_sub_session: OnnxSession) -> None:
    graph = GatedGraph(add_sub_session, gated=True)
    finished: list[str] = []

    async def call(batcher: Batcher, label: str, rows: int, priority: int) -> None:
        await batcher.infer(rows_of(rows, rows), OUTPUTS, rows=rows, priority=priority)
        finished.append(label)

    async def scenario() -> None:
        batcher, _ = make_batcher(add_sub_session, graph, priority_levels=2, enabled=False)
        running = asyncio.ensure_future(call(batcher, "first", 1, 0))
        await wait_started(graph)
        low = asyncio.ensure_future(call(batcher, "low", 2, 2))
        default = asyncio.ensure_future(call(batcher, "default", 3, 0))
        await asyncio.sleep(0.01)
        high = asyncio.ensure_future(call(batcher, "high", 4, 1))
        await asyncio.sleep(0.01)
        graph.gate.set()
        await asyncio.gather(running, low, default, high)
        await batcher.close()

    run(scenario())
    assert finished == ["first", "high", "low", "default"]
    assert graph.batch_rows == [1, 4, 2, 3]


def test_requests_with_different_shapes_never_share_a_batch(tmp_path: Path) -> None:
    session = OnnxSession(variable_width_model(tmp_path / "model.onnx"), ModelConfig(name="variable_width"))
    graph = GatedGraph(session, gated=True)

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher, _ = make_batcher(session, graph)
        first = asyncio.ensure_future(batcher.infer({"INPUT0": np.ones((1, 2), np.float32)}, ["OUTPUT0"], rows=1))
        await wait_started(graph)
        narrow = [batcher.infer({"INPUT0": np.full((1, 3), i, np.float32)}, ["OUTPUT0"], rows=1) for i in range(3)]
        wide = [batcher.infer({"INPUT0": np.full((2, 5), i, np.float32)}, ["OUTPUT0"], rows=2) for i in range(2)]
        pending = asyncio.gather(first, *narrow, *wide)
        await asyncio.sleep(0.01)
        graph.gate.set()
        results = await pending
        await batcher.close()
        return results

    results = run(scenario())
    assert sorted(graph.batch_rows) == [1, 3, 4]
    for i, result in enumerate(results[1:4]):
        np.testing.assert_array_equal(result["OUTPUT0"], np.full((1, 3), i, np.float32))
    for i, result in enumerate(results[4:]):
        np.testing.assert_array_equal(result["OUTPUT0"], np.full((2, 5), i, np.float32))


def test_failing_execution_fails_only_its_batch(add_sub_session: OnnxSession) -> None:
    calls = {"count": 0}

    def fails_once(inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("simulated ONNX Runtime failure")
        return add_sub_session.run(inputs, output_names)

    async def scenario() -> None:
        statistics = ModelStatistics()
        batcher = Batcher(fails_once, add_sub_session.config, statistics, label="add_sub/1")
        with pytest.raises(ExecutionError, match="simulated ONNX Runtime failure"):
            await batcher.infer(rows_of(0, 1), OUTPUTS, rows=1)
        result = await batcher.infer(rows_of(1, 1), OUTPUTS, rows=1)
        np.testing.assert_array_equal(result["OUTPUT0"], add_sub_session.run(rows_of(1, 1), OUTPUTS)["OUTPUT0"])
        await batcher.close()

    run(scenario())


def test_request_whose_deadline_the_queue_cannot_meet_is_refused_at_admission(add_sub_session: OnnxSession) -> None:
    graph = GatedGraph(add_sub_session, seconds_per_call=0.05)

    async def scenario() -> None:
        batcher, statistics = make_batcher(add_sub_session, graph, enabled=False)
        await batcher.infer(rows_of(0, 1), OUTPUTS, rows=1)  # teaches the batcher ~50 ms per request
        graph.gate.clear()
        graph.started.clear()
        running = asyncio.ensure_future(batcher.infer(rows_of(1, 1), OUTPUTS, rows=1))
        await wait_started(graph)
        queued = [asyncio.ensure_future(batcher.infer(rows_of(i, 1), OUTPUTS, rows=1)) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="queue is full for this deadline"):
            await batcher.infer(rows_of(5, 1), OUTPUTS, rows=1, timeout_seconds=0.01)
        generous = asyncio.ensure_future(batcher.infer(rows_of(6, 1), OUTPUTS, rows=1, timeout_seconds=30))
        await asyncio.sleep(0)
        graph.gate.set()
        await asyncio.gather(running, *queued, generous)
        await batcher.close()
        assert statistics.inference_count == 6  # every admitted request ran; the refused one did not

    run(scenario())
