"""Bounded soak: moderate steady load with periodic hot reloads; expects zero errors and flat memory.

    python scripts/soak.py [--minutes 15] [--concurrency 4] [--reload-every-seconds 20] [--json out.json]

Serves a copy of the bundled CNN in explicit control mode; while clients keep
a closed-loop load, a new version is published (written under a hidden name,
then renamed) and loaded every `--reload-every-seconds`. Prints requests,
errors by status code, reloads, and server memory over time (first, last, max,
and the slope of a least-squares line through the samples of the second half).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.protocol import grpc_service_pb2 as pb
from tests.server_process import REPO_ROOT, resident_mib, running_server

METHOD = "/inference.GRPCInferenceService/ModelInfer"
LOAD = "/inference.GRPCInferenceService/RepositoryModelLoad"


async def soak(args: argparse.Namespace, address: str, pid: int, model_dir: Path) -> dict[str, object]:
    request = pb.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="pixels", datatype="FP32", shape=[2, 3, 32, 32])
    request.raw_input_contents.append(np.random.default_rng(0).standard_normal((2, 3, 32, 32), np.float32).tobytes())
    payload = request.SerializeToString()
    outcomes: Counter[str] = Counter()
    memory: list[tuple[float, float]] = []
    reloads = 0
    stop = time.monotonic() + args.minutes * 60
    async with grpc.aio.insecure_channel(address) as channel:
        infer = channel.unary_unary(METHOD)
        load = channel.unary_unary(LOAD, request_serializer=pb.RepositoryModelLoadRequest.SerializeToString)

        async def client() -> None:
            while time.monotonic() < stop:
                try:
                    await infer(payload, timeout=10)
                    outcomes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    outcomes[error.code().name] += 1

        async def reloader() -> None:
            nonlocal reloads
            version = 1
            while time.monotonic() < stop:
                await asyncio.sleep(args.reload_every_seconds)
                version += 1
                staging = model_dir / f".tmp-{version}"
                staging.mkdir()
                shutil.copy(model_dir / "1" / "model.onnx", staging / "model.onnx")
                os.replace(staging, model_dir / str(version))
                await load(pb.RepositoryModelLoadRequest(model_name="cnn"), timeout=60)
                reloads += 1

        async def sampler() -> None:
            started = time.monotonic()
            while time.monotonic() < stop:
                memory.append((time.monotonic() - started, resident_mib(pid)))
                await asyncio.sleep(5)

        await asyncio.gather(*(client() for _ in range(args.concurrency)), reloader(), sampler())
    second_half = memory[len(memory) // 2 :]
    slope = 0.0
    if len(second_half) >= 2:
        times, values = np.array(second_half).T
        slope = float(np.polyfit(times, values, 1)[0] * 60)
    return {
        "minutes": args.minutes,
        "requests": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "errors": sum(count for code, count in outcomes.items() if code != "OK"),
        "reloads": reloads,
        "rss_first_mib": memory[0][1] if memory else None,
        "rss_last_mib": memory[-1][1] if memory else None,
        "rss_max_mib": max(value for _, value in memory) if memory else None,
        "rss_slope_second_half_mib_per_minute": slope,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--reload-every-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        repo = Path(workdir) / "repo"
        shutil.copytree(REPO_ROOT / "models" / "cnn", repo / "cnn")
        server_args = ["--model-control-mode", "explicit", "--load-model", "*", "--metrics-port", "0"]
        with running_server(repo, Path(workdir) / "server.log", server_args) as server:
            result = asyncio.run(soak(args, server.address, server.process.pid, repo / "cnn"))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
