"""Closed-loop load from worker processes: each coroutine sends one pre-serialized request, awaits it, sends the next.

Workers are spawned once and reused for every run, so process start-up never
falls inside a measurement. They share the parent's clock: time.monotonic()
is system-wide on Linux, so one plan with absolute start and end times keeps
every worker's measured window the same.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from types import TracebackType

import grpc
import numpy as np

from clients.bench_check import WRONG_ANSWER, ExpectedOutputs, verify_response
from clients.client_base import STREAM_METHOD
from server.protocol import grpc_service_pb2 as pb
from server.settings import MAX_GRPC_MESSAGE_BYTES
from server.stream_infer import STATUS_PARAMETER

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
# A ModelStreamInferResponse that starts with field 1 (error_message) is a refusal; answers start with field 2.
_STREAM_ERROR_TAG = b"\x0a"
# Each coroutine's first response and every CHECK_EVERY-th after it are compared with the expected outputs.
CHECK_EVERY = 100
CALL_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
WORKER_JOIN_TIMEOUT_SECONDS = 5.0
WORKER_POLL_SECONDS = 0.5
WORKER_READY = "ready"


@dataclass(frozen=True)
class LoadPlan:
    """One run for one worker: what to send where, and when (time.monotonic() seconds)."""

    address: str
    request: bytes
    expected: ExpectedOutputs
    warmup_start: float
    measure_start: float
    measure_end: float
    concurrency: int = 1
    stream: bool = False  # each coroutine keeps one ModelStreamInfer stream open instead of unary calls


@dataclass
class LoadTally:
    """What workers saw; `latencies_s` and the CPU time cover the measured window only, errors the whole run."""

    completed: int = 0
    checked: int = 0
    latencies_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    errors: Counter[str] = field(default_factory=Counter)
    wrong_answer_detail: str = ""
    cpu_seconds: float = 0.0

    def merge(self, other: LoadTally) -> LoadTally:
        return LoadTally(
            completed=self.completed + other.completed,
            checked=self.checked + other.checked,
            latencies_s=np.concatenate([self.latencies_s, other.latencies_s]),
            errors=self.errors + other.errors,
            wrong_answer_detail=self.wrong_answer_detail or other.wrong_answer_detail,
            cpu_seconds=self.cpu_seconds + other.cpu_seconds,
        )


def own_cpu_seconds() -> float:
    """User + system CPU of this process, all threads (gRPC's C core threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


class _Worker:
    """The coroutines of one process, sharing one tally."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.tally = LoadTally()
        self.latencies: list[float] = []

    async def closed_loop(self, call: grpc.aio.UnaryUnaryMultiCallable) -> None:
        plan = self.plan
        await _sleep_until(plan.warmup_start)
        responses = 0
        while (sent := time.monotonic()) < plan.measure_end:
            try:
                raw = await call(plan.request, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                self.tally.errors[error.code().name] += 1
                continue
            done = time.monotonic()
            if responses % CHECK_EVERY == 0:
                self._check(raw)
            responses += 1
            if plan.measure_start <= done <= plan.measure_end:
                self.latencies.append(done - sent)

    async def closed_loop_stream(self, channel: grpc.aio.Channel) -> None:
        """As closed_loop, one request in flight at a time, over one ModelStreamInfer stream."""
        plan = self.plan
        await _sleep_until(plan.warmup_start)
        call = channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=None)(
            timeout=plan.measure_end - time.monotonic() + CALL_TIMEOUT_SECONDS
        )
        responses = 0
        try:
            while (sent := time.monotonic()) < plan.measure_end:
                await call.write(plan.request)
                raw = await call.read()
                done = time.monotonic()
                if raw[:1] == _STREAM_ERROR_TAG:
                    refusal = pb.ModelStreamInferResponse.FromString(raw).infer_response
                    self.tally.errors[refusal.parameters[STATUS_PARAMETER].string_param or "UNKNOWN"] += 1
                    continue
                if responses % CHECK_EVERY == 0:
                    self._check(pb.ModelStreamInferResponse.FromString(raw).infer_response.SerializeToString())
                responses += 1
                if plan.measure_start <= done <= plan.measure_end:
                    self.latencies.append(done - sent)
            await call.done_writing()
        except grpc.aio.AioRpcError as error:
            self.tally.errors[error.code().name] += 1

    def _check(self, raw: bytes) -> None:
        self.tally.checked += 1
        verdict = verify_response(raw, self.plan.expected)
        if not verdict.ok:
            self.tally.errors[WRONG_ANSWER] += 1
            self.tally.wrong_answer_detail = self.tally.wrong_answer_detail or verdict.detail

    async def measure_cpu(self) -> None:
        await _sleep_until(self.plan.measure_start)
        started = own_cpu_seconds()
        await _sleep_until(self.plan.measure_end)
        self.tally.cpu_seconds = own_cpu_seconds() - started


def _open_channel(address: str) -> grpc.aio.Channel:
    # A local subchannel pool gives the channel its own TCP connection: the kernel hands each connection to one
    # server worker, so connections shared between coroutines would pin them all to the same worker.
    options = [
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    return grpc.aio.insecure_channel(address, options=options)


async def run_plan(plan: LoadPlan) -> LoadTally:
    """Drive `plan.concurrency` closed loops, each over its own connection; returns this process's tally."""
    channels = [_open_channel(plan.address) for _ in range(plan.concurrency)]
    worker = _Worker(plan)
    try:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), CONNECT_TIMEOUT_SECONDS) for c in channels))
        if plan.stream:
            await asyncio.gather(worker.measure_cpu(), *(worker.closed_loop_stream(c) for c in channels))
        else:
            # No (de)serializers: the request goes out as the bytes built once, the response comes back as bytes.
            calls = [c.unary_unary(INFER_METHOD, request_serializer=None, response_deserializer=None) for c in channels]
            await asyncio.gather(worker.measure_cpu(), *(worker.closed_loop(call) for call in calls))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    worker.tally.completed = len(worker.latencies)
    worker.tally.latencies_s = np.asarray(worker.latencies)
    return worker.tally


