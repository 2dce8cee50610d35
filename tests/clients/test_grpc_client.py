"""Tau's own client against the real server: numpy round trips, deadlines, errors that carry the status."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from clients import InferenceError, TauClient
from tests.server.onnx_builders import identity_model
from tests.server_process import ServerProcess, running_server


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> TauClient:
    return TauClient(server.address)


def test_infer_returns_numpy_outputs(client: TauClient) -> None:
    a = np.arange(48, dtype=np.float32).reshape(3, 16)
    b = np.ones((3, 16), np.float32)
    outputs = client.infer("add_sub", {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(outputs["OUTPUT0"], a + b)
    np.testing.assert_array_equal(outputs["OUTPUT1"], a - b)


def test_infer_returns_only_requested_outputs(client: TauClient) -> None:
    a = np.ones((1, 16), np.float32)
    outputs = client.infer("add_sub", {"INPUT0": a, "INPUT1": a}, outputs=["OUTPUT1"])
    assert list(outputs) == ["OUTPUT1"]


def test_health_calls_answer(client: TauClient) -> None:
    assert client.is_server_live()
    assert client.is_model_ready("add_sub")
    assert not client.is_model_ready("corrupt")
    assert [tensor.name for tensor in client.model_metadata("add_sub").inputs] == ["INPUT0", "INPUT1"]


def test_refused_request_raises_with_status_and_server_message(client: TauClient) -> None:
    with pytest.raises(InferenceError) as refused:
        client.infer("add_sub", {"INPUT0": np.ones((1, 16), np.int32), "INPUT1": np.ones((1, 16), np.float32)})
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected datatype FP32, got INT32" in refused.value.message


def test_deadline_shorter_than_the_model_raises_deadline_exceeded(client: TauClient) -> None:
    data = np.ones((64, 1024), np.float32)
    with pytest.raises(InferenceError) as late:
        client.infer("slow", {"INPUT0": data}, timeout_seconds=0.01)
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    np.testing.assert_array_equal(
        client.infer("add_sub", {"INPUT0": data[:1, :16], "INPUT1": data[:1, :16]})["OUTPUT0"], 2 * data[:1, :16]
    )


def test_server_metadata_names_tau_and_its_extensions(client: TauClient) -> None:
    metadata = client.server_metadata()
    assert metadata.name == "tau" and "model_configuration" in metadata.extensions


def test_model_config_and_repository_index_describe_the_models(client: TauClient) -> None:
    config = client.model_config("identity_fp32")
    assert config.max_batch_size == 8 and [tensor.name for tensor in config.input] == ["INPUT0"]
    states = {(entry.name, entry.state) for entry in client.repository_index()}
    assert ("add_sub", "READY") in states and ("corrupt", "UNAVAILABLE") in states
    assert all(entry.state == "READY" for entry in client.repository_index(ready_only=True))


def test_model_statistics_count_inferences(client: TauClient) -> None:
    before = client.model_statistics("identity_fp64")[0].inference_count
    client.infer("identity_fp64", {"INPUT0": np.ones((3, 4), np.float64)})
    assert client.model_statistics("identity_fp64")[0].inference_count == before + 3


def test_unknown_model_metadata_raises_not_found(client: TauClient) -> None:
    with pytest.raises(InferenceError) as missing:
        client.model_config("no_such_model")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND and missing.value.attempts == 1


def test_tensors_far_over_grpcs_4_mib_default_round_trip(client: TauClient) -> None:
    big = np.random.default_rng(0).standard_normal((4, 1 << 20)).astype(np.float32)  # 16 MiB
    np.testing.assert_array_equal(client.infer("variable_width", {"INPUT0": big})["OUTPUT0"], big)


def test_one_client_shared_by_many_threads_gets_each_its_own_answer(client: TauClient) -> None:
    def round_trip(seed: int) -> bool:
        rows = np.full((2, 4), seed, np.int32)
        return bool(np.array_equal(client.infer("identity_int32", {"INPUT0": rows})["OUTPUT0"], rows))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, range(64)))


def test_load_and_unload_models_in_explicit_mode(tmp_path: Path) -> None:
    identity_model(tmp_path / "repo" / "identity" / "1" / "model.onnx", "FP32")
    with running_server(tmp_path / "repo", tmp_path / "server.log", ["--model-control-mode", "explicit"]) as explicit:
        with TauClient(explicit.address) as client:
            assert not client.is_model_ready("identity")
            client.load_model("identity", config_json='{"max_batch_size": 4}')
            assert client.is_model_ready("identity") and client.model_config("identity").max_batch_size == 4
            client.unload_model("identity")
            assert not client.is_model_ready("identity")
