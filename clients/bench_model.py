"""What the benchmark knows of the model file: its inputs, seeded requests, the identity twin, the repository.

Tensor names, types and shapes are read from the graph with ONNX Runtime, so
the bench works for any model with a dynamic batch dimension.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from clients.bench_check import ExpectedOutputs
from server.config import ConfigError, ModelConfig, parse_model_config
from server.cpus import default_intra_op_threads
from server.datatypes import DATATYPE_BY_ONNX_TYPE, NUMPY_BY_DATATYPE
from server.runtime import DEFAULT_MAX_BATCH_SIZE, ORT_PROVIDER_BY_NAME, provider_options

MODEL_NAME = "model"
NO_BATCH_MODEL_NAME = "model_nobatch"
IDENTITY_MODEL_NAME = "identity"
IDENTITY_OUTPUT_NAME = "identity_output"
# ir 8 / opset 17: loadable by every ONNX Runtime Tau supports.
IDENTITY_IR_VERSION = 8
IDENTITY_OPSET = 17


class BenchModelError(ValueError):
    """A model file the bench cannot drive; the message says what it needs."""


@dataclass(frozen=True)
class InputSpec:
    """One graph input; `shape[0]` is the batch dimension (None: dynamic)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


def reference_session(
    model_file: Path, execution_providers: tuple[str, ...] = ("cpu",), overrides: dict[str, Any] | None = None
) -> ort.InferenceSession:
    """A session set up as a one-process server sets up its own: default_intra_op_threads(), no spinning,
    the same execution providers with the same options. Refuses one whose first provider did not load."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_intra_op_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    config = served_config(execution_providers, overrides)
    providers = provider_options(config)
    wanted = ORT_PROVIDER_BY_NAME[execution_providers[0]]
    if wanted not in ort.get_available_providers():
        raise BenchModelError(
            f"--execution-providers: this ONNX Runtime has no {wanted} (available: {ort.get_available_providers()})"
        )
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
    if session.get_providers()[0] != wanted:
        raise BenchModelError(f"in-process reference: asked for {wanted}, got {session.get_providers()}")
    return session


def served_config(execution_providers: tuple[str, ...], overrides: dict[str, Any] | None) -> ModelConfig:
    """The parts of the served models' config that shape a session, as the server parses them."""
    raw = {"execution_providers": list(execution_providers), **(overrides or {})}
    keys = ("execution_providers", "gpu_device_id", "gpu", "require_gpu")
    try:
        return parse_model_config({key: raw[key] for key in keys if key in raw}, "reference")
    except ConfigError as error:
        raise BenchModelError(f"--execution-providers / --config-override: {error}") from error


def read_inputs(session: ort.InferenceSession) -> list[InputSpec]:
    """Every graph input; refuses graphs without a dynamic batch dimension, which rows/request needs."""
    specs = []
    for node in session.get_inputs():
        datatype = DATATYPE_BY_ONNX_TYPE.get(node.type)
        if datatype is None:
            raise BenchModelError(f"input '{node.name}': type {node.type} has no V2 datatype")
        shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in node.shape)
        if not shape or shape[0] is not None:
            raise BenchModelError(
                f"input '{node.name}': expected a dynamic first (batch) dimension, got {list(node.shape)}"
            )
        specs.append(InputSpec(node.name, NUMPY_BY_DATATYPE[datatype], shape))
    return specs


def make_inputs(specs: list[InputSpec], rows: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs with `rows` rows; other dynamic dimensions get size 1."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (rows, *(dim or 1 for dim in spec.shape[1:]))
        if spec.dtype.kind == "f":
            array = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            array = rng.random(shape) < 0.5
        else:
            # Small non-negative integers: valid as indices or token ids for most graphs.
            array = rng.integers(0, 10, shape).astype(spec.dtype)
        arrays[spec.name] = array
    return arrays


def expected_outputs(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> ExpectedOutputs:
    """What the model must answer to `inputs`, computed in-process."""
    names = [node.name for node in session.get_outputs()]
    results = session.run(names, inputs)
    return ExpectedOutputs(dict(zip(names, (np.asarray(r) for r in results), strict=True)), exact=False)


def identity_expected(specs: list[InputSpec], inputs: dict[str, np.ndarray]) -> ExpectedOutputs:
    """The identity twin must echo its one input bit for bit."""
    return ExpectedOutputs({IDENTITY_OUTPUT_NAME: inputs[specs[0].name]}, exact=True)


def write_identity_model(spec: InputSpec, path: Path) -> Path:
    """An Identity graph with the same input name, type and shape: what serving costs without compute."""
    tensor_type = helper.np_dtype_to_tensor_dtype(spec.dtype)
    dims: list[int | str] = ["batch", *(dim if dim is not None else f"d{i}" for i, dim in enumerate(spec.shape[1:]))]
    graph = helper.make_graph(
        [helper.make_node("Identity", [spec.name], [IDENTITY_OUTPUT_NAME])],
        "bench_identity",
        [helper.make_tensor_value_info(spec.name, tensor_type, dims)],
        [helper.make_tensor_value_info(IDENTITY_OUTPUT_NAME, tensor_type, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", IDENTITY_OPSET)])
    model.ir_version = IDENTITY_IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _copy_model_file(model_file: Path, destination: Path) -> None:
    """Copy the graph and any external-data files it names, which must stay beside it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, destination)
    graph = onnx.load(str(model_file), load_external_data=False)
    # Initializers of the main graph only: external data inside subgraphs is rare enough to leave out.
    locations = {ExternalDataInfo(tensor).location for tensor in graph.graph.initializer if uses_external_data(tensor)}
    for location in locations:
        target = destination.parent / location
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_file.parent / location, target)


def _merged(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` on top of `config`, one level deep (a `gpu` override keeps the other `gpu` keys)."""
    merged = dict(config)
    for key, value in overrides.items():
        existing = merged.get(key)
        merged[key] = {**existing, **value} if isinstance(value, dict) and isinstance(existing, dict) else value
    return merged


def build_repository(
    root: Path,
    model_file: Path,
    first_input: InputSpec,
    rows: int,
    execution_providers: tuple[str, ...] = ("cpu",),
    overrides: dict[str, Any] | None = None,
) -> Path:
    """`model` (batching, no delay), `model_nobatch` and `identity`, all allowing `rows` rows per request,
    on `execution_providers`, with `overrides` merged into each config."""
    max_batch_size = max(DEFAULT_MAX_BATCH_SIZE, rows)
    common = {"max_batch_size": max_batch_size, "execution_providers": list(execution_providers)}
    configs = {
        MODEL_NAME: {**common, "dynamic_batching": {"max_queue_delay_microseconds": 0}},
        NO_BATCH_MODEL_NAME: {**common, "dynamic_batching": {"enabled": False}},
        # Batches as `model` does, so the two differ only by the graph's compute.
        IDENTITY_MODEL_NAME: {**common, "dynamic_batching": {"max_queue_delay_microseconds": 0}},
    }
    configs = {name: _merged(config, overrides or {}) for name, config in configs.items()}
    _copy_model_file(model_file, root / MODEL_NAME / "1" / "model.onnx")
    _copy_model_file(model_file, root / NO_BATCH_MODEL_NAME / "1" / "model.onnx")
    write_identity_model(first_input, root / IDENTITY_MODEL_NAME / "1" / "model.onnx")
    for name, config in configs.items():
        (root / name / "config.json").write_text(json.dumps(config))
    return root
