"""`tau-bench`: closed-loop load on a real server, against the gRPC ceiling and in-process ONNX Runtime.

By default it is self-contained: from one model file it builds a repository
(`model` with dynamic batching, `model_nobatch`, and an `identity` twin that
measures what gRPC alone costs), starts the server, runs every scenario at
every concurrency, checks a sample of the answers, and stops the server.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from clients.bench_check import ExpectedOutputs
from clients.bench_load import LoadGenerator, LoadPlan, own_cpu_seconds
from clients.bench_model import (
    IDENTITY_MODEL_NAME,
    MODEL_NAME,
    NO_BATCH_MODEL_NAME,
    BenchModelError,
    InputSpec,
    build_repository,
    expected_outputs,
    identity_expected,
    make_inputs,
    read_inputs,
    reference_session,
)
from clients.bench_options import parse_arguments
from clients.bench_reference import time_in_process
from clients.bench_report import (
    BATCHING,
    CEILING,
    NO_BATCHING,
    REMOTE,
    BenchReport,
    RunResult,
    reference_batch,
    render_markdown,
    report_json,
    summarize_run,
)
from clients.bench_server import (
    BatchCounterProbe,
    ServerStartError,
    ServerUnderTest,
    batches_between,
    cpu_seconds_of,
    machine_busy_cpu_seconds,
    resident_mib,
)
from clients.grpc_client import build_infer_request
from server.cpus import available_cpus, default_intra_op_threads
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from server.runtime import ORT_PROVIDER_BY_NAME

# Time for every worker to receive its plan and connect before its warmup starts.
PLAN_LEAD_SECONDS = 0.2


@dataclass(frozen=True)
class Scenario:
    """One kind of load: which model is called, with which pre-serialized request, expecting what."""

    name: str
    model: str
    request: bytes
    expected: ExpectedOutputs


@dataclass(frozen=True)
class Target:
    address: str
    server_pid: int | None  # None: its CPU and memory are not measured


def _serialized(model: str, inputs: dict[str, np.ndarray]) -> bytes:
    return build_infer_request(model, inputs).SerializeToString()


def self_contained_scenarios(
    specs: list[InputSpec], inputs: dict[str, np.ndarray], session: ort.InferenceSession
) -> list[Scenario]:
    """The gRPC ceiling first, so each concurrency's table rows read ceiling, then the model both ways."""
    first = {specs[0].name: inputs[specs[0].name]}
    expected = expected_outputs(session, inputs)
    return [
        Scenario(
            CEILING, IDENTITY_MODEL_NAME, _serialized(IDENTITY_MODEL_NAME, first), identity_expected(specs, inputs)
        ),
        Scenario(BATCHING, MODEL_NAME, _serialized(MODEL_NAME, inputs), expected),
        Scenario(NO_BATCHING, NO_BATCH_MODEL_NAME, _serialized(NO_BATCH_MODEL_NAME, inputs), expected),
    ]


@dataclass(frozen=True)
class _CpuReading:
    """CPU counters read at one edge of the measured window."""

    machine_seconds: float
    own_seconds: float
    server_seconds: float | None

    @classmethod
    def take(cls, target: Target) -> _CpuReading:
        server = cpu_seconds_of(target.server_pid) if target.server_pid else None
        return cls(machine_busy_cpu_seconds(), own_cpu_seconds(), server)

    def since(self, earlier: _CpuReading) -> _CpuReading:
        server = (
            self.server_seconds - earlier.server_seconds
            if self.server_seconds is not None and earlier.server_seconds is not None
            else None
        )
        return _CpuReading(
            self.machine_seconds - earlier.machine_seconds, self.own_seconds - earlier.own_seconds, server
        )


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def measure_run(
    load: LoadGenerator, target: Target, scenario: Scenario, concurrency: int, options: argparse.Namespace
) -> RunResult:
    """One closed-loop run: CPU is read at the edges of the measured window, batch counters while the server idles."""
    with BatchCounterProbe(target.address, scenario.model) as probe:
        batches_before = probe.read()
        warmup_start = time.monotonic() + PLAN_LEAD_SECONDS
        measure_start = warmup_start + options.warmup
        measure_end = measure_start + options.duration
        plan = LoadPlan(
            target.address,
            scenario.request,
            scenario.expected,
            warmup_start,
            measure_start,
            measure_end,
            stream=options.stream,
        )
        load.start(plan, concurrency)
        _sleep_until(measure_start)
        cpu_before = _CpuReading.take(target)
        _sleep_until(measure_end)
        cpu = _CpuReading.take(target).since(cpu_before)
        tally = load.collect()
        # Read once every response is in: the counters then hold still, so each worker's reading is exact.
        batches = batches_between(batches_before, probe.read())
    return summarize_run(
        scenario=scenario.name,
        model=scenario.model,
        concurrency=concurrency,
        rows_per_request=options.rows,
        duration_s=options.duration,
        tally=tally,
        # The parent's own CPU (it mostly sleeps) plus every worker's: "client" is all of tau-bench.
        client_cpu_seconds=tally.cpu_seconds + cpu.own_seconds,
        server_cpu_seconds=cpu.server_seconds,
        machine_cpu_seconds=cpu.machine_seconds,
        batches=batches,
    )


