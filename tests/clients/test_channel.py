"""Channel options: TLS credentials (and a real mutual-TLS round trip), headers on every call, gzip."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from clients import InferenceError, TauClient
from clients.channel import call_metadata, channel_credentials, settings_from
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server_process import ServerProcess, free_port


class RecordingServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Answers ServerLive and echoes ModelInfer's first input, keeping every call's metadata."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        return pb.ServerLiveResponse(live=True)

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        response = pb.ModelInferResponse(model_name=request.model_name)
        tensor = request.inputs[0]
        response.outputs.add(name="OUTPUT0", datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(request.raw_input_contents[0])
        return response


def _serve(servicer: RecordingServicer, credentials: grpc.ServerCredentials | None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = free_port()
    if credentials is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        server.add_secure_port(f"localhost:{port}", credentials)
    server.start()
    return server, port


def test_tls_credentials_are_built_from_the_pem_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ca.pem", "client.key", "client.pem"):
        (tmp_path / name).write_bytes(name.encode())
    seen: dict[str, Any] = {}
    monkeypatch.setattr(grpc, "ssl_channel_credentials", lambda **kwargs: seen.update(kwargs) or "credentials")
    settings = settings_from(
        "host:443", ssl=True, root_certificates=tmp_path / "ca.pem", private_key=tmp_path / "client.key",
        certificate_chain=str(tmp_path / "client.pem"),
    )  # fmt: skip
    assert channel_credentials(settings) == "credentials"
    assert seen == {"root_certificates": b"ca.pem", "private_key": b"client.key", "certificate_chain": b"client.pem"}


def test_system_roots_are_used_when_no_ca_file_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(grpc, "ssl_channel_credentials", lambda **kwargs: seen.update(kwargs) or "credentials")
    channel_credentials(settings_from("host:443", ssl=True))
    assert seen == {"root_certificates": None, "private_key": None, "certificate_chain": None}


def test_tls_files_without_ssl_or_half_a_client_identity_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need ssl=True"):
        settings_from("host:443", root_certificates=tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="both private_key and certificate_chain"):
        settings_from("host:443", ssl=True, private_key=tmp_path / "client.key")


def test_call_headers_add_to_and_override_the_clients() -> None:
    settings = settings_from("h:1", headers={"Authorization": "Bearer a", "x-team": "ml"})
    assert call_metadata(settings, None) == (("authorization", "Bearer a"), ("x-team", "ml"))
    merged = dict(call_metadata(settings, {"Authorization": "Bearer b"}) or ())
    assert merged == {"authorization": "Bearer b", "x-team": "ml"}


def test_headers_reach_the_server_on_every_call() -> None:
    servicer = RecordingServicer()
    server, port = _serve(servicer, None)
    try:
        with TauClient(f"127.0.0.1:{port}", headers={"authorization": "Bearer token"}) as client:
            assert client.is_server_live()
            client.infer("echo", {"INPUT0": np.ones(2, np.float32)}, headers={"x-request-tag": "batch-7"})
    finally:
        server.stop(None)
    assert servicer.metadata[0]["authorization"] == "Bearer token"
    assert servicer.metadata[1]["authorization"] == "Bearer token"
    assert servicer.metadata[1]["x-request-tag"] == "batch-7"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway CA, a server certificate for localhost and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=tau-test-ca",
        cwd=folder,
    )
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        extensions = ["-extfile", "server.ext"] if name == "server" else []
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", *extensions, cwd=folder,
        )  # fmt: skip
    yield folder


def test_mutual_tls_round_trip(certificates: Path) -> None:
    credentials = grpc.ssl_server_credentials(
        [((certificates / "server.key").read_bytes(), (certificates / "server.pem").read_bytes())],
        root_certificates=(certificates / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server, port = _serve(RecordingServicer(), credentials)
    try:
        with TauClient(
            f"localhost:{port}", ssl=True, root_certificates=certificates / "ca.pem",
            private_key=certificates / "client.key", certificate_chain=certificates / "client.pem",
        ) as client:  # fmt: skip
            assert client.is_server_live()
            echoed = client.infer("echo", {"INPUT0": np.arange(3, dtype=np.float32)})["OUTPUT0"]
        np.testing.assert_array_equal(echoed, np.arange(3, dtype=np.float32))
        # Without a client certificate the server refuses the handshake.
        with TauClient(f"localhost:{port}", ssl=True, root_certificates=certificates / "ca.pem") as anonymous:
            with pytest.raises(InferenceError) as refused:
                anonymous.is_server_live(timeout_seconds=2.0)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_gzip_compressed_calls_round_trip(client_server: ServerProcess) -> None:
    rows = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    with TauClient(client_server.address, gzip=True) as client:
        np.testing.assert_array_equal(client.infer("identity", {"INPUT0": rows})["OUTPUT0"], rows)
