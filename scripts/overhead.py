"""Per-request server overhead: server p50 latency at concurrency 1 minus in-process ONNX Runtime p50.

    python scripts/overhead.py [--model mlp] [--requests 3000] [--workers 1]

Serves the bundled models, sends pre-serialized single-row requests one at a time over one
channel, and times in-process ONNX Runtime (same thread settings as the server) on the same input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.cpus import default_intra_op_threads
from server.protocol import grpc_service_pb2 as pb
from tests.server_process import REPO_ROOT, running_server

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    model_file = REPO_ROOT / "models" / args.model / "1" / "model.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_intra_op_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    node = session.get_inputs()[0]
    shape = [1, *(dim for dim in node.shape[1:])]
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    request = pb.ModelInferRequest(model_name=args.model)
    request.inputs.add(name=node.name, datatype="FP32", shape=shape)
    request.raw_input_contents.append(data.tobytes())
    payload = request.SerializeToString()

    local = []
    for _ in range(args.requests):
        started = time.perf_counter()
        session.run(None, {node.name: data})
        local.append(time.perf_counter() - started)

    remote = []
    server_args = ["--workers", str(args.workers), "--metrics-port", "0"]
    with running_server(REPO_ROOT / "models", Path("/tmp/tau-overhead.log"), server_args) as server:
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary(METHOD)
            for _ in range(200):
                call(payload, timeout=10)
            for _ in range(args.requests):
                started = time.perf_counter()
                call(payload, timeout=10)
                remote.append(time.perf_counter() - started)
    local_us = float(np.median(local) * 1e6)
    remote_us = float(np.median(remote) * 1e6)
    print(
        f"model {args.model}: server p50 {remote_us:.0f} us, in-process ONNX Runtime p50 {local_us:.0f} us, "
        f"overhead {remote_us - local_us:.0f} us per request (client and server share the CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
