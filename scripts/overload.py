"""Bounded overload run: what the server does at several times its capacity, and whether it recovers.

    python scripts/overload.py [--multiple 5] [--burst-seconds 10] [--json out.json]

Starts a real server on loopback with a model of known cost (a MatMul chain,
batching off, max_queue_size 32), measures its capacity closed-loop, then
sends an open-loop burst at `--multiple` times that rate, each request with a
deadline, then measures latency again. Prints requests tried, admitted and
answered in time, refused (UNAVAILABLE), expired, failed, lost; refusal
latency; server memory before, at peak and after; latency before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.protocol import grpc_service_pb2 as pb
from tests.server.onnx_builders import slow_model
from tests.server_process import resident_mib, running_server

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def request_bytes(rows: int) -> bytes:
    request = pb.ModelInferRequest(model_name="matmul")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[rows, 1024])
    request.raw_input_contents.append(np.ones((rows, 1024), np.float32).tobytes())
    return request.SerializeToString()


async def closed_loop(address: str, payload: bytes, seconds: float, concurrency: int) -> list[float]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                await call(payload, timeout=30)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def open_loop(address: str, payload: bytes, rate: float, seconds: float, deadline: float) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    refusal_latencies: list[float] = []
    success_latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)

        async def one() -> None:
            started = time.perf_counter()
            try:
                await call(payload, timeout=deadline)
                outcomes["OK"] += 1
                success_latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                outcomes[error.code().name] += 1
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    refusal_latencies.append(time.perf_counter() - started)

        tasks = []
        begin = time.perf_counter()
        sent = 0
        while (now := time.perf_counter()) - begin < seconds:
            due = int((now - begin) * rate)
            for _ in range(due - sent):
                tasks.append(asyncio.ensure_future(one()))
            sent = max(sent, due)
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    tried = len(tasks)
    answered = sum(outcomes.values())
    return {
        "tried": tried,
        "outcomes": dict(outcomes),
        "lost": tried - answered,
        "admitted_within_deadline": sum(1 for latency in success_latencies if latency <= deadline),
        "refusal_p50_ms": float(np.percentile(refusal_latencies, 50) * 1e3) if refusal_latencies else None,
        "refusal_p99_ms": float(np.percentile(refusal_latencies, 99) * 1e3) if refusal_latencies else None,
        "success_p99_ms": float(np.percentile(success_latencies, 99) * 1e3) if success_latencies else None,
    }


async def sample_memory(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(resident_mib(pid))
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, address: str, pid: int) -> dict[str, object]:
    payload = request_bytes(args.rows)
    await closed_loop(address, payload, 1.0, 4)  # warm
    before = await closed_loop(address, payload, args.measure_seconds, 4)
    capacity = len(before) / args.measure_seconds
    memory: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(sample_memory(pid, memory, stop))
    rss_before = resident_mib(pid)
    burst = await open_loop(address, payload, capacity * args.multiple, args.burst_seconds, args.deadline_seconds)
    stop.set()
    await sampler
    after = await closed_loop(address, payload, args.measure_seconds, 4)
    return {
        "capacity_rps": capacity,
        "burst_rate_rps": capacity * args.multiple,
        "deadline_seconds": args.deadline_seconds,
        "burst": burst,
        "p50_before_ms": float(np.percentile(before, 50) * 1e3),
        "p50_after_ms": float(np.percentile(after, 50) * 1e3),
        "rss_before_mib": rss_before,
        "rss_peak_mib": max(memory) if memory else rss_before,
        "rss_after_mib": resident_mib(pid),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multiple", type=float, default=5.0, help="burst rate as a multiple of capacity")
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--measure-seconds", type=float, default=3.0)
    parser.add_argument("--deadline-seconds", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        repo = Path(workdir) / "repo"
        slow_model(repo / "matmul" / "1" / "model.onnx", depth=32)
        (repo / "matmul" / "config.json").write_text(
            json.dumps({"dynamic_batching": {"enabled": False, "max_queue_size": 32}})
        )
        with running_server(repo, Path(workdir) / "server.log", ["--metrics-port", "0"]) as server:
            result = asyncio.run(run(args, server.address, server.process.pid))
    burst = result["burst"]
    assert isinstance(burst, dict)
    print(
        f"capacity {result['capacity_rps']:.0f} req/s; burst at {result['burst_rate_rps']:.0f} req/s "
        f"for {args.burst_seconds:.0f} s, deadline {args.deadline_seconds:.1f} s"
    )
    print(f"tried {burst['tried']}, outcomes {burst['outcomes']}, lost {burst['lost']}")
    print(
        f"refusals p50 {burst['refusal_p50_ms']} ms, p99 {burst['refusal_p99_ms']} ms; "
        f"admitted p99 {burst['success_p99_ms']} ms"
    )
    print(f"p50 latency before {result['p50_before_ms']:.2f} ms, after {result['p50_after_ms']:.2f} ms")
    print(
        f"server RSS before {result['rss_before_mib']:.0f} MiB, peak {result['rss_peak_mib']:.0f} MiB, "
        f"after {result['rss_after_mib']:.0f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if burst["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
