"""Worker mode: several processes share the port, metrics add up across them, SIGTERM stops them all."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests.server.onnx_builders import add_sub_model
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
