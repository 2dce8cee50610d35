"""Hostile input, faults and vanishing clients against a real server: clear refusals, nothing lost or leaked."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server.onnx_builders import add_sub_model, gather_model, slow_model
from tests.server.slow_calls import call_slow
from tests.server_process import ServerProcess, free_port, running_server

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    root = tmp_path_factory.mktemp("hardened")
    add_sub_model(root / "add_sub" / "1" / "model.onnx")
    gather_model(root / "gather" / "1" / "model.onnx")
    slow_model(root / "slow" / "1" / "model.onnx")
    (root / "slow" / "config.json").write_text(json.dumps({"dynamic_batching": {"enabled": False}}))
    metrics_port = free_port()
    args = ["--model-control-mode", "explicit", "--load-model", "*", "--max-inputs-per-request", "4"]
    args += ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
    with running_server(root, tmp_path_factory.mktemp("logs") / "hardened.log", args) as server:
        yield server, metrics_port


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(f"{name}{{{wanted}}}")


def add_sub_ok(server: ServerProcess) -> bool:
    client = triton.InferenceServerClient(server.address)
    inputs = [triton.InferInput("INPUT0", [1, 16], "FP32"), triton.InferInput("INPUT1", [1, 16], "FP32")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
    return bool(client.infer("add_sub", inputs).as_numpy("OUTPUT0")[0, 0] == 2.0)


@pytest.mark.parametrize("payload", [b"\xff\xfe garbage", os.urandom(64), b"\x0a\xff\xff\xff\xff\x0f"])
def test_random_bytes_as_a_request_get_invalid_argument(hardened: tuple[ServerProcess, int], payload: bytes) -> None:
    server, _ = hardened
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary(INFER_METHOD, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            call(payload, timeout=5)
    assert refused.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert add_sub_ok(server)


def test_too_many_inputs_are_refused_by_the_limit(hardened: tuple[ServerProcess, int]) -> None:
    server, _ = hardened
    request = pb.ModelInferRequest(model_name="add_sub")
    for i in range(5000):
        request.inputs.add(name=f"x{i}", datatype="FP32", shape=[1, 16])
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more than the limit of 4" in refused.value.details()


def test_execution_error_fails_only_that_request_with_internal(hardened: tuple[ServerProcess, int]) -> None:
    server, _ = hardened
    client = triton.InferenceServerClient(server.address)

    def gather(index: int) -> float:
        tensor = triton.InferInput("INDICES", [1, 1], "INT64")
        tensor.set_data_from_numpy(np.array([[index]], np.int64))
        return float(client.infer("gather", [tensor]).as_numpy("OUTPUT0")[0, 0])

    with pytest.raises(InferenceServerException) as failed:
        gather(99)
    assert failed.value.status() == "StatusCode.INTERNAL"
    assert "model 'gather/1' execution failed" in failed.value.message()
    assert gather(3) == 30.0
    assert client.is_model_ready("gather")


def test_path_traversal_and_file_payloads_cannot_reach_outside_the_repository(
    hardened: tuple[ServerProcess, int],
) -> None:
    server, _ = hardened
    client = triton.InferenceServerClient(server.address)
    for name in ("../hardened", "..", "add_sub/../../etc", "/etc", ".hidden"):
        with pytest.raises(InferenceServerException) as refused:
            client.load_model(name)
        assert refused.value.status() == "StatusCode.NOT_FOUND", name
    with pytest.raises(InferenceServerException) as refused:
        client.load_model("add_sub", config="{}", files={"file:1/model.onnx": b"\0" * 8})
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "file overrides are not supported" in refused.value.message()
    assert add_sub_ok(server)


def test_cancelled_and_vanished_clients_leak_no_queue_slots(hardened: tuple[ServerProcess, int]) -> None:
    server, metrics_port = hardened
    data = np.ones((64, 1024), np.float32).tobytes()
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[64, 1024])
    request.raw_input_contents.append(data)
    for _ in range(3):
        channel = grpc.insecure_channel(server.address)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        futures = [stub.ModelInfer.future(request, timeout=30) for _ in range(6)]
        time.sleep(0.15)
        for future in futures[::2]:
            future.cancel()
        channel.close()  # the client vanishes with the rest still queued
    deadline = time.monotonic() + 30
    labels = {"model": "slow", "version": "1"}
    while time.monotonic() < deadline:
        if metric(metrics_port, "tau_inflight_requests", **labels) == 0:
            break
        time.sleep(0.2)
    assert metric(metrics_port, "tau_inflight_requests", **labels) == 0
    assert metric(metrics_port, "tau_queue_depth_requests", **labels) == 0
    assert metric(metrics_port, "tau_requests_total", **labels, outcome="failure", code="CANCELLED") >= 9
    assert add_sub_ok(server)


def test_sigterm_under_load_loses_no_admitted_request_and_refuses_new_ones(tmp_path: Path) -> None:
    slow_model(tmp_path / "repo" / "slow" / "1" / "model.onnx", depth=64)
    server = ServerProcess(tmp_path / "repo", tmp_path / "log", ["--grace-period-seconds", "20"])
    outcomes: list[str] = []
    try:
        server.wait_until_live()
        client = triton.InferenceServerClient(server.address)

        def call(_: int) -> str:
            return call_slow(client, rows=8)

        with ThreadPoolExecutor(max_workers=8) as pool:
            admitted = [pool.submit(call, i) for i in range(8)]
            time.sleep(0.3)
            started = time.monotonic()
            server.process.send_signal(15)
            time.sleep(0.2)
            late = [pool.submit(call, i) for i in range(4)]
            outcomes = [future.result() for future in admitted]
            late_outcomes = [future.result() for future in late]
            exit_code = server.process.wait(timeout=30)
            took = time.monotonic() - started
    finally:
        server.stop()
    assert outcomes == ["OK"] * 8
    assert set(late_outcomes) == {"StatusCode.UNAVAILABLE"}
    assert exit_code == 0
    assert took < 20
