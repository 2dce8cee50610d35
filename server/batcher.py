"""The dynamic batcher: one bounded priority queue per model version, batches formed with Triton's rules.

A batch is released as soon as it is full (max_batch_size, or the next
compatible request would not fit), or reaches a preferred size, or its oldest
request has waited max_queue_delay_microseconds; with a delay of 0 it takes
whatever is queued the moment an instance is free. Only requests whose
non-batch shapes match share a batch. Executions run in worker threads (ONNX
Runtime releases the GIL), at most `instance_count` at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from server.config import ModelConfig
from server.errors import DeadlineExceededError, ExecutionError, QueueFullError
from server.statistics import ModelStatistics, ReleaseReason

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunGraph = Callable[[Tensors, list[str]], Tensors]


class _State(Enum):
    QUEUED = 1
    RUNNING = 2
    GONE = 3  # expired or cancelled while queued: never runs


@dataclass(eq=False)
class _QueuedRequest:
    inputs: Tensors
    output_names: list[str]
    rows: int
    shape_key: tuple[Any, ...]
    level: int
    enqueued_at: float
    deadline: float | None
    future: asyncio.Future[Tensors]
    state: _State = _State.QUEUED


@dataclass
class _BatchTimings:
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    results: list[Tensors] = field(default_factory=list)


def _shape_key(inputs: Tensors, batched: bool) -> tuple[Any, ...]:
    return tuple((name, array.shape[1:] if batched else array.shape) for name, array in inputs.items())


def _run_batch(run_graph: RunGraph, batch: list[_QueuedRequest], output_names: list[str]) -> _BatchTimings:
    """In a worker thread: concatenate along axis 0, run once, split the outputs back per request."""
    timings = _BatchTimings()
    started = time.perf_counter_ns()
    if len(batch) == 1:
        inputs = batch[0].inputs
    else:
        inputs = {name: np.concatenate([request.inputs[name] for request in batch]) for name in batch[0].inputs}
    computed = time.perf_counter_ns()
    outputs = run_graph(inputs, output_names)
    finished = time.perf_counter_ns()
    total_rows = sum(request.rows for request in batch)
    offset = 0
    for request in batch:
        own: Tensors = {}
        for name in request.output_names:
            output = outputs[name]
            if len(batch) > 1:
                if output.shape[:1] != (total_rows,):
                    raise ValueError(f"output '{name}' has shape {list(output.shape)} for a batch of {total_rows} rows")
                output = output[offset : offset + request.rows]
            own[name] = output
        offset += request.rows
        timings.results.append(own)
    timings.input_ns = computed - started
    timings.infer_ns = finished - computed
    timings.output_ns = time.perf_counter_ns() - finished
    return timings


class Batcher:
    """Queue, batch formation and execution for one model version."""

    def __init__(self, run_graph: RunGraph, config: ModelConfig, statistics: ModelStatistics, label: str) -> None:
        assert config.outputs is not None
        self._run_graph = run_graph
        self._statistics = statistics
        self._label = label
        self._all_outputs = [spec.name for spec in config.outputs]
        batching = config.dynamic_batching
        self._batched = bool(config.max_batch_size)
        # Batching off (or a model without a batch dimension): every batch is one request.
        self._max_batch_size = (config.max_batch_size or 0) if self._batched and batching.enabled else 0
        self._delay_seconds = batching.max_queue_delay_microseconds / 1e6
        self._preferred_sizes = frozenset(batching.preferred_batch_sizes)
        self._max_queue_size = batching.max_queue_size
        self._priority_levels = max(1, batching.priority_levels)
        # Index into self._levels (0 = highest); requests without a priority go to the default level.
        self._default_index = (batching.default_priority_level or self._priority_levels) - 1
        self._levels: list[deque[_QueuedRequest]] = [deque() for _ in range(self._priority_levels)]
        self._queued = 0
        self._threads = ThreadPoolExecutor(max_workers=config.instance_count, thread_name_prefix=f"ort-{label}")
        self._instance_count = config.instance_count
        self._free_instances = config.instance_count
        self._all_instances_free = asyncio.Event()
        self._all_instances_free.set()
        # Batches are formed by callbacks on the loop (an arrival, a finished batch, the delay timer),
        # not by a scheduler task: each task wake-up and thread-future hop cost 15-40 us per request.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump_pending = False
        self._delay_timer: asyncio.TimerHandle | None = None
        self._closing = False
        # Recent execution time per request (exponentially weighted), to refuse at admission a request
        # whose deadline would pass in the queue anyway, instead of letting it wait and expire.
        self._seconds_per_request = 0.0
        self._active = 0  # admitted requests not yet answered, queued or running
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        """Requests waiting (not yet in a batch)."""
        return self._queued

    def _level_of(self, priority: int) -> int:
        # Triton's convention: level 1 is the highest; 0 means "the default level".
        if priority == 0:
            return self._default_index
        return min(priority, self._priority_levels) - 1

    async def infer(
        self,
        inputs: Tensors,
        output_names: list[str],
        rows: int,
        priority: int = 0,
        timeout_seconds: float | None = None,
    ) -> Tensors:
        """Queue one validated request and wait for its outputs.

        Raises QueueFullError at once when the queue is full, DeadlineExceededError when
        `timeout_seconds` passes while it is still queued (it then never runs).
        """
        if self._queued >= self._max_queue_size:
            self._statistics.record_queue_full()
            raise QueueFullError(f"model '{self._label}': queue is full ({self._max_queue_size} requests); retry later")
        expected_wait = self._queued * self._seconds_per_request / self._instance_count
        if timeout_seconds is not None and expected_wait > timeout_seconds:
            self._statistics.record_queue_full()
            raise QueueFullError(
                f"model '{self._label}': queue is full for this deadline: the expected wait of "
                f"{expected_wait * 1e3:.0f} ms exceeds the request's {timeout_seconds * 1e3:.0f} ms; retry later"
            )
        loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        request = _QueuedRequest(
            inputs=inputs,
            output_names=output_names,
            rows=rows,
            shape_key=_shape_key(inputs, self._batched),
            level=self._level_of(priority),
            enqueued_at=now,
            deadline=now + timeout_seconds if timeout_seconds is not None else None,
            future=loop.create_future(),
        )
        self._levels[request.level].append(request)
        self._queued += 1
        self._active += 1
        self._idle.clear()
        self._request_pump()
        started_ns = time.perf_counter_ns()
        # A timer rather than asyncio.wait: one handle per request, cancelled when the answer comes.
        expiry = loop.call_at(request.deadline, self._expire, request) if request.deadline is not None else None
        try:
            # Cancelling this await (a gRPC cancellation) cancels the future: a queued request then
            # leaves the queue below; one already in a batch runs to the end, its answer dropped.
            result = await request.future
        except BaseException:
            self._forget(request)
            self._statistics.fail.add(time.perf_counter_ns() - started_ns)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
            self._active -= 1
            if not self._active:
                self._idle.set()
                self._statistics.record_load(self._queued, 0)
        self._statistics.success.add(time.perf_counter_ns() - started_ns)
        return result

    def _forget(self, request: _QueuedRequest) -> None:
        """Take a cancelled or expired request out of the queue so it never runs."""
        if request.state is _State.QUEUED:
            self._levels[request.level].remove(request)
            self._queued -= 1
            self._statistics.record_load(self._queued, self._active)
            request.state = _State.GONE

    def _expire(self, request: _QueuedRequest) -> None:
        """The request's deadline passed: if it is still queued, it never runs."""
        if request.state is not _State.QUEUED:
            return
        self._forget(request)
        self._statistics.record_deadline_expired()
        if not request.future.done():
            timeout = (request.deadline or request.enqueued_at) - request.enqueued_at
            request.future.set_exception(
                DeadlineExceededError(
                    f"model '{self._label}': request timed out after {timeout * 1e6:.0f} us in the queue"
                )
            )

    def _candidate(self) -> tuple[list[_QueuedRequest], bool, int]:
        """The batch the head of the queue would form: (requests, cannot grow, length of the preferred prefix)."""
        head = next(level[0] for level in self._levels if level)
        batch: list[_QueuedRequest] = []
        rows = 0
        preferred_length = 0
        for level in self._levels:
            for request in level:
                if request.shape_key != head.shape_key:
                    continue
                if rows + request.rows > self._max_batch_size:
                    return batch, True, preferred_length
                batch.append(request)
                rows += request.rows
                if rows in self._preferred_sizes:
                    preferred_length = len(batch)
                if rows == self._max_batch_size:
                    return batch, True, preferred_length
        return batch, False, preferred_length

    def _releasable(self, now: float) -> tuple[list[_QueuedRequest], ReleaseReason] | float:
        """The batch to run now and why, or the loop time at which the head's delay runs out."""
        if not self._max_batch_size:
            return [next(level[0] for level in self._levels if level)], ReleaseReason.INSTANCE_FREE
        batch, full, preferred_length = self._candidate()
        if full:
            return batch, ReleaseReason.FULL
        if preferred_length:
            return batch[:preferred_length], ReleaseReason.PREFERRED
        if self._delay_seconds == 0:
            return batch, ReleaseReason.INSTANCE_FREE
        release_at = batch[0].enqueued_at + self._delay_seconds
        if now >= release_at:
            return batch, ReleaseReason.DELAY
        return release_at

    def _request_pump(self) -> None:
        """Form batches on the loop's next pass, so requests that arrive in this pass can share one."""
        if not self._pump_pending and self._loop is not None:
            self._pump_pending = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Release batches while an instance is free and the release rules allow; else wait for the delay."""
        self._pump_pending = False
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        loop = self._loop
        assert loop is not None
        while self._free_instances and self._queued and not self._closing:
            decision = self._releasable(loop.time())
            if isinstance(decision, float):
                self._delay_timer = loop.call_at(decision, self._pump)
                return
            self._dispatch(*decision)

    def _dispatch(self, batch: list[_QueuedRequest], reason: ReleaseReason) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for request in batch:
            self._levels[request.level].remove(request)
            request.state = _State.RUNNING
            self._statistics.record_queue_wait(now - request.enqueued_at)
        self._queued -= len(batch)
        self._statistics.record_load(self._queued, self._active)
        wanted = {name for request in batch for name in request.output_names}
        output_names = [name for name in self._all_outputs if name in wanted]
        self._free_instances -= 1
        self._all_instances_free.clear()
        self._threads.submit(self._run_and_report, batch, output_names, reason)

    def _run_and_report(self, batch: list[_QueuedRequest], output_names: list[str], reason: ReleaseReason) -> None:
        """In a worker thread: run the batch, then hand the outcome to the loop in one callback."""
        try:
            outcome: _BatchTimings | Exception = _run_batch(self._run_graph, batch, output_names)
        except Exception as error:  # ONNX Runtime's errors are untyped; only this batch fails
            outcome = error
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._finish, batch, reason, outcome)

    def _finish(self, batch: list[_QueuedRequest], reason: ReleaseReason, outcome: _BatchTimings | Exception) -> None:
        """On the loop: answer the batch's requests, free the instance, release what has queued meanwhile."""
        self._free_instances += 1
        if self._free_instances == self._instance_count:
            self._all_instances_free.set()
        if isinstance(outcome, Exception):
            log.error(
                "model %s: execution of a batch of %d requests failed",
                self._label,
                len(batch),
                exc_info=(type(outcome), outcome, outcome.__traceback__),
            )
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(ExecutionError(f"model '{self._label}' execution failed: {outcome}"))
        else:
            self._record_execution(batch, reason, outcome)
            for request, result in zip(batch, outcome.results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
        if self._queued:
            self._pump()

    def _record_execution(self, batch: list[_QueuedRequest], reason: ReleaseReason, timings: _BatchTimings) -> None:
        per_request = (timings.input_ns + timings.infer_ns + timings.output_ns) / 1e9 / len(batch)
        self._seconds_per_request = (
            per_request if not self._seconds_per_request else (0.8 * self._seconds_per_request + 0.2 * per_request)
        )
        self._statistics.record_execution(
            batch_size=sum(request.rows for request in batch),
            request_count=len(batch),
            reason=reason,
            input_ns=timings.input_ns,
            infer_ns=timings.infer_ns,
            output_ns=timings.output_ns,
        )

    async def drain(self) -> None:
        """Wait until every admitted request has been answered (new ones may still arrive meanwhile)."""
        await self._idle.wait()

    def fail_queued(self, error: Exception) -> int:
        """Answer every request still waiting in the queue with `error`; returns how many."""
        failed = 0
        for level in self._levels:
            for request in list(level):
                self._forget(request)
                if not request.future.done():
                    request.future.set_exception(error)
                    failed += 1
        return failed

    async def close(self) -> None:
        """Stop forming batches, let running executions finish, release the threads."""
        self._closing = True
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        await self._all_instances_free.wait()
        self._threads.shutdown(wait=True)
