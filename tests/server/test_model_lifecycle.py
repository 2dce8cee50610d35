"""Versions, control modes, load/unload through tritonclient, safe reloads under load, poll mode, warmup."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server.onnx_builders import offset_model, slow_model
from tests.server.slow_calls import call_slow
from tests.server_process import running_server

DATA = np.arange(8, dtype=np.float32).reshape(2, 4)


def publish_version(model_dir: Path, version: int, offset: float | None = None) -> None:
    """Write a version the safe way: into a hidden folder, then rename it into place."""
    staging = model_dir / f".tmp-{version}"
    offset_model(staging / "model.onnx", float(version if offset is None else offset))
    os.replace(staging, model_dir / str(version))


def infer_offset(client: triton.InferenceServerClient, model: str = "versioned", version: str = "") -> float:
    tensor = triton.InferInput("INPUT0", list(DATA.shape), "FP32")
    tensor.set_data_from_numpy(DATA)
    output = client.infer(model, [tensor], model_version=version).as_numpy("OUTPUT0")
    offsets = np.unique(output - DATA)
    assert len(offsets) == 1, output
    return float(offsets[0])


def wait_for(condition: Callable[[], bool], timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def index_states(client: triton.InferenceServerClient) -> dict[tuple[str, str], tuple[str, str]]:
    models = client.get_model_repository_index(as_json=True).get("models", [])
    return {(m["name"], m.get("version", "")): (m.get("state", ""), m.get("reason", "")) for m in models}


@pytest.fixture
def versioned_repo(tmp_path: Path) -> Path:
    model_dir = tmp_path / "repo" / "versioned"
    for version in (1, 2, 3):
        publish_version(model_dir, version)
    return tmp_path / "repo"


def test_latest_two_versions_serve_and_requests_choose_among_them(versioned_repo: Path, tmp_path: Path) -> None:
    (versioned_repo / "versioned" / "config.json").write_text(
        json.dumps({"version_policy": {"latest": {"num_versions": 2}}})
    )
    with running_server(versioned_repo, tmp_path / "log") as server:
        client = triton.InferenceServerClient(server.address)
        assert infer_offset(client) == 3.0
        assert infer_offset(client, version="2") == 2.0
        assert client.is_model_ready("versioned", "2") and client.is_model_ready("versioned", "3")
        assert not client.is_model_ready("versioned", "1")
        assert client.get_model_metadata("versioned").versions == ["2", "3"]
        with pytest.raises(InferenceServerException) as refused:
            infer_offset(client, version="1")
        assert refused.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize(
    ("policy", "served"),
    [({"all": {}}, ["1", "2", "3"]), ({"specific": {"versions": [1, 3]}}, ["1", "3"])],
)
def test_all_and_specific_version_policies(
    versioned_repo: Path, tmp_path: Path, policy: dict[str, object], served: list[str]
) -> None:
    (versioned_repo / "versioned" / "config.json").write_text(json.dumps({"version_policy": policy}))
    with running_server(versioned_repo, tmp_path / "log") as server:
        client = triton.InferenceServerClient(server.address)
        assert client.get_model_metadata("versioned").versions == served
        for version in served:
            assert infer_offset(client, version=version) == float(version)


def test_none_mode_refuses_load_and_unload_with_a_clear_status(versioned_repo: Path, tmp_path: Path) -> None:
    with running_server(versioned_repo, tmp_path / "log") as server:
        client = triton.InferenceServerClient(server.address)
        for call in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException) as refused:
                call("versioned")
            assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
            assert "not allowed in model control mode 'none'" in refused.value.message()
        assert infer_offset(client) == 3.0


def test_explicit_mode_loads_named_models_then_only_through_the_api(versioned_repo: Path, tmp_path: Path) -> None:
    publish_version(versioned_repo / "other", 1, offset=10)
    args = ["--model-control-mode", "explicit", "--load-model", "other"]
    with running_server(versioned_repo, tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        assert index_states(client)[("versioned", "")] == ("UNAVAILABLE", "not loaded")
        assert not client.is_model_ready("versioned")
        assert infer_offset(client, "other") == 10.0
        client.load_model("versioned")
        assert client.is_model_ready("versioned") and infer_offset(client) == 3.0
        client.unload_model("versioned")
        assert not client.is_model_ready("versioned")
        assert index_states(client)[("versioned", "3")] == ("UNAVAILABLE", "unloaded")
        with pytest.raises(InferenceServerException) as refused:
            infer_offset(client)
        assert refused.value.status() == "StatusCode.UNAVAILABLE"
        with pytest.raises(InferenceServerException) as missing:
            client.load_model("no_such_model")
        assert missing.value.status() == "StatusCode.NOT_FOUND"


def test_load_with_a_config_override_in_tau_and_triton_form(versioned_repo: Path, tmp_path: Path) -> None:
    args = ["--model-control-mode", "explicit", "--load-model", "*"]
    with running_server(versioned_repo, tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        client.load_model("versioned", config=json.dumps({"max_batch_size": 4, "version_policy": {"all": {}}}))
        config = client.get_model_config("versioned", as_json=True)["config"]
        assert config["max_batch_size"] == 4
        assert client.get_model_metadata("versioned").versions == ["1", "2", "3"]
        triton_form = {"max_batch_size": 2, "instance_group": [{"count": 2, "kind": "KIND_CPU"}]}
        client.load_model("versioned", config=json.dumps(triton_form))
        config = client.get_model_config("versioned", as_json=True)["config"]
        assert config["max_batch_size"] == 2
        assert config["instance_group"][0]["count"] == 2
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("versioned", config=json.dumps({"max_batch_sise": 2}))
        assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert "max_batch_sise" in refused.value.message()
        assert infer_offset(client) == 3.0  # the bad override left the previous load serving


def test_reloads_under_steady_load_fail_no_request(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "versioned"
    publish_version(model_dir, 1)
    args = ["--model-control-mode", "explicit", "--load-model", "*"]
    with running_server(tmp_path / "repo", tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        stop = threading.Event()
        seen: list[float] = []
        errors: list[str] = []

        def steady_load() -> None:
            while not stop.is_set():
                try:
                    seen.append(infer_offset(client))
                except Exception as error:  # every failure is a test failure; keep them all
                    errors.append(repr(error))

        with ThreadPoolExecutor(max_workers=4) as pool:
            workers = [pool.submit(steady_load) for _ in range(4)]
            for version in (2, 3, 4):
                publish_version(model_dir, version)
                client.load_model("versioned")
                wait_for(lambda v=version: infer_offset(client) == float(v))
                client.load_model("versioned")  # a reload of the same version swaps instances too
            time.sleep(0.2)
            stop.set()
            for worker in workers:
                worker.result()
    assert errors == []
    assert len(seen) > 50
    assert set(seen) <= {1.0, 2.0, 3.0, 4.0}
    assert seen[-1] == 4.0


def test_broken_new_version_never_takes_down_the_serving_one(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "versioned"
    publish_version(model_dir, 1)
    args = ["--model-control-mode", "explicit", "--load-model", "*"]
    with running_server(tmp_path / "repo", tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        (model_dir / "2").mkdir()
        (model_dir / "2" / "model.onnx").write_bytes(b"truncated")
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("versioned")
        assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert "version 2" in refused.value.message()
        assert infer_offset(client) == 1.0
        state, reason = index_states(client)[("versioned", "2")]
        assert state == "UNAVAILABLE" and "could not load" in reason
        assert client.is_server_live()
        assert "version 2 failed to load" in server.log()


def test_poll_mode_ignores_a_half_copied_version_until_it_is_complete(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "slow"
    slow_model(model_dir / "1" / "model.onnx", depth=2)
    source = slow_model(tmp_path / "source" / "model.onnx", depth=3)
    payload = source.read_bytes()
    args = ["--model-control-mode", "poll", "--repository-poll-secs", "0.2"]
    with running_server(tmp_path / "repo", tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        target = model_dir / "2" / "model.onnx"
        target.parent.mkdir()
        chunk = len(payload) // 20
        with target.open("wb") as copy:
            for start in range(0, len(payload), chunk):
                copy.write(payload[start : start + chunk])
                copy.flush()
                time.sleep(0.1)  # half a poll interval: the file keeps changing between scans
                assert ("slow", "2") not in index_states(client), "a half-copied version was picked up"
        wait_for(lambda: client.is_model_ready("slow", "2"), timeout_seconds=20)
        assert client.get_model_metadata("slow").versions == ["2"]


def test_poll_mode_picks_up_new_models_and_drops_removed_ones(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish_version(repo / "versioned", 1)
    args = ["--model-control-mode", "poll", "--repository-poll-secs", "0.2"]
    with running_server(repo, tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        publish_version(repo / "fresh", 1, offset=7)
        wait_for(lambda: client.is_model_ready("fresh"))
        assert infer_offset(client, "fresh") == 7.0
        (repo / "fresh" / "1" / "model.onnx").unlink()
        (repo / "fresh" / "1").rmdir()
        (repo / "fresh").rmdir()
        wait_for(lambda: not client.is_model_ready("fresh"))
        assert infer_offset(client) == 1.0


def test_unload_lets_queued_requests_finish(tmp_path: Path) -> None:
    slow_model(tmp_path / "repo" / "slow" / "1" / "model.onnx")
    args = ["--model-control-mode", "explicit", "--load-model", "*"]
    with running_server(tmp_path / "repo", tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)

        def call(_: int) -> str:
            return call_slow(client)

        with ThreadPoolExecutor(max_workers=4) as pool:
            calls = [pool.submit(call, i) for i in range(4)]
            time.sleep(0.2)
            client.unload_model("slow")  # returns once they have drained
            assert all(c.done() for c in calls)
            assert [c.result() for c in calls] == ["OK"] * 4
        assert not client.is_model_ready("slow")


def test_unload_with_fail_queued_answers_queued_requests_unavailable(tmp_path: Path) -> None:
    slow_model(tmp_path / "repo" / "slow" / "1" / "model.onnx")
    args = ["--model-control-mode", "explicit", "--load-model", "*"]
    with running_server(tmp_path / "repo", tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)

        def call(_: int) -> str:
            return call_slow(client, refusal_must_say="being unloaded")

        with ThreadPoolExecutor(max_workers=6) as pool:
            calls = [pool.submit(call, i) for i in range(6)]
            time.sleep(0.2)
            request = pb.RepositoryModelUnloadRequest(model_name="slow")
            request.parameters["fail_queued"].bool_param = True
            with grpc.insecure_channel(server.address) as channel:
                pb_grpc.GRPCInferenceServiceStub(channel).RepositoryModelUnload(request, timeout=30)
            outcomes = [c.result(timeout=30) for c in calls]
    assert "OK" in outcomes  # the running batch finished
    assert "StatusCode.UNAVAILABLE" in outcomes  # the queued ones were told at once


def test_warmup_runs_before_ready_and_a_failing_warmup_keeps_the_model_out(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish_version(repo / "warm", 1)
    (repo / "warm" / "config.json").write_text(json.dumps({"warmup": {"batch_sizes": [1, 8], "data": "random"}}))
    publish_version(repo / "overwarm", 1)
    (repo / "overwarm" / "config.json").write_text(json.dumps({"max_batch_size": 4, "warmup": {"batch_sizes": [8]}}))
    with running_server(repo, tmp_path / "log", ["--strict-readiness", "false"]) as server:
        client = triton.InferenceServerClient(server.address)
        assert infer_offset(client, "warm") == 1.0
        assert "model warm version 1: warmed up" in server.log()
        state, reason = index_states(client)[("overwarm", "1")]
        assert state == "UNAVAILABLE"
        assert "warmup: batch size 8 is over max_batch_size 4" in reason


def test_readiness_and_health_follow_the_required_models(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    repo = tmp_path / "repo"
    publish_version(repo / "needed", 1)
    broken = repo / "broken" / "1" / "model.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not onnx")
    args = ["--model-control-mode", "explicit", "--load-model", "*", "--required-models", "needed"]
    with running_server(repo, tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)

        def health() -> int:
            with grpc.insecure_channel(server.address) as channel:
                request = health_pb2.HealthCheckRequest(service="")
                return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status

        assert client.is_server_ready()  # the broken model is not required
        assert health() == health_pb2.HealthCheckResponse.SERVING
        client.unload_model("needed")
        assert not client.is_server_ready()
        wait_for(lambda: health() == health_pb2.HealthCheckResponse.NOT_SERVING)
        client.load_model("needed")
        assert client.is_server_ready()
        wait_for(lambda: health() == health_pb2.HealthCheckResponse.SERVING)