def _worker_main(connection: Connection) -> None:
    """A worker process: run each plan received, send back its tally; None ends it."""
    try:
        connection.send(WORKER_READY)
        with asyncio.Runner() as runner:
            while (plan := connection.recv()) is not None:
                connection.send(runner.run(run_plan(plan)) if plan.concurrency else LoadTally())
    except (KeyboardInterrupt, EOFError):
        pass  # the parent is going away and cleans up; nothing to report
    finally:
        connection.close()


def split_concurrency(concurrency: int, processes: int) -> list[int]:
    """Coroutines per process, as even as possible: 10 over 3 -> [4, 3, 3]."""
    share, extra = divmod(concurrency, processes)
    return [share + (1 if index < extra else 0) for index in range(processes)]


class LoadGenerator:
    """`processes` spawned workers that together keep `concurrency` requests in flight."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for index in range(processes):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, args=(child_end,), name=f"tau-bench-{index}", daemon=True)
            process.start()
            child_end.close()
            self._connections.append(parent_end)
            self._processes.append(process)
        self._ready = False
        self._running = False  # a run was started and not yet collected

    def wait_ready(self) -> None:
        """Block until every worker has started; spawning re-imports numpy and gRPC, about a second."""
        if self._ready:
            return
        for connection, process in zip(self._connections, self._processes, strict=True):
            if self._receive(connection, process) != WORKER_READY:
                raise RuntimeError(f"load worker {process.name} did not start")
        self._ready = True

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def start(self, plan: LoadPlan, concurrency: int) -> None:
        """Hand each worker its share; returns at once (the plan's times say when load starts)."""
        self.wait_ready()
        self._running = True
        for connection, share in zip(
            self._connections, split_concurrency(concurrency, len(self._connections)), strict=True
        ):
            connection.send(replace(plan, concurrency=share))

    def collect(self) -> LoadTally:
        """Wait for every worker's tally of the run started last, and merge them."""
        total = LoadTally()
        for connection, process in zip(self._connections, self._processes, strict=True):
            tally = self._receive(connection, process)
            if not isinstance(tally, LoadTally):
                raise RuntimeError(f"load worker {process.name} sent {tally!r}, expected its tally")
            total = total.merge(tally)
        self._running = False
        return total

    @staticmethod
    def _receive(connection: Connection, process: multiprocessing.process.BaseProcess) -> object:
        # Poll rather than block: a worker that died would otherwise hang the bench forever.
        while not connection.poll(WORKER_POLL_SECONDS):
            if not process.is_alive():
                raise RuntimeError(f"load worker {process.name} exited with {process.exitcode}")
        return connection.recv()

    def close(self) -> None:
        """Stop the workers: politely between runs; at once when interrupted mid-run, whose results nobody wants."""
        for connection in self._connections:
            try:
                connection.send(None)
            except (BrokenPipeError, OSError):
                pass  # that worker is already gone
        for process in self._processes:
            process.join(0 if self._running else WORKER_JOIN_TIMEOUT_SECONDS)
            if process.is_alive():
                process.terminate()
                process.join()
            process.close()
        for connection in self._connections:
            connection.close()
        self._processes.clear()
        self._connections.clear()
