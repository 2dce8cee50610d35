"""Per-request server overhead: server p50 latency at concurrency 1 minus in-process ONNX Runtime p50.

    python scripts/overhead.py [--model mlp] [--requests 3000] [--rounds 3] [--against /path/to/other/checkout]

Serves the bundled models with one worker, sends pre-serialized single-row requests one at a time
over one channel, and times in-process ONNX Runtime (same thread settings as the server) on the
same input. It also reads the server's CPU time (/proc) over the timed requests: CPU per request
is what bounds throughput once there is load.

With --against, the same measurement alternates, round by round, between this checkout's server
and the other checkout's (e.g. `git worktree add /tmp/tau-before <commit>`), so a before/after
comparison shares the machine's state; the medians over rounds are printed for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.cpus import default_intra_op_threads
from server.protocol import grpc_service_pb2 as pb
from tests.server_process import REPO_ROOT, ServerProcess

METHOD = "/inference.GRPCInferenceService/ModelInfer"
WARMUP_REQUESTS = 200


@dataclass(frozen=True)
class Round:
    p50_us: float
    server_cpu_us_per_request: float


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request(model: str, input_name: str, data: np.ndarray) -> bytes:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype="FP32", shape=list(data.shape))
    request.raw_input_contents.append(data.tobytes())
    return request.SerializeToString()


def in_process_p50_us(model_file: Path, data: np.ndarray, requests: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_intra_op_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        session.run(None, {name: data})
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds) * 1e6)


def measure_server(tree: Path, payload: bytes, requests: int) -> Round:
    """One server started from `tree` (its own code, its bundled models), timed over `requests` calls."""
    # The server runs `tree`'s own code: its folder is both the working directory and PYTHONPATH.
    server = ServerProcess(
        tree / "models", Path(f"/tmp/tau-overhead-{os.getpid()}.log"), env={"PYTHONPATH": str(tree)}, cwd=tree
    )
    try:
        server.wait_until_live()
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary(METHOD)
            for _ in range(WARMUP_REQUESTS):
                call(payload, timeout=10)
            seconds = []
            cpu_before = _cpu_seconds(server.process.pid)
            for _ in range(requests):
                started = time.perf_counter()
                call(payload, timeout=10)
                seconds.append(time.perf_counter() - started)
            cpu = _cpu_seconds(server.process.pid) - cpu_before
    finally:
        server.stop()
    return Round(float(np.median(seconds) * 1e6), cpu / requests * 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another Tau checkout to compare with, round by round")
    args = parser.parse_args(argv)
    model_file = REPO_ROOT / "models" / args.model / "1" / "model.onnx"
    input_node = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).get_inputs()[0]
    shape = [1, *input_node.shape[1:]]
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    payload = _request(args.model, input_node.name, data)
    local_us = in_process_p50_us(model_file, data, args.requests)
    trees = {"this checkout": REPO_ROOT}
    if args.against:
        trees[f"{args.against}"] = args.against.resolve()
    rounds: dict[str, list[Round]] = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, tree in trees.items():
            rounds[label].append(measure_server(tree, payload, args.requests))
    print(f"model {args.model}, 1 row, concurrency 1, {args.requests} requests x {args.rounds} rounds (medians)")
    print(f"in-process ONNX Runtime p50: {local_us:.0f} us")
    for label, measured in rounds.items():
        p50 = statistics.median(r.p50_us for r in measured)
        cpu = statistics.median(r.server_cpu_us_per_request for r in measured)
        print(
            f"{label}: server p50 {p50:.0f} us, overhead {p50 - local_us:.0f} us per request, "
            f"server CPU {cpu:.0f} us per request (rounds: {', '.join(f'{r.p50_us:.0f}' for r in measured)} us)"
        )
    print("(client and server share the machine's CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
