"""Start the real `tau-serve` in a child process on a free loopback port, and stop it with a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]


def resident_mib(pid: int) -> float:
    """A process's resident memory (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A running server: its gRPC address, its log file, its process."""

    def __init__(
        self,
        repository: Path,
        log_path: Path,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        tls_root_certificates: str | None = None,
        tls_client_cert: tuple[str, str] | None = None,
        auth_token: str | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.port = free_port()
        self._tls_root_certificates = tls_root_certificates
        self._tls_client_cert = tls_client_cert
        self._auth_token = auth_token
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        args = [
            sys.executable,
            "-m",
            "server",
            "--model-repository",
            str(repository),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(self.port),
            "--metrics-port",
            "0",
            "--workers",
            "1",
            *(extra_args or []),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def channel(self) -> grpc.Channel:
        """A channel to this server, over TLS when it serves TLS."""
        if self._tls_root_certificates is None:
            return grpc.insecure_channel(self.address)
        key = chain = None
        if self._tls_client_cert is not None:
            chain = Path(self._tls_client_cert[0]).read_bytes()
            key = Path(self._tls_client_cert[1]).read_bytes()
        credentials = grpc.ssl_channel_credentials(Path(self._tls_root_certificates).read_bytes(), key, chain)
        return grpc.secure_channel(self.address, credentials)

    def wait_until_live(self, timeout_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        metadata = [("authorization", f"Bearer {self._auth_token}")] if self._auth_token else None
        with self.channel() as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if stub.ServerLive(pb.ServerLiveRequest(), timeout=1.0, metadata=metadata).live:
                        return
                except grpc.RpcError:
                    time.sleep(0.1)
        raise TimeoutError(f"server not live after {timeout_seconds}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_seconds: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@contextmanager
def running_server(
    repository: Path,
    log_path: Path,
    extra_args: list[str] | None = None,
    **options: Any,
) -> Iterator[ServerProcess]:
    """A live server for the `with` block, stopped with SIGTERM after; options as ServerProcess takes them."""
    server = ServerProcess(repository, log_path, extra_args, **options)
    try:
        server.wait_until_live()
        yield server
    finally:
        server.stop()
