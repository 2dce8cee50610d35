"""The model repository the client tests serve: real example models plus tiny graphs with known behaviour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.server.onnx_builders import gather_model, identity_model, row_sum_model, slow_model
from tests.server_process import REPO_ROOT

GATHER_TABLE = np.arange(10, dtype=np.float32) * 10.0  # gather(i) = 10 * i for 0 <= i < 10
WIDE = 1024


def _config(model_dir: Path, config: dict[str, object]) -> None:
    (model_dir / "config.json").write_text(json.dumps(config))


def build_client_repository(root: Path) -> Path:
    for name in ("mlp", "cnn"):
        shutil.copytree(REPO_ROOT / "models" / name, root / name)
    identity_model(root / "identity" / "1" / "model.onnx", "FP32")
    _config(root / "identity", {"max_batch_size": 128})
    # Alone in the queue, a request waits the whole delay: with --concurrency 1 each takes ~20 ms.
    identity_model(root / "identity_delayed" / "1" / "model.onnx", "FP32")
    _config(
        root / "identity_delayed", {"max_batch_size": 128, "dynamic_batching": {"max_queue_delay_microseconds": 20000}}
    )
    # One request runs, one waits, the rest are refused: UNAVAILABLE "queue is full".
    slow_model(root / "slow_queue1" / "1" / "model.onnx")
    _config(root / "slow_queue1", {"max_batch_size": 64, "dynamic_batching": {"enabled": False, "max_queue_size": 1}})
    gather_model(root / "gather" / "1" / "model.onnx", input_name="INPUT0")
    _config(root / "gather", {"max_batch_size": 64})
    row_sum_model(root / "row_sum" / "1" / "model.onnx")
    return root
