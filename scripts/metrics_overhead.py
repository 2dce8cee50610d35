"""Throughput with Prometheus recording on and off: `python scripts/metrics_overhead.py [--rounds 3]`.

Starts the server on the bundled models with metrics on (--metrics-port) and off (--metrics-port 0,
which also stops recording), alternating, and drives each with `tau-bench --url` (MLP, 1 row,
concurrency 32). Prints req/s per run and the median difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server_process import REPO_ROOT, free_port, running_server


def one_run(metrics_on: bool, workdir: Path, duration: str, workers: str) -> float:
    metrics_port = str(free_port()) if metrics_on else "0"
    args = ["--workers", workers, "--metrics-port", metrics_port, "--metrics-host", "127.0.0.1"]
    out = workdir / f"bench-{metrics_on}.json"
    with running_server(REPO_ROOT / "models", workdir / "server.log", args) as server:
        command = [sys.executable, "-m", "clients.bench", "--model-file", "models/mlp/1/model.onnx"]
        command += ["--url", server.address, "--model", "mlp", "--concurrency", "32", "--duration", duration]
        command += ["--json", str(out)]
        subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    result = json.loads(out.read_text())
    return float(result["runs"][0]["requests_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="8")
    parser.add_argument("--workers", default="1")
    args = parser.parse_args(argv)
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as workdir:
        for round_number in range(args.rounds):
            # Alternate which goes first, so that order effects do not pass for the cost of metrics.
            for metrics_on in (True, False) if round_number % 2 == 0 else (False, True):
                result = one_run(metrics_on, Path(workdir), args.duration, args.workers)
                (on if metrics_on else off).append(result)
    print(f"metrics on : {[round(x) for x in on]} req/s, median {np.median(on):.0f}")
    print(f"metrics off: {[round(x) for x in off]} req/s, median {np.median(off):.0f}")
    print(f"cost of recording metrics: {100 * (1 - np.median(on) / np.median(off)):.1f}% of throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
