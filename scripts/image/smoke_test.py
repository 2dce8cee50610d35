"""Runs a built Tau image with podman the way Kubernetes would, and checks it serves and stops cleanly.

Started by scripts/build_image.sh with the project venv's Python (grpcio, tritonclient). The container runs
with host networking on two free ports, a read-only root filesystem, a tmpfs /tmp, every capability dropped
and no privilege escalation: the Deployment's securityContext. Checks, in order: gRPC health SERVING for
both service names the probes use, one inference on the bundled mlp, a /metrics scrape that shows it, the
non-root user and dumb-init as PID 1 over tau-serve, exit code 0 after SIGTERM; then, in a second container,
that a SIGTERM sent during start-up (before tau-serve installs its handlers) stops it at once. Prints the
image size and the time to SERVING. Exits non-zero, with what failed, on the first failed check.
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
EXPECTED_USER = "10001:10001"
# A SIGTERM this soon after `podman run` lands while Python is still importing.
EARLY_SIGTERM_AFTER_S = 0.3
EARLY_SIGTERM_EXIT_WITHIN_S = 10.0


@dataclass
class Figures:
    image_bytes: int
    seconds_to_ready: float  # from `podman run` to SERVING
    process_seconds_to_ready: float  # from the container's process start to SERVING
    seconds_to_exit: float
    early_sigterm_seconds_to_exit: float


class SmokeTestFailure(Exception):
    """A check on the running container failed; the message says which and what was seen."""


class Podman:
    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([self.path, *args], capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise SmokeTestFailure(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def run_locked_down(self, image: str, name: str, env: list[str]) -> None:
        """`podman run` with the Deployment's restrictions."""
        self("rm", "--force", "--ignore", name)
        self(
            "run",
            "--detach",
            f"--name={name}",
            "--network=host",
            "--read-only",
            "--tmpfs=/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            *(f"--env={assignment}" for assignment in env),
            image,
        )

    def is_running(self, name: str) -> bool:
        return self("inspect", "--format={{.State.Running}}", name) == "true"

    def stop_with_sigterm(self, name: str) -> tuple[int, float]:
        """(exit code, seconds from SIGTERM to exit)."""
        stopping = time.monotonic()
        self("kill", "--signal=TERM", name)
        exit_code = int(self("wait", name))
        return exit_code, time.monotonic() - stopping


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(address: str, deadline: float, is_running: Callable[[], bool]) -> None:
    """Polls the health service until every probed service name answers SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        next_liveness_check = 0.0
        while time.monotonic() < deadline:
            try:
                statuses = [
                    stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1).status
                    for name in HEALTH_SERVICES
                ]
                if all(status == health_pb2.HealthCheckResponse.SERVING for status in statuses):
                    return
            except grpc.RpcError:
                # Not listening yet (models load before the port opens), or the container is gone: ask podman
                # twice a second, not on every poll, so the measured time to ready stays fine-grained.
                if time.monotonic() >= next_liveness_check:
                    if not is_running():
                        raise SmokeTestFailure("the container exited before it became ready") from None
                    next_liveness_check = time.monotonic() + 0.5
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


def check_process_tree(podman: Podman, name: str) -> None:
    """Runs as the image's user, with dumb-init as PID 1 and tau-serve as its child."""
    user = podman("inspect", "--format={{.Config.User}}", name)
    if user != EXPECTED_USER:
        raise SmokeTestFailure(f"expected the container to run as {EXPECTED_USER}, it runs as {user!r}")
    # No ps in the image: read /proc. Each line: pid, parent pid, command line.
    listing = podman(
        "exec",
        name,
        "sh",
        "-c",
        'for p in /proc/[0-9]*; do echo "${p#/proc/} $(cut -d" " -f4 $p/stat) $(tr "\\0" " " < $p/cmdline)"; done',
    )
    processes = [line.split(" ", 2) for line in listing.splitlines() if len(line.split(" ", 2)) == 3]
    init = next((command for pid, _, command in processes if pid == "1"), "")
    children = [command for _, parent, command in processes if parent == "1"]
    print(f"user {user}; PID 1: {init.strip()}; its children: {[child.strip() for child in children]}")
    if "dumb-init" not in init or not any("tau-serve" in child for child in children):
        raise SmokeTestFailure(f"expected dumb-init as PID 1 with tau-serve as its child, found {processes}")


