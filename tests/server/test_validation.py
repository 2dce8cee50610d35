"""Every malformed request gets INVALID_ARGUMENT or NOT_FOUND naming what was wrong, and the next one is served."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server_process import ServerProcess

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 2**31 - 1)]) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def good_request(rows: int = 2) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="add_sub")
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="FP32", shape=[rows, 16])
        request.raw_input_contents.append(np.full((rows, 16), 2.0, np.float32).tobytes())
    return request


def _rename(request: pb.ModelInferRequest) -> None:
    request.inputs[1].name = "INPUT9"


def _drop_input(request: pb.ModelInferRequest) -> None:
    del request.inputs[1]
    del request.raw_input_contents[1]


def _duplicate_input(request: pb.ModelInferRequest) -> None:
    request.inputs[1].name = "INPUT0"


def _extra_input(request: pb.ModelInferRequest) -> None:
    request.inputs.add(name="EXTRA", datatype="FP32", shape=[2, 16])
    request.raw_input_contents.append(np.zeros((2, 16), np.float32).tobytes())


def _wrong_datatype_same_size(request: pb.ModelInferRequest) -> None:
    request.inputs[0].datatype = "INT32"


def _wrong_datatype_other_size(request: pb.ModelInferRequest) -> None:
    request.inputs[0].datatype = "FP64"
    request.raw_input_contents[0] = np.zeros((2, 16), np.float64).tobytes()


def _wrong_rank(request: pb.ModelInferRequest) -> None:
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([2, 4, 4])


def _wrong_dim(request: pb.ModelInferRequest) -> None:
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([4, 8])


def _negative_dim(request: pb.ModelInferRequest) -> None:
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([-2, 16])


def _raw_too_short(request: pb.ModelInferRequest) -> None:
    request.raw_input_contents[0] = request.raw_input_contents[0][:-4]


def _raw_too_long(request: pb.ModelInferRequest) -> None:
    request.raw_input_contents[0] = request.raw_input_contents[0] + b"\0\0\0\0"


def _extra_raw_buffer(request: pb.ModelInferRequest) -> None:
    request.raw_input_contents.append(b"\0" * 128)


def _mixed_raw_and_typed(request: pb.ModelInferRequest) -> None:
    request.inputs[1].contents.fp32_contents.extend([1.0] * 32)


def _typed_wrong_count(request: pb.ModelInferRequest) -> None:
    del request.raw_input_contents[:]
    request.inputs[0].contents.fp32_contents.extend([1.0] * 32)
    request.inputs[1].contents.fp32_contents.extend([1.0] * 31)


def _typed_wrong_field(request: pb.ModelInferRequest) -> None:
    del request.raw_input_contents[:]
    request.inputs[0].contents.fp32_contents.extend([1.0] * 32)
    request.inputs[1].contents.int_contents.extend([1] * 32)


def _batch_sizes_differ(request: pb.ModelInferRequest) -> None:
    del request.inputs[1].shape[:]
    request.inputs[1].shape.extend([3, 16])
    request.raw_input_contents[1] = np.zeros((3, 16), np.float32).tobytes()


def _batch_over_max(request: pb.ModelInferRequest) -> None:
    rows = 65
    for position, tensor in enumerate(request.inputs):
        del tensor.shape[:]
        tensor.shape.extend([rows, 16])
        request.raw_input_contents[position] = np.zeros((rows, 16), np.float32).tobytes()


def _unknown_output(request: pb.ModelInferRequest) -> None:
    request.outputs.add(name="OUTPUT7")


def _huge_shape(request: pb.ModelInferRequest) -> None:
    request.model_name = "variable_width"
    del request.inputs[1:]
    del request.raw_input_contents[1:]
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([1, 2**62])


def _unknown_model(request: pb.ModelInferRequest) -> None:
    request.model_name = "no_such_model"


def _unknown_version(request: pb.ModelInferRequest) -> None:
    request.model_version = "99"


CASES: list[tuple[str, Callable[[pb.ModelInferRequest], None], grpc.StatusCode, str]] = [
    ("unknown input", _rename, INVALID, "unknown input 'INPUT9'"),
    ("missing input", _drop_input, INVALID, "missing input 'INPUT1'"),
    ("duplicate input", _duplicate_input, INVALID, "input 'INPUT0' appears more than once"),
    ("extra input", _extra_input, INVALID, "unknown input 'EXTRA'"),
    ("datatype of the same byte size", _wrong_datatype_same_size, INVALID, "expected datatype FP32, got INT32"),
    ("datatype of another byte size", _wrong_datatype_other_size, INVALID, "expected datatype FP32, got FP64"),
    ("wrong rank", _wrong_rank, INVALID, "input 'INPUT0': expected shape [-1, 16], got [2, 4, 4]"),
    ("wrong dimension", _wrong_dim, INVALID, "input 'INPUT0': expected shape [-1, 16], got [4, 8]"),
    ("negative dimension", _negative_dim, INVALID, "negative dimension"),
    ("raw bytes too short", _raw_too_short, INVALID, "input 'INPUT0': raw_input_contents holds 124 bytes"),
    ("raw bytes too long", _raw_too_long, INVALID, "input 'INPUT0': raw_input_contents holds 132 bytes"),
    ("extra raw buffer", _extra_raw_buffer, INVALID, "raw_input_contents has 3 buffers but the request has 2"),
    ("raw and typed mixed", _mixed_raw_and_typed, INVALID, "input 'INPUT1': has typed contents"),
    ("typed count wrong", _typed_wrong_count, INVALID, "contents.fp32_contents holds 31 values, expected 32"),
    ("typed field wrong", _typed_wrong_field, INVALID, "FP32 data belongs in contents.fp32_contents"),
    ("batch sizes differ", _batch_sizes_differ, INVALID, "different batch sizes"),
    ("batch over max_batch_size", _batch_over_max, INVALID, "batch size 65 is over the model's max_batch_size of 64"),
    ("unknown requested output", _unknown_output, INVALID, "unknown requested output 'OUTPUT7'"),
    ("shape that would allocate exabytes", _huge_shape, INVALID, "elements, more than the limit"),
    ("unknown model", _unknown_model, NOT_FOUND, "unknown model 'no_such_model'"),
    ("unknown version", _unknown_version, NOT_FOUND, "model 'add_sub' has no version '99'"),
]


@pytest.mark.parametrize(("label", "corrupt", "code", "message"), CASES, ids=[case[0] for case in CASES])
def test_bad_request_is_refused_and_the_next_is_served(
    stub: pb_grpc.GRPCInferenceServiceStub,
    label: str,
    corrupt: Callable[[pb.ModelInferRequest], None],
    code: grpc.StatusCode,
    message: str,
) -> None:
    request = good_request()
    corrupt(request)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=10)
    assert refused.value.code() == code, label
    assert message in refused.value.details()
    response = stub.ModelInfer(good_request(), timeout=10)
    output = np.frombuffer(response.raw_output_contents[0], np.float32)
    np.testing.assert_array_equal(output, np.full(32, 4.0, np.float32))


def test_model_that_failed_to_load_answers_unavailable_with_its_reason(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    request = good_request()
    request.model_name = "corrupt"
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "model 'corrupt' is not ready" in refused.value.details()
