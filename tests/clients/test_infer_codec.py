"""The hand-written tensor bytes are exactly what protobuf would write and read, with fewer copies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clients.infer_codec import (
    build_infer_request,
    decode_infer_response,
    decode_infer_response_bytes,
    encode_infer_request,
)
from server.datatypes import NUMPY_BY_DATATYPE
from server.protocol import grpc_service_pb2 as pb

DTYPES = st.sampled_from(sorted(NUMPY_BY_DATATYPE.values(), key=str))
ARRAYS = DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))


@settings(max_examples=60, deadline=None)
@given(arrays=st.lists(ARRAYS, min_size=1, max_size=3), request_id=st.text(max_size=8))
def test_encoded_request_is_byte_for_byte_protobufs_serialization(arrays: list[np.ndarray], request_id: str) -> None:
    inputs = {f"INPUT{i}": array for i, array in enumerate(arrays)}
    ours = encode_infer_request("m", inputs, ["OUTPUT0"], "2", request_id, {"priority": 1})
    theirs = build_infer_request("m", inputs, ["OUTPUT0"], "2", request_id, {"priority": 1}).SerializeToString()
    assert ours == theirs


def _response(arrays: list[np.ndarray]) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name="m", model_version="1", id="r")
    datatype_by_dtype = {dtype: name for name, dtype in NUMPY_BY_DATATYPE.items()}
    for i, array in enumerate(arrays):
        response.outputs.add(name=f"OUTPUT{i}", datatype=datatype_by_dtype[array.dtype], shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response


@settings(max_examples=60, deadline=None)
@given(arrays=st.lists(ARRAYS, min_size=1, max_size=3))
def test_decoded_response_views_equal_protobufs_parse(arrays: list[np.ndarray]) -> None:
    response = _response(arrays)
    ours = decode_infer_response_bytes(response.SerializeToString())
    theirs = decode_infer_response(response)
    assert list(ours) == list(theirs)
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype
        assert ours[name].tobytes() == theirs[name].tobytes() and ours[name].shape == theirs[name].shape


def test_decoded_outputs_are_views_of_the_response_bytes() -> None:
    data = _response([np.arange(1000, dtype=np.float32)]).SerializeToString()
    output = decode_infer_response_bytes(data)["OUTPUT0"]
    assert not output.flags.owndata and not output.flags.writeable
    assert output.base is not None


def test_non_contiguous_and_big_endian_inputs_go_as_little_endian_row_major() -> None:
    array = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    request = pb.ModelInferRequest.FromString(encode_infer_request("m", {"x": array}))
    assert request.raw_input_contents[0] == np.ascontiguousarray(array, dtype="<f4").tobytes()
    assert list(request.inputs[0].shape) == [4, 3] and request.inputs[0].datatype == "FP32"


def test_typed_contents_from_other_servers_are_decoded() -> None:
    response = pb.ModelInferResponse(model_name="m")
    tensor = response.outputs.add(name="OUTPUT0", datatype="INT32", shape=[2, 2])
    tensor.contents.int_contents.extend([1, 2, 3, 4])
    decoded = decode_infer_response_bytes(response.SerializeToString())["OUTPUT0"]
    np.testing.assert_array_equal(decoded, np.array([[1, 2], [3, 4]], np.int32))


def test_unsupported_dtype_is_refused_with_the_input_name() -> None:
    with pytest.raises(TypeError, match="input 'x': dtype complex64"):
        encode_infer_request("m", {"x": np.ones(2, np.complex64)})


def test_raw_output_of_the_wrong_size_is_refused() -> None:
    response = pb.ModelInferResponse(model_name="m")
    response.outputs.add(name="OUTPUT0", datatype="FP32", shape=[2])
    response.raw_output_contents.append(b"\0" * 4)
    with pytest.raises(ValueError, match="output 'OUTPUT0': 4 bytes, expected 8"):
        decode_infer_response_bytes(response.SerializeToString())
