"""The model repository the client tests serve: real example models plus tiny graphs with known behaviour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.server.onnx_builders import OPSET, identity_model, slow_model
from tests.server_process import REPO_ROOT

GATHER_TABLE = np.arange(10, dtype=np.float32) * 10.0  # gather(i) = 10 * i for 0 <= i < 10
WIDE = 1024


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def gather_model(path: Path) -> Path:
    """INPUT0 INT64 [batch, 1] -> OUTPUT0 = table[INPUT0]; an index outside [-10, 9] makes the run fail."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "INPUT0"], ["OUTPUT0"], axis=0)],
        "gather",
        [helper.make_tensor_value_info("INPUT0", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(GATHER_TABLE, name="table")],
    )
    return _save(graph, path)


def row_sum_model(path: Path, width: int = WIDE) -> Path:
    """INPUT0 FP32 [batch, width] -> OUTPUT0 [batch, 1], each row's sum: a wide input, a tiny output."""
    ones = np.ones((width, 1), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["INPUT0", "ones"], ["OUTPUT0"])],
        "row_sum",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(ones, name="ones")],
    )
    return _save(graph, path)


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
    gather_model(root / "gather" / "1" / "model.onnx")
    _config(root / "gather", {"max_batch_size": 64})
    row_sum_model(root / "row_sum" / "1" / "model.onnx")
    return root
