"""Liveness, readiness, metadata, config and the repository index, as tritonclient reads them."""

from __future__ import annotations

import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def test_server_is_live(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()


def test_server_is_not_ready_while_a_model_failed_to_load_under_strict_readiness(
    client: triton.InferenceServerClient,
) -> None:
    assert not client.is_server_ready()


def test_good_model_is_ready_and_failed_one_is_not(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("add_sub", "2")
    assert not client.is_model_ready("corrupt")
    assert not client.is_model_ready("no_such_model")


def test_server_metadata_lists_only_implemented_extensions(client: triton.InferenceServerClient) -> None:
    metadata = client.get_server_metadata()
    assert metadata.name == "tau"
    assert set(metadata.extensions) == {
        "classification",
        "model_configuration",
        "model_repository",
        "parameters",
        "schedule_policy",
        "statistics",
    }


def test_model_metadata_is_inferred_from_a_graph_without_config(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("add_sub", as_json=True)
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "16"]},
        {"name": "INPUT1", "datatype": "FP32", "shape": ["-1", "16"]},
    ]
    assert [output["name"] for output in metadata["outputs"]] == ["OUTPUT0", "OUTPUT1"]


def test_model_metadata_of_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_metadata("no_such_model")
    assert refused.value.status() == "StatusCode.NOT_FOUND"
    assert "no_such_model" in refused.value.message()


def test_model_config_reports_batching_limits_tensors_and_active_provider(
    client: triton.InferenceServerClient,
) -> None:
    config = client.get_model_config("identity_int16", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "INPUT0", "data_type": "TYPE_INT16", "dims": ["4"]}]
    assert config["output"] == [{"name": "OUTPUT0", "data_type": "TYPE_INT16", "dims": ["4"]}]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["execution_provider"]["string_value"] == "CPUExecutionProvider"


def test_repository_index_lists_every_model_with_failures_and_reasons(client: triton.InferenceServerClient) -> None:
    index = {entry["name"]: entry for entry in client.get_model_repository_index(as_json=True)["models"]}
    assert index["add_sub"]["state"] == "READY"
    assert index["corrupt"]["state"] == "UNAVAILABLE"
    assert "could not load" in index["corrupt"]["reason"]
    assert index["mismatched_config"]["state"] == "UNAVAILABLE"
    assert "config shape [5] does not fit the graph's [4]" in index["mismatched_config"]["reason"]
