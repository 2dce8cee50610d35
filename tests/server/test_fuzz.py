"""Fuzzing ModelInfer through the real server: any request gets a result or a clean refusal, never INTERNAL."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import IDENTITY_DATATYPES, identity_model_name
from tests.server_process import ServerProcess, resident_mib

MODELS = [
    "add_sub",
    "variable_width",
    "corrupt",
    "mismatched_config",
    "no_such_model",
    *map(identity_model_name, IDENTITY_DATATYPES),
]
NOT_READY = {"corrupt", "mismatched_config"}
DATATYPES = [*IDENTITY_DATATYPES, "BYTES", "BF16", "", "fp32", "FP32 "]
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

dimensions = st.one_of(
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([-1, 2**31, 2**32 + 4, 2**62]),
)
names = st.one_of(st.sampled_from(["INPUT0", "INPUT1", "OUTPUT0"]), st.text(max_size=30), st.just("x" * 100_000))
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[pb.ModelInferRequest.InferInputTensor, bytes | None]:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=draw(names), datatype=draw(st.sampled_from(DATATYPES)), shape=draw(st.lists(dimensions, max_size=4))
    )
    choice = draw(st.sampled_from(["raw", "raw_exact", "fp32", "int", "bytes", "none"]))
    if choice == "raw":
        return tensor, draw(st.binary(max_size=512))
    if choice == "raw_exact":
        count = int(np.prod([d for d in tensor.shape if 0 <= d <= 64] or [0]))
        # Up to 160,000 values: hypothesis refuses lists that long, so numpy fills them from a drawn
        # seed and hypothesis places a few drawn values (NaN, infinities, extremes) at the front.
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(count).astype(np.float32)
        specials = draw(st.lists(floats, max_size=min(count, 8)))
        values[: len(specials)] = np.array(specials, np.float32)
        return tensor, values.tobytes()
    if choice == "fp32":
        tensor.contents.fp32_contents.extend(draw(st.lists(floats, max_size=64)))
    elif choice == "int":
        tensor.contents.int64_contents.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=64)))
    elif choice == "bytes":
        tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=16), max_size=8)))
    return tensor, None


def _parameter(draw: st.DrawFn) -> pb.InferParameter:
    kind = draw(st.sampled_from(["bool", "int", "uint", "double", "string"]))
    if kind == "bool":
        return pb.InferParameter(bool_param=draw(st.booleans()))
    if kind == "int":
        return pb.InferParameter(int64_param=draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == "uint":
        return pb.InferParameter(uint64_param=draw(st.integers(0, 2**64 - 1)))
    if kind == "double":
        return pb.InferParameter(double_param=draw(st.floats()))
    return pb.InferParameter(string_param=draw(st.text(max_size=20)))


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(MODELS)),
        model_version=draw(st.sampled_from(["", "1", "2", "-1", "01", "x" * 1000])),
        id=draw(st.one_of(st.text(max_size=20), st.just("i" * 200_000))),
    )
    drawn = draw(st.lists(tensors(), max_size=5))
    raw_buffers = [raw for _, raw in drawn if raw is not None]
    for tensor, _ in drawn:
        request.inputs.append(tensor)
    if draw(st.booleans()):
        request.raw_input_contents.extend(raw_buffers)
    for key in draw(
        st.lists(st.sampled_from(["priority", "timeout", "sequence_id", "binary_data_output", "z"]), max_size=3)
    ):
        request.parameters[key].CopyFrom(_parameter(draw))
    for name in draw(st.lists(names, max_size=3)):
        request.outputs.add(name=name)
    if draw(st.integers(0, 20)) == 0:
        for i in range(3000):  # thousands of inputs
            request.inputs.add(name=f"in{i}", datatype="FP32", shape=[1])
    return request


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    options = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]
    with grpc.insecure_channel(server.address, options=options) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(request=requests())
def test_any_request_gets_a_result_or_a_clean_refusal(
    stub: pb_grpc.GRPCInferenceServiceStub, request: pb.ModelInferRequest
) -> None:
    try:
        response = stub.ModelInfer(request, timeout=10)
    except grpc.RpcError as error:
        code = error.code()
        if request.model_name in NOT_READY and code == grpc.StatusCode.UNAVAILABLE:
            return
        assert code in ALLOWED, f"{code}: {error.details()}"
        assert error.details(), "a refusal must say why"
        return
    assert response.model_name == request.model_name
    assert len(response.outputs) == len(response.raw_output_contents)


def test_fuzzing_leaves_the_server_serving_with_bounded_memory(
    server: ServerProcess, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    before = resident_mib(server.process.pid)
    test_any_request_gets_a_result_or_a_clean_refusal(stub)  # type: ignore[call-arg]
    after = resident_mib(server.process.pid)
    assert after - before < 150, f"RSS grew by {after - before:.0f} MiB"
    request = pb.ModelInferRequest(model_name="identity_fp32")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    output = stub.ModelInfer(request, timeout=10).raw_output_contents[0]
    assert np.frombuffer(output, np.float32).tolist() == [0.0, 1.0, 2.0, 3.0]
