"""Triton's ONNX Runtime backend settings in a model configuration, translated to Tau's.

They live in two places of a Triton config: `optimization` (graph level, execution
accelerators) and `parameters` (thread counts, execution mode, arena, CUDA options), with the
meanings the onnxruntime_backend gives them. What Tau has no equivalent for is refused by name.
"""

from __future__ import annotations

import json
from typing import Any

from server.config import ConfigError

# The backend's meaning of optimization.graph.level (not ONNX Runtime's own numbering).
_GRAPH_LEVEL = {0: "all", -1: "basic", 1: "extended", 2: "disabled"}
_CUDNN_CONV_ALGO_SEARCH = {"0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}
_EXECUTION_MODE = {"0": "sequential", "1": "parallel"}
_BOOLEAN = {"0": False, "1": True, "false": False, "true": True}
PARAMETER_KEYS = (
    "intra_op_thread_count",
    "inter_op_thread_count",
    "execution_mode",
    "enable_mem_arena",
    "cudnn_conv_algo_search",
    "gpu_mem_limit",
)
LABELS_PARAMETER = "labels"  # Tau's class names, as a JSON list (ModelConfig answers carry it)
# What Tau's ModelConfig answers report, so that an answer fed back as a config loads: read, not set.
_REPORTED_KEYS = ("execution_provider", "requested_execution_providers")
_TENSORRT_KEYS = ("precision_mode", "trt_engine_cache_enable", "trt_engine_cache_path")


def _choice(table: dict[str, Any], value: str, key: str) -> Any:
    if value.lower() not in table:
        raise ConfigError(f"{key}: expected one of {sorted(table)}, got {value!r}")
    return table[value.lower()]


def _count(value: str, key: str) -> int:
    if not value.isdigit():
        raise ConfigError(f"{key}: expected a non-negative integer, got {value!r}")
    return int(value)


def _json_labels(text: str) -> list[str]:
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"parameters.{LABELS_PARAMETER}: expected a JSON list of strings: {error}") from error
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ConfigError(f"parameters.{LABELS_PARAMETER}: expected a JSON list of strings, got {text!r}")
    return labels


def _tensorrt(parameters: dict[str, str]) -> dict[str, Any]:
    key_prefix = "optimization.execution_accelerators.gpu_execution_accelerator[tensorrt].parameters"
    unknown = sorted(set(parameters) - set(_TENSORRT_KEYS))
    if unknown:
        raise ConfigError(f"{key_prefix}: Tau does not support {unknown}; supported: {list(_TENSORRT_KEYS)}")
    gpu: dict[str, Any] = {}
    precision = parameters.get("precision_mode", "FP32").upper()
    if precision not in ("FP32", "FP16"):
        raise ConfigError(f"{key_prefix}.precision_mode: expected FP32 or FP16, got {precision!r}")
    gpu["tensorrt_fp16"] = precision == "FP16"
    cache = _choice(_BOOLEAN, parameters.get("trt_engine_cache_enable", "0"), f"{key_prefix}.trt_engine_cache_enable")
    if cache:
        path = parameters.get("trt_engine_cache_path", "")
        if not path:
            raise ConfigError(f"{key_prefix}: trt_engine_cache_enable needs trt_engine_cache_path")
        gpu["tensorrt_engine_cache_path"] = path
    return gpu


def translate_optimization(raw: dict[str, Any]) -> dict[str, Any]:
    """Tau config keys from Triton's `optimization` block."""
    converted: dict[str, Any] = {}
    level = int(raw.get("graph", {}).get("level", 0))
    if level not in _GRAPH_LEVEL:
        raise ConfigError(f"optimization.graph.level: expected one of {sorted(_GRAPH_LEVEL)}, got {level}")
    converted["onnxruntime"] = {"graph_optimization_level": _GRAPH_LEVEL[level]}
    accelerators = raw.get("execution_accelerators", {})
    cpu = [item.get("name") for item in accelerators.get("cpu_execution_accelerator", [])]
    if cpu:
        raise ConfigError(
            f"optimization.execution_accelerators.cpu_execution_accelerator: {cpu}: Tau runs ONNX Runtime's "
            "default CPU provider only"
        )
    providers: list[str] = []
    gpu: dict[str, Any] = {}
    for item in accelerators.get("gpu_execution_accelerator", []):
        name, parameters = item.get("name"), dict(item.get("parameters", {}))
        if name == "tensorrt":
            providers.append("tensorrt")
            gpu |= _tensorrt(parameters)
        elif name == "cuda" and not parameters:
            providers.append("cuda")
        else:
            detail = f"parameters {sorted(parameters)} are not supported" if name == "cuda" else "unknown accelerator"
            raise ConfigError(f"optimization.execution_accelerators.gpu_execution_accelerator {name!r}: {detail}")
    if providers:
        # As in Triton, CUDA runs what TensorRT cannot, and the CPU what neither can.
        converted["execution_providers"] = [*dict.fromkeys([*providers, "cuda", "cpu"])]
    if gpu:
        converted["gpu"] = gpu
    return converted


def translate_parameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Tau config keys from Triton's `parameters` map (each value a {"string_value": ...})."""
    values = {
        key: str((value or {}).get("string_value", "")) for key, value in raw.items() if key not in _REPORTED_KEYS
    }
    unknown = sorted(set(values) - {*PARAMETER_KEYS, LABELS_PARAMETER})
    if unknown:
        raise ConfigError(f"parameters: Tau does not support {unknown}; supported: {list(PARAMETER_KEYS)}")
    onnxruntime: dict[str, Any] = {}
    gpu: dict[str, Any] = {}
    converted: dict[str, Any] = {}
    if LABELS_PARAMETER in values:
        converted["labels"] = _json_labels(values[LABELS_PARAMETER])
    if "intra_op_thread_count" in values:
        converted["intra_op_threads"] = _count(values["intra_op_thread_count"], "parameters.intra_op_thread_count")
    if "inter_op_thread_count" in values:
        onnxruntime["inter_op_threads"] = _count(values["inter_op_thread_count"], "parameters.inter_op_thread_count")
    if "execution_mode" in values:
        onnxruntime["execution_mode"] = _choice(_EXECUTION_MODE, values["execution_mode"], "parameters.execution_mode")
    if "enable_mem_arena" in values:
        arena = _choice(_BOOLEAN, values["enable_mem_arena"], "parameters.enable_mem_arena")
        onnxruntime["enable_cpu_mem_arena"] = arena
    if "cudnn_conv_algo_search" in values:
        gpu["cudnn_conv_algo_search"] = _choice(
            _CUDNN_CONV_ALGO_SEARCH, values["cudnn_conv_algo_search"], "parameters.cudnn_conv_algo_search"
        )
    if "gpu_mem_limit" in values:
        gpu["gpu_mem_limit_bytes"] = _count(values["gpu_mem_limit"], "parameters.gpu_mem_limit")
    if onnxruntime:
        converted["onnxruntime"] = onnxruntime
    if gpu:
        converted["gpu"] = gpu
    return converted
