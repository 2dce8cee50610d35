"""ModelInfer messages to and from numpy, copying tensor bytes as little as the wire allows.

Protobuf's Python bytes fields accept only `bytes`, and both setting and reading one
copies the whole tensor (upb keeps its own copy in an arena). For large tensors the
clients therefore skip protobuf for the tensor bytes only: protobuf serializes the
small header (names, shapes, parameters), and the raw tensor fields are appended as
wire-format fields, which protobuf's rules allow (fields may come in any order, and
repeated fields concatenate). Sending copies each array exactly once (into the
message bytes; a non-contiguous or big-endian array is first made contiguous
little-endian); receiving copies nothing: each output is an `np.frombuffer` view of
the response bytes. gRPC itself copies the message once more into and out of its
own buffers, which no Python code can avoid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from server.bytes_tensor import deserialize_bytes_tensor
from server.classification import CLASSIFICATION_PARAMETER
from server.datatypes import CONTENTS_FIELD_BY_DATATYPE, DATATYPE_BY_NUMPY, NUMPY_BY_DATATYPE
from server.protocol import grpc_service_pb2 as pb

# Wire-format tags: (field number << 3) | 2 (length-delimited).
_RAW_INPUT_CONTENTS_TAG = bytes([(7 << 3) | 2])
_RAW_OUTPUT_CONTENTS_FIELD = 6
_LENGTH_DELIMITED = 2

ParameterValue = bool | int | float | str


def _datatype_of(name: str, array: np.ndarray) -> str:
    datatype = DATATYPE_BY_NUMPY.get(array.dtype.newbyteorder("<"))
    if datatype is None:
        raise TypeError(f"input '{name}': dtype {array.dtype} has no V2 datatype")
    return datatype


def _little_endian_contiguous(array: np.ndarray) -> np.ndarray:
    """The array itself when it already is C-contiguous little-endian (no copy), else one copy that is."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _set_parameter(parameters: object, key: str, value: ParameterValue) -> None:
    target = parameters[key]  # type: ignore[index]
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    elif isinstance(value, str):
        target.string_param = value
    else:
        raise TypeError(f"parameter '{key}': expected bool, int, float or str, got {type(value).__name__}")


def _request_header(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None,
    version: str,
    request_id: str,
    parameters: Mapping[str, ParameterValue] | None,
    classify: Mapping[str, int] | None = None,
) -> tuple[pb.ModelInferRequest, list[np.ndarray]]:
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    arrays = []
    for name, value in inputs.items():
        array = np.asarray(value)
        request.inputs.add(name=name, datatype=_datatype_of(name, array), shape=array.shape)
        arrays.append(_little_endian_contiguous(array))
    classify = classify or {}
    requested = list(outputs or ()) + [name for name in classify if name not in (outputs or ())]
    for name in requested:
        output = request.outputs.add(name=name)
        if name in classify:
            output.parameters[CLASSIFICATION_PARAMETER].int64_param = classify[name]
    for key, parameter in (parameters or {}).items():
        _set_parameter(request.parameters, key, parameter)
    return request, arrays


def build_infer_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
    version: str = "",
    request_id: str = "",
    parameters: Mapping[str, ParameterValue] | None = None,
    classify: Mapping[str, int] | None = None,
) -> pb.ModelInferRequest:
    """A ModelInferRequest message with every input in raw_input_contents (little-endian, row-major)."""
    request, arrays = _request_header(model, inputs, outputs, version, request_id, parameters, classify)
    for array in arrays:
        request.raw_input_contents.append(array.tobytes())
    return request


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_infer_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
    version: str = "",
    request_id: str = "",
    parameters: Mapping[str, ParameterValue] | None = None,
    classify: Mapping[str, int] | None = None,
) -> bytes:
    """The serialized ModelInferRequest, byte for byte what protobuf would write, with one copy per tensor.

    `classify` asks for outputs as their top classes (Triton's classification extension): output
    name -> how many; those outputs come back as arrays of b"<value>:<index>[:<label>]"."""
    request, arrays = _request_header(model, inputs, outputs, version, request_id, parameters, classify)
    pieces: list[bytes | memoryview] = [request.SerializeToString()]
    for array in arrays:
        # join reads the array's own buffer: this is the one copy of the tensor.
        pieces += [_RAW_INPUT_CONTENTS_TAG, _varint(array.nbytes), array.data]
    return b"".join(pieces)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _split_raw_outputs(data: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """The message without its raw_output_contents fields, and each such field's (offset, length)."""
    header: list[bytes] = []
    spans: list[tuple[int, int]] = []
    position = 0
    while position < len(data):
        start = position
        tag, position = _read_varint(data, position)
        field_number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, position = _read_varint(data, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(data, position)
            if field_number == _RAW_OUTPUT_CONTENTS_FIELD:
                spans.append((position, length))
                position += length
                continue
            position += length
        else:
            raise ValueError(f"ModelInferResponse: unexpected wire type {wire_type} at byte {start}")
        header.append(data[start:position])
    if position != len(data):
        raise ValueError("ModelInferResponse: truncated message")
    return b"".join(header), spans


OutputTensor = pb.ModelInferResponse.InferOutputTensor


def _array_from_bytes(tensor: OutputTensor, data: bytes, offset: int, length: int) -> np.ndarray:
    if tensor.datatype == "BYTES":
        return deserialize_bytes_tensor(memoryview(data)[offset : offset + length], tuple(tensor.shape))
    dtype = NUMPY_BY_DATATYPE.get(tensor.datatype)
    if dtype is None:
        raise ValueError(f"output '{tensor.name}': datatype {tensor.datatype} has no numpy dtype")
    shape = tuple(tensor.shape)
    expected = math.prod(shape) * dtype.itemsize
    if length != expected:
        raise ValueError(
            f"output '{tensor.name}': {length} bytes, expected {expected} for {tensor.datatype} {list(shape)}"
        )
    return np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=offset).reshape(shape)


def _array_from_contents(tensor: OutputTensor) -> np.ndarray:
    """An output sent in typed `contents` (servers other than Tau may do so)."""
    field_name = CONTENTS_FIELD_BY_DATATYPE.get(tensor.datatype)
    if field_name is None:
        raise ValueError(f"output '{tensor.name}': datatype {tensor.datatype} cannot come as typed contents")
    values = getattr(tensor.contents, field_name)
    return np.array(values, dtype=NUMPY_BY_DATATYPE[tensor.datatype]).reshape(tuple(tensor.shape))


def decode_infer_response_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Output name -> read-only numpy view of the serialized response's bytes (no copy)."""
    header_bytes, spans = _split_raw_outputs(data)
    header = pb.ModelInferResponse.FromString(header_bytes)
    if not spans:
        return {tensor.name: _array_from_contents(tensor) for tensor in header.outputs}
    if len(spans) != len(header.outputs):
        raise ValueError(f"ModelInferResponse: {len(header.outputs)} outputs but {len(spans)} raw contents")
    return {
        tensor.name: _array_from_bytes(tensor, data, offset, length)
        for tensor, (offset, length) in zip(header.outputs, spans, strict=True)
    }


def decode_infer_response(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Output name -> numpy array, from a parsed ModelInferResponse message."""
    arrays: dict[str, np.ndarray] = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        arrays[tensor.name] = _array_from_bytes(tensor, raw, 0, len(raw))
    if not response.raw_output_contents:
        arrays = {tensor.name: _array_from_contents(tensor) for tensor in response.outputs}
    return arrays
