"""ONNX Runtime thread spinning under gRPC load: does a spinning intra-op pool steal the gRPC side's CPU?

    python scripts/spinning.py [--model cnn] [--rows 1] [--concurrency 32] [--duration 4] [--rounds 3]

Serves one example model under three names from one server (one worker), differing only in the
session settings: `threads1` (one intra-op thread: no pool, so spinning has nothing to act on),
`threads<N>_nospin` and `threads<N>_spin` (N = every CPU this process may use, spinning off / on).
Each round runs tau-bench against each name in turn (remote mode, so the server's CPU is measured)
and the medians over rounds are printed with the in-process ONNX Runtime time of each setting.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients import bench, bench_options
from clients.bench_report import BenchReport
from clients.bench_server import ServerUnderTest
from server.cpus import available_cpus

REPO_ROOT = Path(__file__).resolve().parents[1]


def settings_by_name(threads: int) -> dict[str, dict[str, object]]:
    return {
        "threads1": {"intra_op_threads": 1, "onnxruntime": {"allow_spinning": False}},
        f"threads{threads}_nospin": {"intra_op_threads": threads, "onnxruntime": {"allow_spinning": False}},
        f"threads{threads}_spin": {"intra_op_threads": threads, "onnxruntime": {"allow_spinning": True}},
    }


def build_repository(root: Path, model: str, threads: int) -> dict[str, dict[str, object]]:
    source = REPO_ROOT / "models" / model
    base = json.loads((source / "config.json").read_text())
    settings = settings_by_name(threads)
    for name, extra in settings.items():
        (root / name / "1").mkdir(parents=True)
        shutil.copyfile(source / "1" / "model.onnx", root / name / "1" / "model.onnx")
        config = {**base, "name": name, "dynamic_batching": {"max_queue_delay_microseconds": 0}, **extra}
        (root / name / "config.json").write_text(json.dumps(config))
    return settings


def in_process_p50_ms(model_file: Path, rows: int, threads: int, spinning: bool) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    node = session.get_inputs()[0]
    data = np.random.default_rng(0).standard_normal([rows, *node.shape[1:]]).astype(np.float32)
    for _ in range(20):
        session.run(None, {node.name: data})
    seconds = []
    started = time.perf_counter()
    while time.perf_counter() - started < 1.0:
        before = time.perf_counter()
        session.run(None, {node.name: data})
        seconds.append(time.perf_counter() - before)
    return float(np.median(seconds) * 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--concurrency", default="32")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    threads = max(2, available_cpus())
    model_file = REPO_ROOT / "models" / args.model / "1" / "model.onnx"
    reports: dict[str, list[BenchReport]] = {}
    with tempfile.TemporaryDirectory(prefix="tau-spinning-") as workdir:
        repository = Path(workdir) / "repository"
        settings = build_repository(repository, args.model, threads)
        reports = {name: [] for name in settings}
        with ServerUnderTest(repository, Path(workdir) / "server.log", workers=1) as server:
            server.wait_until_live()
            for _ in range(args.rounds):
                for name in settings:
                    options = bench_options.parse_arguments(
                        [
                            "--model-file",
                            str(model_file),
                            "--url",
                            server.address,
                            "--model",
                            name,
                            "--server-pid",
                            str(server.pid),
                            "--rows",
                            str(args.rows),
                            "--concurrency",
                            args.concurrency,
                            "--duration",
                            str(args.duration),
                            "--reference-seconds",
                            "0.1",
                        ]
                    )
                    reports[name].append(bench.run_benchmark(options))
    print(
        f"model {args.model}, {args.rows} row(s)/request, concurrency {args.concurrency}, one server worker, "
        f"{available_cpus()} CPUs, medians of {args.rounds} rounds"
    )
    print("| setting | concurrency | req/s | p50 ms | p99 ms | server CPU % | avg batch | in-process p50 ms at rows |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for name, per_round in reports.items():
        extra = settings[name]
        spinning = bool(extra["onnxruntime"]["allow_spinning"])  # type: ignore[index]
        local = in_process_p50_ms(model_file, args.rows, int(extra["intra_op_threads"]), spinning)  # type: ignore[call-overload]
        ok = ok and all(report.ok for report in per_round)
        for position, run in enumerate(per_round[0].runs):
            runs = [report.runs[position] for report in per_round]
            cells = [
                name,
                str(run.concurrency),
                f"{statistics.median(r.requests_per_s for r in runs):,.0f}",
                f"{statistics.median(r.p50_ms or 0 for r in runs):.3f}",
                f"{statistics.median(r.p99_ms or 0 for r in runs):.3f}",
                f"{statistics.median(r.server_cpu_percent or 0 for r in runs):.0f}",
                f"{statistics.median(r.average_batch or 0 for r in runs):.2f}",
                f"{local:.3f}",
            ]
            print("| " + " | ".join(cells) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
