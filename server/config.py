"""A model's configuration: what `<repo>/<model>/config.json` may say, parsed and checked.

Every key is optional; what is absent is inferred from the ONNX graph when the
model loads (as Triton's auto-complete does for ONNX), so a folder holding only
`<version>/model.onnx` serves with defaults. Shapes exclude the batch dimension
whenever `max_batch_size` > 0, as in Triton.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from server.datatypes import NUMPY_BY_DATATYPE

CONFIG_FILE_NAME = "config.json"
SUPPORTED_PLATFORM = "onnxruntime_onnx"
KNOWN_EXECUTION_PROVIDERS = ("tensorrt", "cuda", "cpu")


class ConfigError(ValueError):
    """A config.json that cannot be used; the message names the key and what was expected."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, V2 datatype and shape (-1 = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class DynamicBatchingConfig:
    """Queue and batching knobs, named as Triton names them (with the unit in the name).

    With `enabled` false each request runs alone, but still through the same
    bounded queue, deadlines and priorities.
    """

    enabled: bool = True
    max_queue_delay_microseconds: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    default_timeout_microseconds: int = 0  # 0: no timeout unless the request sets one
    priority_levels: int = 0  # 0: one level; else 1 (highest) .. priority_levels
    default_priority_level: int = 0  # 0: the lowest level


@dataclass(frozen=True)
class VersionPolicy:
    """Which version folders to serve, as Triton's version_policy: latest N, all, or specific ones."""

    kind: str = "latest"  # "latest", "all" or "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve among `available` (sorted ascending)."""
        if self.kind == "all":
            return list(available)
        if self.kind == "specific":
            return [version for version in available if version in self.versions]
        return available[-self.num_versions :]


@dataclass(frozen=True)
class WarmupConfig:
    """Batches run through the model before it is marked ready, so no user request pays for first-run setup."""

    batch_sizes: tuple[int, ...] = ()  # empty: no warmup
    data: str = "zero"  # "zero" or "random"


@dataclass(frozen=True)
class OnnxRuntimeConfig:
    """ONNX Runtime session settings beyond the thread count (see docs/performance.md for measurements)."""

    inter_op_threads: int = 1
    graph_optimization_level: str = "all"  # disabled, basic, extended, all
    optimized_model_path: str = ""  # where to save the optimized graph ("" = don't)
    enable_cpu_mem_arena: bool = True
    # Spinning pool threads take the CPU the gRPC side needs on small machines; off unless asked.
    allow_spinning: bool = False
    execution_mode: str = "sequential"  # or "parallel" (uses inter_op_threads)


@dataclass(frozen=True)
class GpuConfig:
    """CUDA and TensorRT provider options, and I/O binding."""

    cudnn_conv_algo_search: str = "EXHAUSTIVE"  # EXHAUSTIVE, HEURISTIC, DEFAULT
    gpu_mem_limit_bytes: int = 0  # 0: no limit
    tensorrt_fp16: bool = False
    tensorrt_engine_cache_path: str = ""  # "" = no engine cache
    # Inputs go to the device once per batch and outputs come back once (bind_cpu_input/bind_output).
    io_binding: bool = False


_CHOICES = {
    "graph_optimization_level": ("disabled", "basic", "extended", "all"),
    "execution_mode": ("sequential", "parallel"),
    "cudnn_conv_algo_search": ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
}


