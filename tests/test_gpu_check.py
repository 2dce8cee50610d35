"""The GPU check script skips cleanly (exit 77, a clear message) where ONNX Runtime has no CUDA provider."""

from __future__ import annotations

import subprocess
import sys

import onnxruntime as ort
import pytest

from tests.server_process import REPO_ROOT


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA present: run the script")
def test_gpu_check_skips_without_cuda() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gpu_check.py"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 77, result.stdout + result.stderr
    assert "SKIP: this ONNX Runtime has no CUDA provider" in result.stdout
