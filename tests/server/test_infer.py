"""Inference through the real server, called with tritonclient and with raw gRPC stubs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from server.datatypes import CONTENTS_FIELD_BY_DATATYPE, NUMPY_BY_DATATYPE
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import IDENTITY_DATATYPES, identity_model_name
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def _add_sub_inputs(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[triton.InferInput]]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, 16)).astype(np.float32)
    b = rng.standard_normal((rows, 16)).astype(np.float32)
    inputs = [triton.InferInput("INPUT0", [rows, 16], "FP32"), triton.InferInput("INPUT1", [rows, 16], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return a, b, inputs


@pytest.mark.parametrize("rows", [1, 17])
def test_raw_contents_give_exact_outputs_at_batch_size(triton_client: triton.InferenceServerClient, rows: int) -> None:
    a, b, inputs = _add_sub_inputs(rows, seed=rows)
    result = triton_client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_requested_output_subset_returns_only_that_output(triton_client: triton.InferenceServerClient) -> None:
    a, b, inputs = _add_sub_inputs(3, seed=1)
    result = triton_client.infer("add_sub", inputs, outputs=[triton.InferRequestedOutput("OUTPUT1")])
    assert [output.name for output in result.get_response().outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_request_id_and_model_version_are_echoed(triton_client: triton.InferenceServerClient) -> None:
    _, _, inputs = _add_sub_inputs(1, seed=2)
    response = triton_client.infer("add_sub", inputs, request_id="req-42").get_response()
    assert response.id == "req-42"
    assert (response.model_name, response.model_version) == ("add_sub", "1")


def test_request_parameters_are_accepted(triton_client: triton.InferenceServerClient) -> None:
    a, b, inputs = _add_sub_inputs(2, seed=3)
    result = triton_client.infer("add_sub", inputs, priority=1, timeout=10_000_000, parameters={"tag": "x"})
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def _sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = NUMPY_BY_DATATYPE[datatype]
    rng = np.random.default_rng(7)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("datatype", IDENTITY_DATATYPES)
def test_every_numeric_datatype_round_trips_through_raw_contents(
    triton_client: triton.InferenceServerClient, datatype: str
) -> None:
    data = _sample(datatype, (3, 4))
    tensor = triton.InferInput("INPUT0", list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    result = triton_client.infer(identity_model_name(datatype), [tensor])
    assert result.get_output("OUTPUT0").datatype == datatype
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


@pytest.mark.parametrize("datatype", sorted(CONTENTS_FIELD_BY_DATATYPE))
def test_typed_contents_are_accepted_for_every_datatype_with_a_field(server: ServerProcess, datatype: str) -> None:
    data = _sample(datatype, (2, 4))
    request = pb.ModelInferRequest(model_name=identity_model_name(datatype))
    tensor = request.inputs.add(name="INPUT0", datatype=datatype, shape=data.shape)
    getattr(tensor.contents, CONTENTS_FIELD_BY_DATATYPE[datatype]).extend(data.ravel().tolist())
    with grpc.insecure_channel(server.address) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    output = np.frombuffer(response.raw_output_contents[0], dtype=NUMPY_BY_DATATYPE[datatype]).reshape(2, 4)
    np.testing.assert_array_equal(output, data)


def test_sixty_four_concurrent_requests_each_get_their_own_answer(
    triton_client: triton.InferenceServerClient,
) -> None:
    def call(seed: int) -> bool:
        a, b, inputs = _add_sub_inputs(1 + seed % 5, seed=100 + seed)
        result = triton_client.infer("add_sub", inputs, request_id=str(seed))
        return (
            result.get_response().id == str(seed)
            and np.array_equal(result.as_numpy("OUTPUT0"), a + b)
            and np.array_equal(result.as_numpy("OUTPUT1"), a - b)
        )

    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(call, range(64)))
    assert all(answers)


def test_gzip_compressed_request_is_served(triton_client: triton.InferenceServerClient) -> None:
    a, b, inputs = _add_sub_inputs(4, seed=5)
    result = triton_client.infer("add_sub", inputs, compression_algorithm="gzip")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def test_message_far_over_grpc_default_four_mib_is_served(triton_client: triton.InferenceServerClient) -> None:
    data = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(1, -1)  # 12 MiB each way
    tensor = triton.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = triton_client.infer("variable_width", [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