def _parse_flat(raw: Any, key: str, kind: type[Any]) -> Any:
    """A block of plain int/bool/str settings, checked against the dataclass `kind`'s fields."""
    _expect(raw, dict, key, "an object")
    fields_by_name = kind.__dataclass_fields__
    unknown = set(raw) - set(fields_by_name)
    if unknown:
        raise ConfigError(f"{key}: unknown keys {sorted(unknown)}; expected some of {sorted(fields_by_name)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        default = fields_by_name[name].default
        if isinstance(default, bool):
            values[name] = _expect(value, bool, f"{key}.{name}", "true or false")
        elif isinstance(default, int):
            values[name] = _non_negative_int(value, f"{key}.{name}")
        else:
            values[name] = _expect(value, str, f"{key}.{name}", "a string")
            if name in _CHOICES and value not in _CHOICES[name]:
                raise ConfigError(f"{key}.{name}: expected one of {list(_CHOICES[name])}, got {value!r}")
    return kind(**values)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides how one model is loaded and served."""

    name: str
    platform: str = SUPPORTED_PLATFORM
    max_batch_size: int | None = None  # None: inferred from the graph
    inputs: tuple[TensorSpec, ...] | None = None  # None: inferred from the graph
    outputs: tuple[TensorSpec, ...] | None = None
    execution_providers: tuple[str, ...] = ("cpu",)
    require_gpu: bool = False
    gpu_device_id: int = 0
    instance_count: int = 1
    intra_op_threads: int = 0  # 0: sized to the CPUs this process may use
    dynamic_batching: DynamicBatchingConfig = field(default_factory=DynamicBatchingConfig)
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    onnxruntime: OnnxRuntimeConfig = field(default_factory=OnnxRuntimeConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    labels: tuple[str, ...] = ()

    def with_graph_defaults(
        self, max_batch_size: int, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
    ) -> ModelConfig:
        """Fill what the file left out with what the graph says."""
        return replace(
            self,
            max_batch_size=self.max_batch_size if self.max_batch_size is not None else max_batch_size,
            inputs=self.inputs if self.inputs is not None else inputs,
            outputs=self.outputs if self.outputs is not None else outputs,
        )

    @cached_property
    def inputs_by_name(self) -> dict[str, TensorSpec]:
        """Looked up on every request: built once per config rather than once per request."""
        return {spec.name: spec for spec in self.inputs or ()}

    @cached_property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs or ()]


_TOP_LEVEL_KEYS = {
    "name",
    "platform",
    "max_batch_size",
    "inputs",
    "outputs",
    "execution_providers",
    "require_gpu",
    "gpu_device_id",
    "instance_count",
    "intra_op_threads",
    "dynamic_batching",
    "version_policy",
    "warmup",
    "onnxruntime",
    "gpu",
    "labels",
}


def _expect(value: Any, kind: type | tuple[type, ...], key: str, expected: str) -> Any:
    # bool is an int in Python; a config that says `"max_batch_size": true` is a mistake.
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    return value


def _non_negative_int(value: Any, key: str) -> int:
    number = _expect(value, int, key, "a non-negative integer")
    if number < 0:
        raise ConfigError(f"{key}: expected a non-negative integer, got {number}")
    return int(number)


def _parse_tensor(raw: Any, key: str) -> TensorSpec:
    _expect(raw, dict, key, "an object with name, datatype and shape")
    unknown = set(raw) - {"name", "datatype", "shape"}
    if unknown:
        raise ConfigError(f"{key}: unknown keys {sorted(unknown)}; expected name, datatype, shape")
    name = _expect(raw.get("name"), str, f"{key}.name", "a tensor name")
    datatype = _expect(raw.get("datatype"), str, f"{key}.datatype", "a V2 datatype")
    if datatype not in NUMPY_BY_DATATYPE:
        raise ConfigError(f"{key}.datatype: expected one of {sorted(NUMPY_BY_DATATYPE)}, got {datatype!r}")
    shape = _expect(raw.get("shape"), list, f"{key}.shape", "a list of dimensions (-1 = any)")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < -1 or dim == 0:
            raise ConfigError(f"{key}.shape: expected positive dimensions or -1, got {shape}")
    return TensorSpec(name=name, datatype=datatype, shape=tuple(shape))


def _parse_tensors(raw: Any, key: str) -> tuple[TensorSpec, ...]:
    _expect(raw, list, key, "a list of tensors")
    specs = tuple(_parse_tensor(item, f"{key}[{i}]") for i, item in enumerate(raw))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: tensor names must be unique, got {names}")
    return specs


def _parse_batching(raw: Any) -> DynamicBatchingConfig:
    if raw is False:
        return DynamicBatchingConfig(enabled=False)
    _expect(raw, dict, "dynamic_batching", "an object, or false to turn batching off")
    known = DynamicBatchingConfig.__dataclass_fields__.keys()
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"dynamic_batching: unknown keys {sorted(unknown)}; expected {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "enabled":
            values[key] = _expect(value, bool, "dynamic_batching.enabled", "true or false")
        elif key == "preferred_batch_sizes":
            sizes = _expect(value, list, f"dynamic_batching.{key}", "a list of positive integers")
            values[key] = tuple(_non_negative_int(size, f"dynamic_batching.{key}") for size in sizes)
        else:
            values[key] = _non_negative_int(value, f"dynamic_batching.{key}")
    batching = DynamicBatchingConfig(**values)
    if batching.max_queue_size < 1:
        raise ConfigError("dynamic_batching.max_queue_size: expected at least 1")
    if batching.default_priority_level > batching.priority_levels:
        raise ConfigError(
            f"dynamic_batching.default_priority_level: {batching.default_priority_level} is over "
            f"priority_levels ({batching.priority_levels})"
        )
    return batching


def _parse_version_policy(raw: Any) -> VersionPolicy:
    expected = 'one of {"latest": {"num_versions": N}}, {"all": {}}, {"specific": {"versions": [...]}}'
    _expect(raw, dict, "version_policy", expected)
    if len(raw) != 1 or next(iter(raw)) not in ("latest", "all", "specific"):
        raise ConfigError(f"version_policy: expected {expected}, got {raw!r}")
    kind, body = next(iter(raw.items()))
    _expect(body, dict, f"version_policy.{kind}", "an object")
    if kind == "latest":
        count = _non_negative_int(body.get("num_versions", 1), "version_policy.latest.num_versions")
        if count < 1:
            raise ConfigError("version_policy.latest.num_versions: expected at least 1")
        return VersionPolicy(kind="latest", num_versions=count)
    if kind == "specific":
        versions = _expect(body.get("versions"), list, "version_policy.specific.versions", "a list of versions")
        return VersionPolicy(
            kind="specific",
            versions=tuple(_non_negative_int(v, "version_policy.specific.versions") for v in versions),
        )
    return VersionPolicy(kind="all")


def _parse_warmup(raw: Any) -> WarmupConfig:
    _expect(raw, dict, "warmup", 'an object like {"batch_sizes": [1, 8], "data": "zero"}')
    unknown = set(raw) - {"batch_sizes", "data"}
    if unknown:
        raise ConfigError(f"warmup: unknown keys {sorted(unknown)}; expected batch_sizes, data")
    sizes = _expect(raw.get("batch_sizes", [1]), list, "warmup.batch_sizes", "a list of positive integers")
    if any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in sizes):
        raise ConfigError(f"warmup.batch_sizes: expected positive integers, got {sizes}")
    data = raw.get("data", "zero")
    if data not in ("zero", "random"):
        raise ConfigError(f"warmup.data: expected 'zero' or 'random', got {data!r}")
    return WarmupConfig(batch_sizes=tuple(sizes), data=data)


def parse_model_config(raw: Any, model_name: str) -> ModelConfig:
    """Check a decoded config.json and turn it into a ModelConfig for `model_name`."""
    _expect(raw, dict, "config", "a JSON object")
    unknown = set(raw) - _TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}; expected some of {sorted(_TOP_LEVEL_KEYS)}")
    name = raw.get("name", model_name)
    if name != model_name:
        raise ConfigError(f"name: {name!r} does not match the model folder {model_name!r}")
    platform = raw.get("platform", SUPPORTED_PLATFORM)
    if platform != SUPPORTED_PLATFORM:
        raise ConfigError(f"platform: expected {SUPPORTED_PLATFORM!r}, got {platform!r}")
    providers = tuple(_expect(raw.get("execution_providers", ["cpu"]), list, "execution_providers", "a list"))
    for provider in providers:
        if provider not in KNOWN_EXECUTION_PROVIDERS:
            raise ConfigError(
                f"execution_providers: expected some of {list(KNOWN_EXECUTION_PROVIDERS)}, got {provider!r}"
            )
    if not providers:
        raise ConfigError("execution_providers: expected at least one provider")
    instance_count = _non_negative_int(raw.get("instance_count", 1), "instance_count")
    if instance_count < 1:
        raise ConfigError("instance_count: expected at least 1")
    labels = _expect(raw.get("labels", []), list, "labels", "a list of strings")
    return ModelConfig(
        name=model_name,
        platform=platform,
        max_batch_size=(
            _non_negative_int(raw["max_batch_size"], "max_batch_size") if "max_batch_size" in raw else None
        ),
        inputs=_parse_tensors(raw["inputs"], "inputs") if "inputs" in raw else None,
        outputs=_parse_tensors(raw["outputs"], "outputs") if "outputs" in raw else None,
        execution_providers=providers,
        require_gpu=_expect(raw.get("require_gpu", False), bool, "require_gpu", "true or false"),
        gpu_device_id=_non_negative_int(raw.get("gpu_device_id", 0), "gpu_device_id"),
        instance_count=instance_count,
        intra_op_threads=_non_negative_int(raw.get("intra_op_threads", 0), "intra_op_threads"),
        dynamic_batching=_parse_batching(raw.get("dynamic_batching", {})),
        version_policy=_parse_version_policy(raw["version_policy"]) if "version_policy" in raw else VersionPolicy(),
        warmup=_parse_warmup(raw["warmup"]) if "warmup" in raw else WarmupConfig(),
        onnxruntime=_parse_flat(raw.get("onnxruntime", {}), "onnxruntime", OnnxRuntimeConfig),
        gpu=_parse_flat(raw.get("gpu", {}), "gpu", GpuConfig),
        labels=tuple(str(label) for label in labels),
    )
