"""ModelStreamInfer through the real server: tritonclient's stream API and a raw bidirectional stub."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from server.protocol import grpc_service_pb2 as pb
from tests.server_process import ServerProcess

METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


def _add_sub_inputs(values: np.ndarray) -> list[triton.InferInput]:
    inputs = [triton.InferInput(name, list(values.shape), "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(values)
    return inputs


@pytest.fixture
def stream(server: ServerProcess) -> Iterator[tuple[triton.InferenceServerClient, queue.Queue]]:
    client = triton.InferenceServerClient(server.address)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    yield client, answers
    client.stop_stream()
    client.close()


def test_many_requests_on_one_stream_each_get_their_own_answer(
    stream: tuple[triton.InferenceServerClient, queue.Queue],
) -> None:
    client, answers = stream
    sent = {str(i): np.full((1, 16), float(i), np.float32) for i in range(40)}
    for request_id, values in sent.items():
        client.async_stream_infer("add_sub", _add_sub_inputs(values), request_id=request_id)
    received = {}
    for _ in sent:
        result, error = answers.get(timeout=30)
        assert error is None, error
        received[result.get_response().id] = result.as_numpy("OUTPUT0")
    assert sorted(received) == sorted(sent)
    for request_id, values in sent.items():
        np.testing.assert_array_equal(received[request_id], values * 2)


def test_a_refused_request_is_answered_on_the_stream_and_the_stream_goes_on(
    stream: tuple[triton.InferenceServerClient, queue.Queue],
) -> None:
    client, answers = stream
    bad = [triton.InferInput("INPUT0", [1, 15], "FP32"), triton.InferInput("INPUT1", [1, 15], "FP32")]
    for tensor in bad:
        tensor.set_data_from_numpy(np.zeros((1, 15), np.float32))
    client.async_stream_infer("add_sub", bad, request_id="bad")
    client.async_stream_infer("no_such_model", bad, request_id="unknown")
    client.async_stream_infer("add_sub", _add_sub_inputs(np.ones((1, 16), np.float32)), request_id="good")
    outcomes = [answers.get(timeout=30) for _ in range(3)]
    errors = sorted(str(error) for _, error in outcomes if error is not None)
    assert len(errors) == 2
    assert "input 'INPUT0': expected shape [-1, 16], got [1, 15]" in errors[0]
    assert "unknown model 'no_such_model'" in errors[1]
    (good,) = [result for result, error in outcomes if error is None]
    assert good.get_response().id == "good"


def _raw_stream(server: ServerProcess, messages: list[bytes]) -> list[pb.ModelStreamInferResponse]:
    with server.channel() as channel:
        call = channel.stream_stream(METHOD, response_deserializer=pb.ModelStreamInferResponse.FromString)
        return list(call(iter(messages), timeout=30))


def test_a_malformed_message_is_refused_by_name_with_its_status(server: ServerProcess) -> None:
    good = pb.ModelInferRequest(model_name="add_sub", id="after")
    for name in ("INPUT0", "INPUT1"):
        good.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        good.raw_input_contents.append(np.zeros((1, 16), np.float32).tobytes())
    responses = _raw_stream(server, [b"\xff\xff\xff", good.SerializeToString()])
    assert len(responses) == 2
    refused, answered = sorted(responses, key=lambda response: response.infer_response.id)
    assert "not a valid ModelInferRequest" in refused.error_message
    assert refused.infer_response.parameters["grpc_status"].string_param == "INVALID_ARGUMENT"
    assert answered.error_message == "" and answered.infer_response.id == "after"


def test_an_empty_stream_ends_cleanly(server: ServerProcess) -> None:
    assert _raw_stream(server, []) == []


def test_a_stream_cancelled_with_requests_in_flight_leaves_the_server_serving(server: ServerProcess) -> None:
    slow = pb.ModelInferRequest(model_name="slow")
    slow.inputs.add(name="INPUT0", datatype="FP32", shape=[64, 1024])
    slow.raw_input_contents.append(np.ones((64, 1024), np.float32).tobytes())
    sending = threading.Event()

    def requests() -> Iterator[bytes]:
        for _ in range(6):
            yield slow.SerializeToString()
        sending.set()
        time.sleep(30)  # keep the stream open until it is cancelled

    with server.channel() as channel:
        call = channel.stream_stream(METHOD, response_deserializer=pb.ModelStreamInferResponse.FromString)
        responses = call(requests(), timeout=60)
        assert sending.wait(timeout=10)
        responses.cancel()
        with pytest.raises(grpc.RpcError) as cancelled:
            list(responses)
        assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    client = triton.InferenceServerClient(server.address)
    result = client.infer("add_sub", _add_sub_inputs(np.ones((1, 16), np.float32)), client_timeout=30)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2.0, np.float32))
