"""GPU check: export the examples, serve them on CUDA, prove CUDA is the active provider, benchmark them.

    python scripts/gpu_check.py [--concurrency 1,8,32,128] [--workers 1] [--duration 4] [--write docs/performance.md]

Needs a machine with an NVIDIA GPU and `pip install -e '.[gpu,export,dev]'` (onnxruntime-gpu
instead of onnxruntime). Without a CUDA provider it says so and exits 77 (the usual "skipped"
code), changing nothing. Prints the performance table (tau-bench-table) for both example models,
served on CUDA with I/O binding and compared with in-process ONNX Runtime on CUDA.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients import bench_table

REPO_ROOT = Path(__file__).resolve().parents[1]

SKIPPED = 77
EXAMPLES = ("mlp", "cnn")


# Serve on CUDA only (a load that does not get CUDA fails instead of falling back), bind I/O,
# warm up the shapes the benchmark sends.
GPU_OVERRIDE = {
    "require_gpu": True,
    "gpu": {"io_binding": True, "cudnn_conv_algo_search": "HEURISTIC"},
    "warmup": {"batch_sizes": [1, 8, 32], "data": "random"},
}


def build_repository(root: Path) -> None:
    """The examples freshly exported where torch is installed, else the bundled ones."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not installed: serving the bundled example models instead of re-exporting them")
        for name in EXAMPLES:
            shutil.copytree(REPO_ROOT / "models" / name, root / name)
    else:
        subprocess.run([sys.executable, "-m", "exporter", "examples", "--repository", str(root)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--workers", default="1", help="server worker counts; each holds its own CUDA context (1)")
    parser.add_argument("--duration", default="4")
    parser.add_argument("--write", type=Path, help="also put the table between the markers of this file")
    args = parser.parse_args(argv)
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        print(
            f"SKIP: this ONNX Runtime has no CUDA provider (available: {available}); install tau[gpu] on a GPU machine"
        )
        return SKIPPED
    with tempfile.TemporaryDirectory() as workdir:
        repository = Path(workdir) / "models"
        repository.mkdir()
        build_repository(repository)
        # tau-bench-table checks that the server's models and the in-process reference both run on CUDA,
        # and stops with an error (exit 2) if either fell back.
        table_args = ["--model-repository", str(repository), "--models", ",".join(EXAMPLES)]
        table_args += ["--execution-providers", "cuda", "--config-override", json.dumps(GPU_OVERRIDE)]
        table_args += ["--workers", args.workers, "--concurrency", args.concurrency, "--duration", args.duration]
        if args.write:
            table_args += ["--write", str(args.write.resolve()), "--marker", "tau-bench-table-gpu"]
        return bench_table.main(table_args)


if __name__ == "__main__":
    sys.exit(main())
