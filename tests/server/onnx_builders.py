"""Tiny ONNX graphs built with onnx.helper, for server tests that need exact, known functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_TYPE_BY_DATATYPE = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
}
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def identity_model(path: Path, datatype: str, width: int = 4) -> Path:
    """INPUT0 [batch, width] -> OUTPUT0, same datatype, same values."""
    onnx_type = ONNX_TYPE_BY_DATATYPE[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("INPUT0", onnx_type, ["batch", width])],
        [helper.make_tensor_value_info("OUTPUT0", onnx_type, ["batch", width])],
    )
    return _save(graph, path)


def add_sub_model(path: Path, width: int = 16) -> Path:
    """Triton's classic example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (FP32)."""
    tensor = TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [
            helper.make_tensor_value_info("INPUT0", tensor, ["batch", width]),
            helper.make_tensor_value_info("INPUT1", tensor, ["batch", width]),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", tensor, ["batch", width]),
            helper.make_tensor_value_info("OUTPUT1", tensor, ["batch", width]),
        ],
    )
    return _save(graph, path)


def variable_width_model(path: Path) -> Path:
    """INPUT0 [batch, n] FP32 -> OUTPUT0, any width: for messages far over gRPC's 4 MiB default."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "variable_width",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", "n"])],
    )
    return _save(graph, path)


def slow_model(path: Path, width: int = 1024, depth: int = 256) -> Path:
    """A chain of MatMuls sharing one weight: about 0.2 s a batch of 64 on one core, to keep requests in flight."""
    weight = (np.random.default_rng(0).standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    nodes, previous = [], "INPUT0"
    for layer in range(depth):
        output = "OUTPUT0" if layer == depth - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [previous, "weight"], [output]))
        previous = output
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", width])],
        initializer=[numpy_helper.from_array(weight, name="weight")],
    )
    return _save(graph, path)


def offset_model(path: Path, offset: float, width: int = 4) -> Path:
    """OUTPUT0 = INPUT0 + offset: versions of one model that answer distinguishably."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "offset"], ["OUTPUT0"])],
        "offset",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", width])],
        initializer=[numpy_helper.from_array(np.array([offset], np.float32), name="offset")],
    )
    return _save(graph, path)


def gather_model(path: Path, table_size: int = 10, input_name: str = "INDICES") -> Path:
    """OUTPUT0 = 10 * index, looked up in a table: an index out of range makes ONNX Runtime raise at run time."""
    table = np.arange(table_size, dtype=np.float32) * 10
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", input_name], ["OUTPUT0"], axis=0)],
        "gather",
        [helper.make_tensor_value_info(input_name, TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(table, name="table")],
    )
    return _save(graph, path)


def row_sum_model(path: Path, width: int = 1024) -> Path:
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
