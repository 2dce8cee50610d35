"""Triton's classification extension: top classes as "<value>:<index>[:<label>]" BYTES, through the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from clients.grpc_client import TauClient
from server.bytes_tensor import deserialize_bytes_tensor, serialize_bytes_tensor
from server.classification import top_classes
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server.onnx_builders import identity_model
from tests.server_process import ServerProcess, running_server

LABELS = ["cat", "dog", "bird"]  # one fewer than the model's 4 outputs: index 3 has no label


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("classifiers")
    identity_model(root / "scores" / "1" / "model.onnx", "FP32")
    (root / "scores" / "config.json").write_text(json.dumps({"max_batch_size": 8, "labels": LABELS}))
    identity_model(root / "counts" / "1" / "model.onnx", "INT32")
    (root / "counts" / "config.json").write_text(json.dumps({"max_batch_size": 8}))
    with running_server(root, root / "server.log") as server:
        yield server


def _scores_input(values: np.ndarray) -> list[triton.InferInput]:
    tensor = triton.InferInput("INPUT0", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    return [tensor]


def test_top_classes_come_highest_first_with_labels_per_batch_row(classifier_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(classifier_server.address)
    values = np.array([[0.1, 0.7, 0.05, 0.15], [0.9, 0.0, 0.02, 0.08]], np.float32)
    outputs = [triton.InferRequestedOutput("OUTPUT0", class_count=3)]
    result = client.infer("scores", _scores_input(values), outputs=outputs).as_numpy("OUTPUT0")
    assert result.shape == (2, 3)
    assert result.tolist() == [
        [b"0.700000:1:dog", b"0.150000:3", b"0.100000:0:cat"],
        [b"0.900000:0:cat", b"0.080000:3", b"0.020000:2:bird"],
    ]
    # Without the parameter the same call returns the values themselves.
    plain = client.infer("scores", _scores_input(values), outputs=[triton.InferRequestedOutput("OUTPUT0")])
    np.testing.assert_array_equal(plain.as_numpy("OUTPUT0"), values)


def test_integer_outputs_print_as_integers_and_a_count_over_the_classes_returns_them_all(
    classifier_server: ServerProcess,
) -> None:
    client = triton.InferenceServerClient(classifier_server.address)
    tensor = triton.InferInput("INPUT0", [1, 4], "INT32")
    tensor.set_data_from_numpy(np.array([[3, -1, 7, 3]], np.int32))
    outputs = [triton.InferRequestedOutput("OUTPUT0", class_count=10)]
    result = client.infer("counts", [tensor], outputs=outputs).as_numpy("OUTPUT0")
    # Equal values keep index order; no labels configured, so none are printed.
    assert result.tolist() == [[b"7:2", b"3:0", b"3:3", b"-1:1"]]


def test_the_server_advertises_the_extension(classifier_server: ServerProcess) -> None:
    metadata = triton.InferenceServerClient(classifier_server.address).get_server_metadata()
    assert "classification" in metadata.extensions


@pytest.mark.parametrize(
    "parameter",
    [pb.InferParameter(int64_param=-2), pb.InferParameter(string_param="3"), pb.InferParameter(bool_param=True)],
)
def test_a_bad_classification_parameter_is_refused_by_name(
    classifier_server: ServerProcess, parameter: pb.InferParameter
) -> None:
    request = pb.ModelInferRequest(model_name="scores")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.zeros((1, 4), np.float32).tobytes())
    request.outputs.add(name="OUTPUT0").parameters["classification"].CopyFrom(parameter)
    with classifier_server.channel() as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refusal:
            stub.ModelInfer(request, timeout=10)
        assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "output 'OUTPUT0': parameter 'classification'" in str(refusal.value.details())
        del request.outputs[:]
        assert stub.ModelInfer(request, timeout=10).outputs[0].datatype == "FP32"


def test_tau_client_asks_for_classes_and_decodes_bytes(classifier_server: ServerProcess) -> None:
    with TauClient(classifier_server.address) as client:
        values = np.array([[0.2, 0.1, 0.6, 0.1]], np.float32)
        outputs = client.infer("scores", {"INPUT0": values}, classify={"OUTPUT0": 2})
    assert outputs["OUTPUT0"].tolist() == [[b"0.600000:2:bird", b"0.200000:0:cat"]]


def test_a_model_without_a_batch_dimension_gets_one_row_of_classes() -> None:
    classes = top_classes(np.array([1.0, 5.0, 10.0, 4.0], np.float32), 2, (), batched=False)
    assert classes.tolist() == [b"10.000000:2", b"5.000000:1"]


def test_bytes_tensors_round_trip_and_malformed_ones_are_refused() -> None:
    elements = np.array([b"", b"a", b"\x00\xff" * 300], dtype=object).reshape(3, 1)
    data = serialize_bytes_tensor(elements.flat)
    assert deserialize_bytes_tensor(data, (3, 1)).tolist() == elements.tolist()
    with pytest.raises(ValueError, match="cut off"):
        deserialize_bytes_tensor(data + b"\x01", (3, 1))
    with pytest.raises(ValueError, match="runs past the end"):
        deserialize_bytes_tensor(b"\x05\x00\x00\x00ab", (1,))
    with pytest.raises(ValueError, match="3 elements, expected 2"):
        deserialize_bytes_tensor(data, (2,))