def _settings_json(options: argparse.Namespace) -> dict[str, Any]:
    return {
        "model_file": str(options.model_file),
        "mode": "remote" if options.url else "self-contained",
        "url": options.url,
        "model": options.model,
        "rows_per_request": options.rows,
        "concurrency": options.concurrency,
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "client_processes": options.client_processes,
        "server_workers": None if options.url else options.server_workers,
        "scenarios": [REMOTE] if options.url else list(options.scenarios),
        "execution_providers": list(options.execution_providers),
        "transport": "ModelStreamInfer" if options.stream else "ModelInfer",
        "config_override": options.config_override,
        "seed": options.seed,
        "available_cpus": available_cpus(),
        "intra_op_threads": default_intra_op_threads(),
        "onnxruntime": ort.__version__,
        "grpcio": grpc.__version__,
    }


def _open_target(
    stack: ExitStack, options: argparse.Namespace, specs: list[InputSpec], inputs: dict[str, np.ndarray]
) -> Target:
    """Start a server over a temporary repository (removed after the server stops), or use --url."""
    if options.url:
        return Target(options.url, options.server_pid)
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tau-bench-")))
    repository = build_repository(
        workdir / "repository",
        options.model_file,
        specs[0],
        options.rows,
        options.execution_providers,
        options.config_override,
    )
    server = stack.enter_context(ServerUnderTest(repository, workdir / "server.log", options.server_workers))
    server.wait_until_live()
    check_active_provider(server.address, [MODEL_NAME, NO_BATCH_MODEL_NAME], options.execution_providers[0])
    return Target(server.address, server.pid)


def check_active_provider(address: str, models: list[str], requested: str) -> None:
    """A model that fell back to another provider than the one asked for first is an error, never a quiet number."""
    wanted = ORT_PROVIDER_BY_NAME[requested]
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for model in models:
            config = stub.ModelConfig(pb.ModelConfigRequest(name=model), timeout=10).config
            active = config.parameters["execution_provider"].string_value
            if active != wanted:
                raise ServerStartError(f"model '{model}' runs on {active}, not on {wanted} as asked")


def run_benchmark(options: argparse.Namespace) -> BenchReport:
    session = reference_session(options.model_file, options.execution_providers, options.config_override)
    specs = read_inputs(session)
    inputs = make_inputs(specs, options.rows, options.seed)
    if options.url:
        scenarios = [
            Scenario(REMOTE, options.model, _serialized(options.model, inputs), expected_outputs(session, inputs))
        ]
    else:
        scenarios = [s for s in self_contained_scenarios(specs, inputs, session) if s.name in options.scenarios]
    report = BenchReport(settings=_settings_json(options))
    with ExitStack() as stack:
        # Workers spawn while the server loads its models: both take about a second.
        load = stack.enter_context(LoadGenerator(options.client_processes))
        target = _open_target(stack, options, specs, inputs)
        load.wait_ready()
        if target.server_pid:
            report.server_rss_mib_before = resident_mib(target.server_pid)
        for concurrency in options.concurrency:
            for scenario in scenarios:
                report.runs.append(measure_run(load, target, scenario, concurrency, options))
        if target.server_pid:
            report.server_rss_mib_after = resident_mib(target.server_pid)
    # Timed once the load is over, so nothing else competes for the CPUs.
    report.single_request = time_in_process(session, inputs, options.reference_seconds)
    for batch in sorted({batch for run in report.runs if (batch := reference_batch(run))}):
        batch_inputs = make_inputs(specs, batch, options.seed)
        report.at_server_batch[batch] = time_in_process(session, batch_inputs, options.reference_seconds)
    return report


@contextmanager
def _sigterm_raises_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the server is stopped and the repository removed either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """0 when every run finished without an error or a wrong answer; 1 otherwise; 2 when it could not run."""
    options = parse_arguments(argv)
    try:
        with _sigterm_raises_interrupt():
            report = run_benchmark(options)
    except (BenchModelError, ServerStartError) as error:
        print(f"tau-bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tau-bench: interrupted; server stopped", file=sys.stderr)
        return 130
    print(render_markdown(report))
    if options.json:
        options.json.write_text(json.dumps(report_json(report), indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
