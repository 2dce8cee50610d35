"""Translate Triton's model configuration (as JSON, what tritonclient's `load_model(config=...)` sends) to Tau's.

Only the fields Tau implements are accepted; anything else is refused by name
rather than silently ignored.
"""

from __future__ import annotations

from typing import Any

from server.config import ConfigError

_TRITON_ONLY_KEYS = {"input", "output", "instance_group", "backend", "default_model_filename"}
_SUPPORTED_KEYS = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "input",
    "output",
    "instance_group",
    "dynamic_batching",
    "version_policy",
    "default_model_filename",
}


def looks_like_triton(raw: dict[str, Any]) -> bool:
    batching = raw.get("dynamic_batching")
    triton_batching = isinstance(batching, dict) and bool(
        {"preferred_batch_size", "default_queue_policy"} & set(batching)
    )
    return bool(_TRITON_ONLY_KEYS & set(raw)) or triton_batching


def _tensor(raw: dict[str, Any], key: str) -> dict[str, Any]:
    data_type = str(raw.get("data_type", ""))
    if not data_type.startswith("TYPE_"):
        raise ConfigError(f"{key}.data_type: expected a Triton type like TYPE_FP32, got {data_type!r}")
    return {"name": raw.get("name"), "datatype": data_type.removeprefix("TYPE_"), "shape": raw.get("dims", [])}


def _batching(raw: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    if "preferred_batch_size" in raw:
        converted["preferred_batch_sizes"] = [int(size) for size in raw["preferred_batch_size"]]
    for key in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
        if key in raw:
            converted[key] = int(raw[key])
    policy = raw.get("default_queue_policy", {})
    for key in ("max_queue_size", "default_timeout_microseconds"):
        if key in policy:
            converted[key] = int(policy[key])
    return converted


def from_triton_json(raw: dict[str, Any]) -> dict[str, Any]:
    """A Tau config.json dict from a Triton ModelConfig JSON dict."""
    unsupported = set(raw) - _SUPPORTED_KEYS
    if unsupported:
        raise ConfigError(f"Triton config keys Tau does not support: {sorted(unsupported)}")
    backend = raw.get("backend", "onnxruntime")
    if backend != "onnxruntime":
        raise ConfigError(f"backend: Tau serves only 'onnxruntime', got {backend!r}")
    converted: dict[str, Any] = {key: raw[key] for key in ("name", "platform", "version_policy") if key in raw}
    if "max_batch_size" in raw:
        converted["max_batch_size"] = int(raw["max_batch_size"])
    if raw.get("input"):
        converted["inputs"] = [_tensor(item, f"input[{i}]") for i, item in enumerate(raw["input"])]
    if raw.get("output"):
        converted["outputs"] = [_tensor(item, f"output[{i}]") for i, item in enumerate(raw["output"])]
    groups = raw.get("instance_group") or []
    if groups:
        converted["instance_count"] = sum(int(group.get("count", 1)) for group in groups)
        if any(group.get("kind") == "KIND_GPU" for group in groups):
            converted["execution_providers"] = ["cuda", "cpu"]
            converted["require_gpu"] = True
    if "dynamic_batching" in raw:
        converted["dynamic_batching"] = _batching(raw["dynamic_batching"] or {})
    else:
        # Triton without a dynamic_batching block runs each request alone.
        converted["dynamic_batching"] = {"enabled": False}
    return converted
