"""GPU check: export the examples, serve them on CUDA, prove CUDA is the active provider, benchmark them.

    python scripts/gpu_check.py [--concurrency 1,8,32] [--duration 5]

Needs a machine with an NVIDIA GPU and `pip install -e '.[gpu,export,dev]'` (onnxruntime-gpu
instead of onnxruntime). Without a CUDA provider it says so and exits 77 (the usual "skipped"
code), changing nothing. Prints the benchmark tables for both example models.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.server_process import REPO_ROOT, running_server

SKIPPED = 77
EXAMPLES = ("mlp", "cnn")


def gpu_config(model_dir: Path) -> None:
    """Serve on CUDA only, fail the load rather than fall back, bind I/O, warm up the shapes."""
    config = json.loads((model_dir / "config.json").read_text())
    config |= {
        "execution_providers": ["cuda"],
        "require_gpu": True,
        "gpu": {"io_binding": True, "cudnn_conv_algo_search": "HEURISTIC"},
        "warmup": {"batch_sizes": [1, 8, 32], "data": "random"},
    }
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))


def build_repository(root: Path) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not installed: serving the bundled example models instead of re-exporting them")
        for name in EXAMPLES:
            shutil.copytree(REPO_ROOT / "models" / name, root / name)
    else:
        subprocess.run([sys.executable, "-m", "exporter", "examples", "--repository", str(root)], check=True)
    for name in EXAMPLES:
        gpu_config(root / name)


def active_providers(address: str) -> dict[str, str]:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return {
            name: stub.ModelConfig(pb.ModelConfigRequest(name=name), timeout=10)
            .config.parameters["execution_provider"]
            .string_value
            for name in EXAMPLES
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", default="5")
    args = parser.parse_args(argv)
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        print(
            f"SKIP: this ONNX Runtime has no CUDA provider (available: {available}); install tau[gpu] on a GPU machine"
        )
        return SKIPPED
    with tempfile.TemporaryDirectory() as workdir:
        repo = Path(workdir) / "models"
        repo.mkdir()
        build_repository(repo)
        server_args = ["--workers", "1", "--metrics-port", "0"]
        with running_server(repo, Path(workdir) / "server.log", server_args) as server:
            providers = active_providers(server.address)
            print(f"active providers: {providers}")
            if set(providers.values()) != {"CUDAExecutionProvider"}:
                print(f"FAIL: a model is not on CUDA:\n{server.log()}")
                return 1
            for name in EXAMPLES:
                command = [sys.executable, "-m", "clients.bench", "--model-file", str(repo / name / "1" / "model.onnx")]
                command += ["--url", server.address, "--model", name, "--server-pid", str(server.process.pid)]
                command += ["--concurrency", args.concurrency, "--duration", args.duration]
                print(f"\n## {name} on CUDA\n", flush=True)
                subprocess.run(command, cwd=REPO_ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
