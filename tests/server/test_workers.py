"""Worker mode: several processes share the port, metrics add up across them, SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server.onnx_builders import add_sub_model, slow_model
from tests.server_process import REPO_ROOT, ServerProcess, free_port


def scrape_total(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = 'tau_requests_total{code="OK",model="add_sub",outcome="success",version="1"} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))


def test_two_workers_serve_one_port_with_coherent_metrics_and_stop_together(tmp_path: Path) -> None:
    add_sub_model(tmp_path / "repo" / "add_sub" / "1" / "model.onnx")
    metrics_port = free_port()
    args = ["--workers", "2", "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
    server = ServerProcess(tmp_path / "repo", tmp_path / "log", args)
    try:
        server.wait_until_live()
        for _ in range(40):  # a new connection each time, so the kernel spreads them over the workers
            client = triton.InferenceServerClient(server.address)
            inputs = [triton.InferInput("INPUT0", [1, 16], "FP32"), triton.InferInput("INPUT1", [1, 16], "FP32")]
            for tensor in inputs:
                tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
            assert client.infer("add_sub", inputs).as_numpy("OUTPUT0")[0, 0] == 2.0
            client.close()
        deadline = time.monotonic() + 10  # workers fold their observations in once a second
        while scrape_total(metrics_port) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scrape_total(metrics_port) == 40
        log = server.log()
        assert "worker 0 (pid" in log and "worker 1 (pid" in log
    finally:
        exit_code = server.stop()
    assert exit_code == 0, server.log()
    assert "workers stopped with exit codes [0, 0]" in server.log()


def test_explicit_control_mode_refuses_several_workers(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "server", "--model-repository", str(tmp_path), "--workers", "2"]
    command += ["--model-control-mode", "explicit"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "explicit model control needs a single worker" in result.stderr


def _worker_pids(supervisor_pid: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = []
    for task in Path(f"/proc/{supervisor_pid}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _health_and_ready(address: str) -> tuple[str, bool | None]:
    """One health check and one ServerReady over a fresh connection (the kernel picks the worker)."""
    # A channel of its own subchannel: a failed connection to the killed worker must not put later
    # checks into gRPC's shared reconnect backoff, which would hide the window this test watches.
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
            ready = pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=1).ready
        except grpc.RpcError as error:
            return error.code().name, None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status), ready


def test_health_covers_every_worker_and_follows_a_restart(tmp_path: Path) -> None:
    # Warming a slow model up makes each worker's start take seconds, so the window in which one
    # worker is down and its replacement still loading is wide enough to observe.
    slow_model(tmp_path / "repo" / "slow" / "1" / "model.onnx")
    config = {"max_batch_size": 64, "warmup": {"batch_sizes": [64] * 12}}
    (tmp_path / "repo" / "slow" / "config.json").write_text(json.dumps(config))
    server = ServerProcess(tmp_path / "repo", tmp_path / "log", ["--workers", "2"])
    try:
        server.wait_until_live()
        deadline = time.monotonic() + 90
        while _health_and_ready(server.address) != ("SERVING", True) and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _worker_pids(server.process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        seen: list[tuple[str, bool | None]] = []
        while time.monotonic() < deadline:
            answer = _health_and_ready(server.address)
            if answer[0] != "DEADLINE_EXCEEDED" and (not seen or seen[-1] != answer):
                seen.append(answer)
            # Right after the kill the survivor may still say ready: the supervisor notices within 0.2 s.
            if ("NOT_SERVING", False) in seen and answer == ("SERVING", True):
                break
            time.sleep(0.05)
        # Answered by the surviving worker: not ready while the other restarts, ready once it has loaded.
        assert ("NOT_SERVING", False) in seen, seen
        assert seen[-1] == ("SERVING", True), seen
        assert len(_worker_pids(server.process.pid)) == 2
        assert re.search(r"not ready: worker\(s\) \[[01]\] not ready", server.log())
    finally:
        exit_code = server.stop()
    assert exit_code == 0, server.log()
