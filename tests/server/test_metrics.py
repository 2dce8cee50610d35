"""Prometheus metrics scraped over real HTTP from a real server after real traffic."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.server.onnx_builders import add_sub_model
from tests.server_process import ServerProcess, free_port, running_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    root = tmp_path_factory.mktemp("metrics")
    add_sub_model(root / "add_sub" / "1" / "model.onnx")
    (root / "add_sub" / "config.json").write_text(json.dumps({"max_batch_size": 8}))
    broken = root / "broken" / "1" / "model.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not onnx")
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "metrics.log"
    args = ["--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--strict-readiness", "false"]
    with running_server(root, log, args) as process:
        assert f"metrics: http://127.0.0.1:{port}/metrics" in process.log()
        yield process, port


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def call_add_sub(client: triton.InferenceServerClient, rows: int, datatype: str = "FP32") -> None:
    data = np.ones((rows, 16), np.float32 if datatype == "FP32" else np.int32)
    inputs = [triton.InferInput("INPUT0", [rows, 16], datatype), triton.InferInput("INPUT1", [rows, 16], "FP32")]
    inputs[0].set_data_from_numpy(data)
    inputs[1].set_data_from_numpy(np.ones((rows, 16), np.float32))
    client.infer("add_sub", inputs)


def test_traffic_shows_up_in_counters_and_histograms(metrics_server: tuple[ServerProcess, int]) -> None:
    server, port = metrics_server
    client = triton.InferenceServerClient(server.address)
    before = scrape(port)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: call_add_sub(client, 1 + i % 3), range(30)))
    with pytest.raises(InferenceServerException):
        call_add_sub(client, 1, datatype="INT32")
    with pytest.raises(InferenceServerException):
        client.infer("no_such_model", [])
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    model = {"model": "add_sub", "version": "1"}
    assert delta("tau_requests_total", **model, outcome="success", code="OK") == 30
    assert delta("tau_requests_total", **model, outcome="failure", code="INVALID_ARGUMENT") == 1
    assert delta("tau_requests_total", model="_unknown", version="", outcome="failure", code="NOT_FOUND") == 1
    assert delta("tau_request_duration_seconds_count", **model) == 31
    assert delta("tau_queue_wait_seconds_count", **model) == 30
    rows = sum(1 + i % 3 for i in range(30))
    assert delta("tau_inferences_total", **model) == rows
    assert delta("tau_batch_size_rows_sum", **model) == rows
    executions = delta("tau_batch_size_rows_count", **model)
    assert 1 <= executions <= 30
    assert delta("tau_compute_duration_seconds_count", **model) == executions
    reasons = ("full", "preferred", "delay", "instance_free")
    assert sum(delta("tau_executions_total", **model, reason=reason) for reason in reasons) == executions
    assert value(after, "tau_queue_depth_requests", **model) == 0
    assert value(after, "tau_inflight_requests", **model) == 0
    assert value(after, "tau_queue_capacity_requests", **model) == 1024


def test_load_state_and_active_provider_are_exported(metrics_server: tuple[ServerProcess, int]) -> None:
    _, port = metrics_server
    samples = scrape(port)
    assert value(samples, "tau_model_ready", model="add_sub", version="1") == 1
    assert value(samples, "tau_model_ready", model="broken", version="1") == 0
    assert value(samples, "tau_model_load_duration_seconds", model="add_sub", version="1") > 0
    provider = {"model": "add_sub", "version": "1", "provider": "CPUExecutionProvider", "requested": "cpu"}
    assert value(samples, "tau_model_execution_provider_info", **provider) == 1


def test_process_metrics_are_exported(metrics_server: tuple[ServerProcess, int]) -> None:
    _, port = metrics_server
    names = {name for name, _ in scrape(port)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} <= names


def test_metrics_port_zero_turns_the_endpoint_off(tmp_path: Path) -> None:
    add_sub_model(tmp_path / "repo" / "add_sub" / "1" / "model.onnx")
    with running_server(tmp_path / "repo", tmp_path / "server.log") as server:
        assert "metrics: off (--metrics-port 0)" in server.log()
