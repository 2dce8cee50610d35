"""Translate Triton's model configuration to Tau's: as JSON (what tritonclient's `load_model(config=...)`
sends) or as a repository's config.pbtxt (protobuf text format).

Only the fields Tau implements are accepted; anything else is refused by name
rather than silently ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format

from server.config import ConfigError
from server.protocol import model_config_pb2 as mc
from server.triton_onnxruntime import translate_optimization, translate_parameters

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
    "optimization",
    "parameters",
    "model_warmup",
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
    # Protobuf's JSON form writes int64 dims as strings.
    dims = [int(dim) if isinstance(dim, str) and dim.lstrip("-").isdigit() else dim for dim in raw.get("dims", [])]
    return {"name": raw.get("name"), "datatype": data_type.removeprefix("TYPE_"), "shape": dims}


def _labels(outputs: list[dict[str, Any]], model_dir: Path | None) -> list[str] | None:
    """Tau keeps one label list per model: read from the one output that names a label_filename."""
    files = [(item.get("name"), item["label_filename"]) for item in outputs if item.get("label_filename")]
    if not files:
        return None
    if len(files) > 1:
        raise ConfigError(f"output label_filename: Tau keeps one label list per model, got {len(files)} files")
    output, file_name = files[0]
    if model_dir is None:
        raise ConfigError(
            f"output '{output}': label_filename needs a file in the model folder; send the labels as 'labels'"
        )
    path = model_dir / file_name
    if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
        raise ConfigError(f"output '{output}': label_filename must name a file inside the model folder")
    try:
        return [line.rstrip("\r") for line in path.read_text().split("\n") if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"output '{output}': label_filename {file_name!r}: {error}") from error


def read_config_pbtxt(path: Path) -> dict[str, Any]:
    """Triton's config.pbtxt (protobuf text format of ModelConfig) as the JSON dict from_triton_json reads."""
    try:
        text = path.read_text()
        message = text_format.Parse(text, mc.ModelConfig())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read: {error}") from error
    except text_format.ParseError as error:
        raise ConfigError(f"not a Triton model configuration: {error}") from error
    raw: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    # JSON leaves out zero values, but an explicit `max_batch_size: 0` means "no batch dimension".
    if re.search(r"^\s*max_batch_size\s*:", text, re.MULTILINE):
        raw["max_batch_size"] = message.max_batch_size
    return raw


def _version_policy(raw: Any) -> Any:
    """Specific versions arrive as strings from protobuf's JSON form (int64)."""
    specific = raw.get("specific") if isinstance(raw, dict) else None
    if isinstance(specific, dict) and isinstance(specific.get("versions"), list):
        versions = [int(v) if isinstance(v, str) and v.isdigit() else v for v in specific["versions"]]
        return {"specific": {**specific, "versions": versions}}
    return raw


def _warmup(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Tau warms up at a list of batch sizes with one kind of data (zeros or random) for every input;
    each Triton sample becomes its batch size, `count` times. Variable dimensions are warmed at 1."""
    batch_sizes: list[int] = []
    kinds: set[str] = set()
    for position, sample in enumerate(samples):
        key = f"model_warmup[{position}]"
        for name, tensor in (sample.get("inputs") or {}).items():
            if "input_data_file" in tensor:
                raise ConfigError(f"{key}.inputs[{name}].input_data_file: Tau warms up with zero or random data only")
            kinds.add("random" if tensor.get("random_data") else "zero")
        batch_sizes += [int(sample.get("batch_size", 1)) or 1] * max(1, int(sample.get("count", 0)))
    if len(kinds) > 1:
        raise ConfigError("model_warmup: Tau warms every input with one kind of data; mix of zero_data and random_data")
    return {"batch_sizes": batch_sizes, "data": kinds.pop() if kinds else "zero"}


def _instance_groups(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Executions at once, and the GPU: Tau runs one session per model, on one device."""
    if not groups:
        return {}
    converted: dict[str, Any] = {"instance_count": sum(int(group.get("count", 1)) for group in groups)}
    if any(group.get("kind") == "KIND_GPU" for group in groups):
        converted["execution_providers"] = ["cuda", "cpu"]
        converted["require_gpu"] = True
    devices = sorted({int(device) for group in groups for device in group.get("gpus", [])})
    if len(devices) > 1:
        raise ConfigError(
            f"instance_group.gpus: Tau places a model on one GPU, got {devices}; "
            "serve it from one pod (or worker) per GPU with gpu_device_id"
        )
    if devices:
        converted["gpu_device_id"] = devices[0]
    return converted


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


def from_triton_json(raw: dict[str, Any], model_dir: Path | None = None) -> dict[str, Any]:
    """A Tau config.json dict from a Triton ModelConfig JSON dict (label files read from `model_dir`)."""
    unsupported = set(raw) - _SUPPORTED_KEYS
    if unsupported:
        raise ConfigError(f"Triton config keys Tau does not support: {sorted(unsupported)}")
    backend = raw.get("backend", "onnxruntime")
    if backend != "onnxruntime":
        raise ConfigError(f"backend: Tau serves only 'onnxruntime', got {backend!r}")
    converted: dict[str, Any] = {key: raw[key] for key in ("name", "platform") if key in raw}
    if "version_policy" in raw:
        converted["version_policy"] = _version_policy(raw["version_policy"])
    if "max_batch_size" in raw:
        converted["max_batch_size"] = int(raw["max_batch_size"])
    if raw.get("input"):
        converted["inputs"] = [_tensor(item, f"input[{i}]") for i, item in enumerate(raw["input"])]
    if raw.get("output"):
        converted["outputs"] = [_tensor(item, f"output[{i}]") for i, item in enumerate(raw["output"])]
        labels = _labels(raw["output"], model_dir)
        if labels is not None:
            converted["labels"] = labels
    converted |= _instance_groups(raw.get("instance_group") or [])
    if "dynamic_batching" in raw:
        converted["dynamic_batching"] = _batching(raw["dynamic_batching"] or {})
    elif "max_batch_size" in converted and converted["max_batch_size"] <= 1:
        # Triton's auto-complete adds the dynamic batcher only when max_batch_size is over 1.
        converted["dynamic_batching"] = {"enabled": False}
    if raw.get("model_warmup"):
        converted["warmup"] = _warmup(raw["model_warmup"])
    for translated in (
        translate_optimization(raw.get("optimization") or {}) if "optimization" in raw else {},
        translate_parameters(raw.get("parameters") or {}),
    ):
        for key, value in translated.items():
            converted[key] = {**converted.get(key, {}), **value} if isinstance(value, dict) else value
    return converted