def serve_and_stop(podman: Podman, image: str, name: str, env: list[str]) -> tuple[float, float, float]:
    """(seconds from `podman run` to SERVING, from process start to SERVING, from SIGTERM to exit 0)."""
    grpc_port, metrics_port = free_port(), free_port()
    address = f"127.0.0.1:{grpc_port}"
    started = time.monotonic()
    podman.run_locked_down(image, name, [f"TAU_GRPC_PORT={grpc_port}", f"TAU_METRICS_PORT={metrics_port}", *env])
    try:
        wait_until_serving(address, started + READY_TIMEOUT_S, lambda: podman.is_running(name))
        seconds_to_ready = time.monotonic() - started
        process_started_ns = int(podman("inspect", "--format={{.State.StartedAt.UnixNano}}", name))
        process_seconds_to_ready = time.time() - process_started_ns / 1e9
        in_container = f"{process_seconds_to_ready:.2f} s of it in the container"
        print(f"SERVING for {HEALTH_SERVICES} after {seconds_to_ready:.2f} s ({in_container})")
        infer_mlp(address)
        print("inference on mlp: probabilities of shape (4, 3)")
        metrics = scrape_metrics(metrics_port)
        print(f"/metrics: {sum(1 for line in metrics.splitlines() if line.startswith('tau_'))} tau_* samples")
        check_process_tree(podman, name)
        exit_code, seconds_to_exit = podman.stop_with_sigterm(name)
        print(f"SIGTERM: exit code {exit_code} after {seconds_to_exit:.2f} s")
        if exit_code != 0:
            raise SmokeTestFailure(f"expected exit code 0 after SIGTERM, got {exit_code}")
    except BaseException:
        print(podman("logs", "--tail=40", name, check=False), file=sys.stderr)
        raise
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
    return seconds_to_ready, process_seconds_to_ready, seconds_to_exit


def stop_during_startup(podman: Podman, image: str, name: str, env: list[str]) -> float:
    """Seconds from a SIGTERM sent during start-up to the container's exit (a pod deleted while starting)."""
    podman.run_locked_down(image, name, [f"TAU_GRPC_PORT={free_port()}", f"TAU_METRICS_PORT={free_port()}", *env])
    try:
        time.sleep(EARLY_SIGTERM_AFTER_S)
        podman("kill", "--signal=TERM", name)
        deadline = time.monotonic() + EARLY_SIGTERM_EXIT_WITHIN_S
        sent = time.monotonic()
        while podman.is_running(name):
            if time.monotonic() > deadline:
                raise SmokeTestFailure(
                    f"a SIGTERM {EARLY_SIGTERM_AFTER_S} s after start did not stop the container within "
                    f"{EARLY_SIGTERM_EXIT_WITHIN_S:.0f} s: it was ignored (is tau-serve PID 1 without an init?)"
                )
            time.sleep(0.05)
        seconds = time.monotonic() - sent
        print(f"SIGTERM {EARLY_SIGTERM_AFTER_S} s after start: stopped after {seconds:.2f} s")
        return seconds
    finally:
        podman("rm", "--force", "--time=0", "--ignore", name, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--podman", default="podman")
    parser.add_argument("--name", default="tau-smoke-test")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the container, e.g. TAU_WORKERS=1")
    args = parser.parse_args()
    podman = Podman(args.podman)
    try:
        seconds_to_ready, process_seconds_to_ready, seconds_to_exit = serve_and_stop(
            podman, args.image, args.name, args.env
        )
        early_seconds = stop_during_startup(podman, args.image, args.name, args.env)
    except SmokeTestFailure as failure:
        sys.exit(f"smoke test FAILED: {failure}")
    figures = Figures(
        image_bytes=int(json.loads(podman("image", "inspect", args.image))[0]["Size"]),
        seconds_to_ready=seconds_to_ready,
        process_seconds_to_ready=process_seconds_to_ready,
        seconds_to_exit=seconds_to_exit,
        early_sigterm_seconds_to_exit=early_seconds,
    )
    print(
        f"image {args.image}: {figures.image_bytes / 1e6:.0f} MB uncompressed; podman run to SERVING "
        f"{figures.seconds_to_ready:.2f} s (process start to SERVING {figures.process_seconds_to_ready:.2f} s); "
        f"SIGTERM to exit 0 {figures.seconds_to_exit:.2f} s; SIGTERM during start-up to exit "
        f"{figures.early_sigterm_seconds_to_exit:.2f} s"
    )


if __name__ == "__main__":
    main()
