"""ModelInferRequest <-> numpy: decode and check every input before any model code runs, encode outputs.

Raw contents go through `np.frombuffer` (no per-element Python work); every
check raises InvalidRequestError with a message naming the tensor and what
was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.bytes_tensor import serialize_bytes_tensor
from server.classification import CLASSIFICATION_PARAMETER, top_classes
from server.config import ModelConfig, TensorSpec
from server.datatypes import CONTENTS_FIELD_BY_DATATYPE, DATATYPE_BY_NUMPY, NUMPY_BY_DATATYPE
from server.errors import InvalidRequestError
from server.protocol import grpc_service_pb2 as pb

# The wire type of each typed-contents field: values are read at this width, range-checked, then narrowed.
_FIELD_DTYPE = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


@dataclass
class DecodedRequest:
    """A request that passed every check: tensors keyed by input name, outputs to return."""

    inputs: dict[str, np.ndarray]
    output_names: list[str]
    batch_size: int
    priority: int = 0  # 0: the model's default level
    timeout_microseconds: int | None = None  # from the `timeout` parameter, as tritonclient sends it
    parameters: dict[str, Any] = field(default_factory=dict)
    classifications: dict[str, int] = field(default_factory=dict)  # output -> top classes to return


def _parameter_value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def _check_shape(spec: TensorSpec, shape: list[int], max_batch_size: int) -> None:
    expected = ([-1] if max_batch_size > 0 else []) + list(spec.shape)
    if any(dim < 0 for dim in shape):
        raise InvalidRequestError(f"input '{spec.name}': shape {shape} has a negative dimension")
    fits = len(shape) == len(expected) and all(want in (-1, got) for want, got in zip(expected, shape, strict=True))
    if not fits:
        raise InvalidRequestError(f"input '{spec.name}': expected shape {expected}, got {shape}")


def _element_count(name: str, shape: list[int], max_elements: int) -> int:
    # Python ints cannot overflow, so a shape of huge dimensions is caught here, before any allocation.
    count = math.prod(shape)
    if count > max_elements:
        raise InvalidRequestError(
            f"input '{name}': shape {shape} has {count} elements, more than the limit of {max_elements}"
        )
    return count


def _from_raw(spec: TensorSpec, shape: list[int], count: int, buffer: bytes) -> np.ndarray:
    dtype = NUMPY_BY_DATATYPE[spec.datatype]
    expected_bytes = count * dtype.itemsize
    if len(buffer) != expected_bytes:
        raise InvalidRequestError(
            f"input '{spec.name}': raw_input_contents holds {len(buffer)} bytes, "
            f"expected {expected_bytes} for shape {shape} of {spec.datatype}"
        )
    array = np.frombuffer(buffer, dtype=dtype)
    if spec.datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise InvalidRequestError(f"input '{spec.name}': BOOL bytes must be 0 or 1")
    return array.reshape(shape)


def _from_typed(spec: TensorSpec, shape: list[int], count: int, contents: pb.InferTensorContents) -> np.ndarray:
    field_name = CONTENTS_FIELD_BY_DATATYPE.get(spec.datatype)
    if field_name is None:
        raise InvalidRequestError(
            f"input '{spec.name}': {spec.datatype} has no typed contents field; send it in raw_input_contents"
        )
    present = [descriptor.name for descriptor, _ in contents.ListFields()]
    stray = [name for name in present if name != field_name]
    if stray:
        raise InvalidRequestError(
            f"input '{spec.name}': {spec.datatype} data belongs in contents.{field_name}, got contents.{stray[0]}"
        )
    values = getattr(contents, field_name)
    if len(values) != count:
        raise InvalidRequestError(
            f"input '{spec.name}': contents.{field_name} holds {len(values)} values, expected {count} for shape {shape}"
        )
    dtype = NUMPY_BY_DATATYPE[spec.datatype]
    wide: np.ndarray = np.array(values, dtype=_FIELD_DTYPE[field_name])
    if dtype.kind in "iu" and wide.size:
        limits = np.iinfo(dtype)
        if wide.min() < limits.min or wide.max() > limits.max:
            raise InvalidRequestError(
                f"input '{spec.name}': contents.{field_name} has values outside the range of {spec.datatype}"
            )
    return wide.astype(dtype).reshape(shape)


def _batch_size(config: ModelConfig, shapes: dict[str, list[int]]) -> int:
    if not config.max_batch_size:
        return 1
    sizes = {name: shape[0] for name, shape in shapes.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidRequestError(f"inputs have different batch sizes (first dimension): {sizes}")
    batch = next(iter(sizes.values()))
    if batch < 1:
        raise InvalidRequestError(f"batch size must be at least 1, got {batch}")
    if batch > config.max_batch_size:
        raise InvalidRequestError(f"batch size {batch} is over the model's max_batch_size of {config.max_batch_size}")
    return batch


def _check_input_names(request: pb.ModelInferRequest, specs: dict[str, TensorSpec], model: str) -> None:
    names = [tensor.name for tensor in request.inputs]
    for name in names:
        if name not in specs:
            raise InvalidRequestError(f"unknown input '{name}': model '{model}' expects inputs {sorted(specs)}")
        if names.count(name) > 1:
            raise InvalidRequestError(f"input '{name}' appears more than once")
    missing = sorted(set(specs) - set(names))
    if missing:
        raise InvalidRequestError(f"missing input '{missing[0]}': model '{model}' expects inputs {sorted(specs)}")


def _requested_outputs(request: pb.ModelInferRequest, config: ModelConfig) -> tuple[list[str], dict[str, int]]:
    """The outputs to return, and those to return as their top classes (Triton's classification extension)."""
    known = config.output_names
    if not request.outputs:
        return list(known), {}
    names = [output.name for output in request.outputs]
    classifications: dict[str, int] = {}
    for output in request.outputs:
        name = output.name
        if name not in known:
            raise InvalidRequestError(f"unknown requested output '{name}': model '{config.name}' has {known}")
        if names.count(name) > 1:
            raise InvalidRequestError(f"output '{name}' is requested more than once")
        if CLASSIFICATION_PARAMETER in output.parameters:
            count = _parameter_value(output.parameters[CLASSIFICATION_PARAMETER])
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidRequestError(
                    f"output '{name}': parameter '{CLASSIFICATION_PARAMETER}': expected a positive integer, "
                    f"got {count!r}"
                )
            classifications[name] = count
    return names, classifications


def _scheduling_parameters(parameters: dict[str, Any], config: ModelConfig) -> tuple[int, int | None]:
    """tritonclient sends `priority` as uint64 and `timeout` as int64 microseconds."""
    priority = parameters.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise InvalidRequestError(f"parameter 'priority': expected a non-negative integer, got {priority!r}")
    levels = config.dynamic_batching.priority_levels
    if levels and priority > levels:
        raise InvalidRequestError(f"parameter 'priority': {priority} is over the model's priority_levels ({levels})")
    timeout = parameters.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
        raise InvalidRequestError(f"parameter 'timeout': expected non-negative microseconds, got {timeout!r}")
    return (priority if levels else 0), timeout


def decode_request(
    request: pb.ModelInferRequest, config: ModelConfig, max_elements: int, max_inputs: int = 64
) -> DecodedRequest:
    """Check `request` against the model's config and return its tensors as numpy arrays."""
    assert config.inputs is not None and config.max_batch_size is not None
    if len(request.inputs) > max_inputs:
        raise InvalidRequestError(f"inputs: {len(request.inputs)} tensors, more than the limit of {max_inputs}")
    specs = config.inputs_by_name
    _check_input_names(request, specs, config.name)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequestError(
            f"raw_input_contents has {len(raw)} buffers but the request has {len(request.inputs)} inputs"
        )
    shapes: dict[str, list[int]] = {}
    for tensor in request.inputs:
        spec = specs[tensor.name]
        if tensor.datatype != spec.datatype:
            raise InvalidRequestError(
                f"input '{tensor.name}': expected datatype {spec.datatype}, got {tensor.datatype or '(none)'}"
            )
        shape = list(tensor.shape)
        _check_shape(spec, shape, config.max_batch_size)
        shapes[tensor.name] = shape
    batch_size = _batch_size(config, shapes)
    arrays: dict[str, np.ndarray] = {}
    for position, tensor in enumerate(request.inputs):
        spec, shape = specs[tensor.name], shapes[tensor.name]
        count = _element_count(tensor.name, shape, max_elements)
        has_typed = tensor.HasField("contents") and bool(tensor.contents.ListFields())
        if raw:
            if has_typed:
                raise InvalidRequestError(
                    f"input '{tensor.name}': has typed contents while the request uses raw_input_contents; "
                    "send every input one way"
                )
            arrays[tensor.name] = _from_raw(spec, shape, count, raw[position])
        else:
            arrays[tensor.name] = _from_typed(spec, shape, count, tensor.contents)
    parameters = {key: _parameter_value(value) for key, value in request.parameters.items()}
    priority, timeout_microseconds = _scheduling_parameters(parameters, config)
    output_names, classifications = _requested_outputs(request, config)
    return DecodedRequest(
        inputs=arrays,
        output_names=output_names,
        classifications=classifications,
        batch_size=batch_size,
        priority=priority,
        timeout_microseconds=timeout_microseconds,
        parameters=parameters,
    )


def encode_response(
    request: pb.ModelInferRequest,
    model_name: str,
    model_version: str,
    outputs: dict[str, np.ndarray],
    classifications: dict[str, int] | None = None,
    config: ModelConfig | None = None,
) -> pb.ModelInferResponse:
    """Build the response with raw_output_contents, the only form tritonclient reads.

    Outputs in `classifications` go out as BYTES top classes, labelled from `config.labels`."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request.id)
    for name, array in outputs.items():
        if classifications and name in classifications:
            batched = bool(config and config.max_batch_size)
            labels = config.labels if config else ()
            classes = top_classes(array, classifications[name], labels, batched)
            response.outputs.add(name=name, datatype="BYTES", shape=classes.shape)
            response.raw_output_contents.append(serialize_bytes_tensor(classes.flat))
            continue
        datatype = DATATYPE_BY_NUMPY.get(array.dtype)
        if datatype is None:
            raise TypeError(f"output '{name}' has dtype {array.dtype}, which has no V2 datatype")
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
    return response
