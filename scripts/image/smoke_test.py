"""Runs a built Tau image with podman the way Kubernetes would, and checks it serves and stops cleanly.

Started by scripts/build_image.sh with the project venv's Python (grpcio, tritonclient). The container runs
with host networking on two free ports, a read-only root filesystem, a tmpfs /tmp, every capability dropped
and no privilege escalation: the Deployment's securityContext. Checks, in order: gRPC health SERVING for
both service names the probes use, one inference on the bundled mlp, a /metrics scrape that shows it, the
non-root user, and exit code 0 after SIGTERM. Prints the image size and the time from `podman run` to
SERVING. Exits non-zero, with what failed, on the first failed check.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

HEALTH_SERVICES = ("", "inference.GRPCInferenceService")
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
EXPECTED_USER = "10001:10001"


@dataclass
class Figures:
    image_bytes: int
    seconds_to_ready: float
    seconds_to_exit: float
    exit_code: int


class SmokeTestFailure(Exception):
    """A check on the running container failed; the message says which and what was seen."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def podman(podman_path: str, *args: str, check: bool = True) -> str:
    result = subprocess.run([podman_path, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SmokeTestFailure(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


def wait_until_serving(address: str, deadline: float, is_running: Callable[[], bool]) -> None:
    """Polls the health service until every probed service name answers SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                statuses = [stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1).status for name in HEALTH_SERVICES]
                if all(status == health_pb2.HealthCheckResponse.SERVING for status in statuses):
                    return
            except grpc.RpcError:
                pass
            if not is_running():
                raise SmokeTestFailure("the container exited before it became ready")
            time.sleep(0.05)
    raise SmokeTestFailure(f"health did not report SERVING for {HEALTH_SERVICES} within {READY_TIMEOUT_S:.0f} s")


def infer_mlp(address: str) -> None:
    client = triton.InferenceServerClient(address)
    features = np.random.default_rng(0).random((4, 16), dtype=np.float32)
    tensor = triton.InferInput("features", list(features.shape), "FP32")
    tensor.set_data_from_numpy(features)
    probabilities = client.infer("mlp", [tensor]).as_numpy("probabilities")
    client.close()
    if probabilities is None or probabilities.shape != (4, 3) or not np.all(np.isfinite(probabilities)):
        raise SmokeTestFailure(f"mlp: expected finite probabilities of shape (4, 3), got {probabilities!r}")


def scrape_metrics(metrics_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    served = [line for line in text.splitlines() if line.startswith("tau_requests_total{") and 'model="mlp"' in line]
    if not served:
        raise SmokeTestFailure("/metrics has no tau_requests_total sample for model mlp after one inference")
    return text


def run_smoke_test(podman_path: str, image: str, name: str) -> Figures:
    grpc_port, metrics_port = free_port(), free_port()
    address = f"127.0.0.1:{grpc_port}"
    podman(podman_path, "rm", "--force", "--ignore", name)
    started = time.monotonic()
    podman(
        podman_path,
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",
        "--read-only",
        "--tmpfs=/tmp",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--env=TAU_GRPC_PORT={grpc_port}",
        f"--env=TAU_METRICS_PORT={metrics_port}",
        image,
    )
    try:

        def is_running() -> bool:
            return podman(podman_path, "inspect", "--format={{.State.Running}}", name) == "true"

        wait_until_serving(address, started + READY_TIMEOUT_S, is_running)
        seconds_to_ready = time.monotonic() - started
        print(f"SERVING after {seconds_to_ready:.2f} s (health services {HEALTH_SERVICES})")
        infer_mlp(address)
        print("inference on mlp: probabilities of shape (4, 3)")
        metrics = scrape_metrics(metrics_port)
        print(f"/metrics: {sum(1 for line in metrics.splitlines() if line.startswith('tau_'))} tau_* samples")
        user = podman(podman_path, "inspect", "--format={{.Config.User}}", name)
        if user != EXPECTED_USER:
            raise SmokeTestFailure(f"expected the container to run as {EXPECTED_USER}, it runs as {user!r}")
        pid1 = podman(podman_path, "exec", name, "cat", "/proc/1/cmdline").replace("\0", " ").strip()
        print(f"user {user}, PID 1: {pid1}")
        if "tau-serve" not in pid1:
            raise SmokeTestFailure(f"expected tau-serve as PID 1, found {pid1!r}")
        stopping = time.monotonic()
        podman(podman_path, "kill", "--signal=TERM", name)
        exit_code = int(podman(podman_path, "wait", name))
        seconds_to_exit = time.monotonic() - stopping
        print(f"SIGTERM: exit code {exit_code} after {seconds_to_exit:.2f} s")
        if exit_code != 0:
            raise SmokeTestFailure(f"expected exit code 0 after SIGTERM, got {exit_code}")
    except BaseException:
        print(podman(podman_path, "logs", "--tail=40", name, check=False), file=sys.stderr)
        raise
    finally:
        podman(podman_path, "rm", "--force", "--ignore", name, check=False)
    image_bytes = int(json.loads(podman(podman_path, "image", "inspect", image))[0]["Size"])
    return Figures(image_bytes, seconds_to_ready, seconds_to_exit, exit_code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--podman", default="podman")
    parser.add_argument("--name", default="tau-smoke-test")
    args = parser.parse_args()
    try:
        figures = run_smoke_test(args.podman, args.image, args.name)
    except SmokeTestFailure as failure:
        sys.exit(f"smoke test FAILED: {failure}")
    print(
        f"image {args.image}: {figures.image_bytes / 1e6:.0f} MB uncompressed; "
        f"start to SERVING {figures.seconds_to_ready:.2f} s; SIGTERM to exit 0 {figures.seconds_to_exit:.2f} s"
    )


if __name__ == "__main__":
    main()
