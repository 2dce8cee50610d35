"""Health, reflection, and graceful shutdown of a real server process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.server.onnx_builders import add_sub_model, slow_model
from tests.server_process import ServerProcess, running_server


@pytest.fixture(scope="module")
def healthy_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("healthy")
    add_sub_model(root / "add_sub" / "1" / "model.onnx")
    slow_model(root / "slow" / "1" / "model.onnx")
    (root / "slow" / "config.json").write_text(json.dumps({"max_batch_size": 64, "instance_count": 1}))
    return root


@pytest.fixture(scope="module")
def healthy_server(healthy_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(healthy_repository, tmp_path_factory.mktemp("logs") / "healthy.log") as process:
        yield process


def test_health_service_reports_serving_once_models_are_loaded(healthy_server: ServerProcess) -> None:
    with grpc.insecure_channel(healthy_server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        inference = stub.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=5)
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert inference.status == health_pb2.HealthCheckResponse.SERVING


def test_health_service_reports_not_serving_while_a_model_failed(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_inference_and_health_services(healthy_server: ServerProcess) -> None:
    with grpc.insecure_channel(healthy_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        names = {service.name for service in response.list_services_response.service}
        symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")
        file_response = next(iter(stub.ServerReflectionInfo(iter([symbol]), timeout=5)))
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
    assert file_response.file_descriptor_response.file_descriptor_proto


def test_sigterm_finishes_in_flight_requests_then_exits_zero(healthy_repository: Path, tmp_path: Path) -> None:
    server = ServerProcess(healthy_repository, tmp_path / "shutdown.log")
    try:
        _assert_in_flight_requests_survive_sigterm(server)
    finally:
        server.stop()


def _assert_in_flight_requests_survive_sigterm(server: ServerProcess) -> None:
    server.wait_until_live()
    client = triton.InferenceServerClient(server.address)
    data = np.random.default_rng(0).standard_normal((64, 1024)).astype(np.float32)

    def call(_: int) -> np.ndarray:
        tensor = triton.InferInput("INPUT0", [64, 1024], "FP32")
        tensor.set_data_from_numpy(data)
        return client.infer("slow", [tensor], client_timeout=60).as_numpy("OUTPUT0")

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(call, i) for i in range(8)]
        time.sleep(0.3)  # the calls are now queued or running on the model's single instance
        finished_before_signal = sum(future.done() for future in futures)
        exit_code = server.stop()
        outputs = [future.result() for future in futures]
    assert finished_before_signal < len(futures), "model too fast to keep requests in flight"
    assert exit_code == 0, server.log()
    assert all(np.array_equal(output, outputs[0]) for output in outputs)
    assert "signal received" in server.log()


def test_sigterm_during_start_up_stops_at_once(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    slow_model(repo / "slow" / "1" / "model.onnx")
    # A long warmup keeps the server loading for seconds: the signal must not wait for it.
    warmup = {"batch_sizes": [64] * 40}
    (repo / "slow" / "config.json").write_text(json.dumps({"max_batch_size": 64, "warmup": warmup}))
    server = ServerProcess(repo, tmp_path / "startup.log")
    try:
        time.sleep(1.0)
        assert server.process.poll() is None
        started = time.monotonic()
        server.process.send_signal(15)
        exit_code = server.process.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        server.stop()
    assert exit_code == 0, server.log()
    assert took < 5, f"took {took:.1f}s"
    assert "signal received during start-up" in server.log()
