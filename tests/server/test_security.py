"""TLS, mutual TLS, bearer tokens, structured logs and load-API safety, against real server processes."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from server.protocol import grpc_service_pb2 as pb
from tests.server.onnx_builders import add_sub_model
from tests.server_process import running_server

TOKEN = "s3cret-token-value"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    add_sub_model(tmp_path / "repo" / "add_sub" / "1" / "model.onnx")
    return tmp_path / "repo"


def add_sub_inputs() -> list[triton.InferInput]:
    inputs = [triton.InferInput("INPUT0", [1, 16], "FP32"), triton.InferInput("INPUT1", [1, 16], "FP32")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.full((1, 16), 3.0, np.float32))
    return inputs


def write_pem(path: Path, blob: trustme.Blob) -> str:
    blob.write_to_path(str(path))
    return str(path)


def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(repo: Path, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    args = [
        "--tls-cert-file",
        write_pem(tmp_path / "server.pem", server_cert.cert_chain_pems[0]),
        "--tls-key-file",
        write_pem(tmp_path / "server.key", server_cert.private_key_pem),
    ]
    ca_path = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    with running_server(repo, tmp_path / "log", args, tls_root_certificates=ca_path) as server:
        client = triton.InferenceServerClient(server.address, ssl=True, root_certificates=ca_path)
        assert client.infer("add_sub", add_sub_inputs()).as_numpy("OUTPUT0")[0, 0] == 6.0
        plaintext = triton.InferenceServerClient(server.address)
        with pytest.raises(InferenceServerException) as refused:
            plaintext.infer("add_sub", add_sub_inputs(), client_timeout=5)
        assert refused.value.status() == "StatusCode.UNAVAILABLE"


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(repo: Path, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_ca = trustme.CA()
    client_cert = client_ca.issue_cert("client@example.com")
    args = [
        "--tls-cert-file",
        write_pem(tmp_path / "server.pem", server_cert.cert_chain_pems[0]),
        "--tls-key-file",
        write_pem(tmp_path / "server.key", server_cert.private_key_pem),
        "--tls-client-ca-file",
        write_pem(tmp_path / "client-ca.pem", client_ca.cert_pem),
    ]
    ca_path = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    client_pem = write_pem(tmp_path / "client.pem", client_cert.cert_chain_pems[0])
    client_key = write_pem(tmp_path / "client.key", client_cert.private_key_pem)
    with running_server(
        repo, tmp_path / "log", args, tls_root_certificates=ca_path, tls_client_cert=(client_pem, client_key)
    ) as server:
        with_cert = triton.InferenceServerClient(
            server.address, ssl=True, root_certificates=ca_path, private_key=client_key, certificate_chain=client_pem
        )
        assert with_cert.infer("add_sub", add_sub_inputs()).as_numpy("OUTPUT1")[0, 0] == 0.0
        without_cert = triton.InferenceServerClient(server.address, ssl=True, root_certificates=ca_path)
        with pytest.raises(InferenceServerException) as refused:
            without_cert.infer("add_sub", add_sub_inputs(), client_timeout=5)
        assert refused.value.status() == "StatusCode.UNAVAILABLE"


def test_certificates_are_reloaded_when_the_files_change(repo: Path, tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    old_cert = old_ca.issue_cert("localhost", "127.0.0.1")
    args = ["--tls-cert-file", write_pem(cert_path, old_cert.cert_chain_pems[0])]
    args += ["--tls-key-file", write_pem(key_path, old_cert.private_key_pem)]
    old_ca_path = write_pem(tmp_path / "old-ca.pem", old_ca.cert_pem)
    new_ca_path = write_pem(tmp_path / "new-ca.pem", new_ca.cert_pem)
    with running_server(repo, tmp_path / "log", args, tls_root_certificates=old_ca_path) as server:
        new_cert = new_ca.issue_cert("localhost", "127.0.0.1")
        write_pem(key_path, new_cert.private_key_pem)
        write_pem(cert_path, new_cert.cert_chain_pems[0])
        client = triton.InferenceServerClient(server.address, ssl=True, root_certificates=new_ca_path)
        assert client.infer("add_sub", add_sub_inputs()).as_numpy("OUTPUT0")[0, 0] == 6.0
        assert "TLS certificates reloaded" in server.log()


def test_bearer_token_is_required_and_health_stays_open_for_probes(repo: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# tokens\nother-token\n{TOKEN}\n")
    with running_server(repo, tmp_path / "log", ["--auth-token-file", str(token_file)], auth_token=TOKEN) as server:
        client = triton.InferenceServerClient(server.address)
        good = {"authorization": f"Bearer {TOKEN}"}
        assert client.infer("add_sub", add_sub_inputs(), headers=good).as_numpy("OUTPUT0")[0, 0] == 6.0
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            with pytest.raises(InferenceServerException) as refused:
                client.infer("add_sub", add_sub_inputs(), headers=headers)
            assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        with grpc.insecure_channel(server.address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert TOKEN not in server.log()


def test_health_can_be_closed_to_callers_without_a_token(repo: Path, tmp_path: Path) -> None:
    args = ["--auth-open-health", "false"]
    with running_server(repo, tmp_path / "log", args, env={"TAU_AUTH_TOKENS": TOKEN}, auth_token=TOKEN) as server:
        with grpc.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_json_logs_carry_the_request_id_and_no_tensor_contents(repo: Path, tmp_path: Path) -> None:
    args = ["--log-format", "json", "--log-level", "DEBUG"]
    with running_server(repo, tmp_path / "log", args) as server:
        client = triton.InferenceServerClient(server.address)
        bad = triton.InferInput("INPUT0", [1, 16], "INT32")
        bad.set_data_from_numpy(np.full((1, 16), 987654321, np.int32))
        with pytest.raises(InferenceServerException):
            client.infer("add_sub", [bad, add_sub_inputs()[1]], request_id="req-7")
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("request_id") == "req-7"]
    assert refusals and refusals[0]["code"] == "INVALID_ARGUMENT" and refusals[0]["model"] == "add_sub"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert "987654321" not in server.log()


def test_a_stream_needs_the_token_too(repo: Path, tmp_path: Path) -> None:
    request = pb.ModelInferRequest(model_name="add_sub", id="s")
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        request.raw_input_contents.append(np.ones((1, 16), np.float32).tobytes())
    method = "/inference.GRPCInferenceService/ModelStreamInfer"
    with running_server(repo, tmp_path / "log", env={"TAU_AUTH_TOKENS": TOKEN}, auth_token=TOKEN) as server:
        with grpc.insecure_channel(server.address) as channel:
            call = channel.stream_stream(method, response_deserializer=pb.ModelStreamInferResponse.FromString)
            with pytest.raises(grpc.RpcError) as refused:
                list(call(iter([request.SerializeToString()]), timeout=10))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            metadata = [("authorization", f"Bearer {TOKEN}")]
            (answer,) = list(call(iter([request.SerializeToString()]), timeout=10, metadata=metadata))
    assert answer.error_message == "" and answer.infer_response.id == "s"
