"""The README's promise, end to end: export a PyTorch model, serve it, call it with tritonclient and Tau's client."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import torch
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients import TauClient
from exporter import export_model
from tests.server_process import REPO_ROOT, running_server

BUNDLED_MODELS = REPO_ROOT / "models"


def _in_process(model_file: Path, name: str, data: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, {name: data})[0]


def test_bundled_example_models_are_served_to_tritonclient_and_tau_client(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, repository)
    features = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    pixels = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with running_server(repository, tmp_path / "server.log") as server:
        client = triton.InferenceServerClient(server.address)
        assert client.is_server_ready()
        tensor = triton.InferInput("features", [5, 16], "FP32")
        tensor.set_data_from_numpy(features)
        probabilities = client.infer("mlp", [tensor]).as_numpy("probabilities")
        with TauClient(server.address) as tau:
            logits = tau.infer("cnn", {"pixels": pixels})["logits"]
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    np.testing.assert_allclose(
        probabilities, _in_process(repository / "mlp/1/model.onnx", "features", features), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        logits, _in_process(repository / "cnn/1/model.onnx", "pixels", pixels), rtol=1e-5, atol=1e-6
    )


def test_exported_pytorch_model_serves_the_same_function_as_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
    ).eval()
    export_model(
        module,
        repository=tmp_path / "repo",
        name="tabular",
        input_shape=(8,),
        input_names=("x",),
        output_names=("y",),
    )
    data = np.random.default_rng(2).standard_normal((17, 8)).astype(np.float32)
    with running_server(tmp_path / "repo", tmp_path / "server.log") as server:
        client = triton.InferenceServerClient(server.address)
        tensor = triton.InferInput("x", [17, 8], "FP32")
        tensor.set_data_from_numpy(data)
        served = client.infer("tabular", [tensor]).as_numpy("y")
    with torch.no_grad():
        expected = module(torch.from_numpy(data)).numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
