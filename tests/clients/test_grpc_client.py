"""Tau's own client against the real server: numpy round trips, deadlines, errors that carry the status."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from clients import InferenceError, TauClient
from tests.server_process import ServerProcess


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
