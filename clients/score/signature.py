"""What the scorer needs to know of a model: its tensors, batch limit and class labels, from a server or files."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np

from clients.aio_client import AsyncTauClient
from clients.errors import InferenceError
from clients.score.options import ScoreOptions, UsageError
from server.config import ConfigError, ModelConfig, TensorSpec
from server.config_files import load_model_config
from server.datatypes import NUMPY_BY_DATATYPE
from server.triton_onnxruntime import LABELS_PARAMETER

MODEL_FILE_NAME = "model.onnx"


@dataclass(frozen=True)
class ModelSignature:
    """A batched model's inputs and selected outputs (shapes without the batch dimension)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]  # the outputs to score, in the model's order
    max_batch_size: int
    labels: tuple[str, ...] = ()

    def dtype(self, spec: TensorSpec) -> np.dtype:
        return NUMPY_BY_DATATYPE[spec.datatype]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]


def _select_outputs(all_outputs: tuple[TensorSpec, ...], wanted: tuple[str, ...], model: str) -> tuple[TensorSpec, ...]:
    names = [spec.name for spec in all_outputs]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise UsageError(f"--outputs {unknown}: model '{model}' has outputs {names}")
    return tuple(spec for spec in all_outputs if not wanted or spec.name in wanted)


def _checked(signature: ModelSignature, options: ScoreOptions) -> ModelSignature:
    if signature.max_batch_size < 1:
        raise UsageError(f"model '{signature.name}' has no batch dimension (max_batch_size 0); tau-score scores rows")
    if options.output_format == "npy" and len(signature.outputs) != 1:
        raise UsageError(
            f"a .npy output holds one output; model '{signature.name}' has {signature.output_names}: "
            "choose one with --outputs, or write .parquet"
        )
    return replace(signature, labels=_labels(options) or signature.labels)


def _labels(options: ScoreOptions) -> tuple[str, ...]:
    """Class names from --labels-file (one per line), else none (the caller falls back to the repository)."""
    if options.labels_file is None:
        return ()
    try:
        lines = options.labels_file.read_text().splitlines()
    except OSError as error:
        raise UsageError(f"--labels-file: {error}") from error
    return tuple(line.strip() for line in lines if line.strip())


def _repository_labels(options: ScoreOptions) -> tuple[str, ...]:
    if options.repository is None:
        return ()
    return _repository_config(options).labels


def _repository_config(options: ScoreOptions) -> ModelConfig:
    assert options.repository is not None
    try:
        return load_model_config(options.repository / options.model)
    except ConfigError as error:
        raise UsageError(str(error)) from error


def local_model_file(options: ScoreOptions) -> tuple[Path, ModelConfig]:
    """The ONNX file to run in process and its config: --model-file, else the repository's chosen version."""
    if options.model_file is not None:
        if not options.model_file.is_file():
            raise UsageError(f"--model-file {options.model_file}: no such file")
        return options.model_file, ModelConfig(name=options.model)
    if options.repository is None:
        raise UsageError("in-process scoring needs --repository DIR or --model-file model.onnx")
    model_dir = options.repository / options.model
    versions = sorted(
        int(path.name) for path in model_dir.glob("*") if path.name.isdigit() and (path / MODEL_FILE_NAME).is_file()
    )
    if not versions:
        raise UsageError(f"no {model_dir}/<version>/{MODEL_FILE_NAME} in the repository")
    version = int(options.model_version) if options.model_version else versions[-1]
    if version not in versions:
        raise UsageError(f"--model-version {version}: {model_dir} has versions {versions}")
    return model_dir / str(version) / MODEL_FILE_NAME, _repository_config(options)


def signature_from_config(config: ModelConfig, options: ScoreOptions) -> ModelSignature:
    """From a completed ModelConfig (an in-process ONNX Runtime session's)."""
    assert config.inputs is not None and config.outputs is not None
    signature = ModelSignature(
        name=options.model,
        inputs=config.inputs,
        outputs=_select_outputs(config.outputs, options.outputs, options.model),
        max_batch_size=config.max_batch_size or 0,
        labels=config.labels,
    )
    return _checked(signature, options)


async def signature_from_server(client: AsyncTauClient, options: ScoreOptions) -> ModelSignature:
    """From the server's ModelMetadata and ModelConfig; labels from --labels-file, --repository or the server."""
    try:
        metadata = await client.model_metadata(options.model, options.model_version)
        config = await client.model_config(options.model, options.model_version)
    except InferenceError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            raise UsageError(f"--model {options.model}: {error.message}") from error
        raise
    strip = 1 if config.max_batch_size > 0 else 0

    def specs(tensors: object) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(tensor.name, tensor.datatype, tuple(tensor.shape[strip:]))
            for tensor in tensors  # type: ignore[attr-defined]
        )

    signature = ModelSignature(
        name=options.model,
        inputs=specs(metadata.inputs),
        outputs=_select_outputs(specs(metadata.outputs), options.outputs, options.model),
        max_batch_size=config.max_batch_size,
        labels=_repository_labels(options) or _server_labels(config),
    )
    return _checked(signature, options)


def _server_labels(config: object) -> tuple[str, ...]:
    """The class names Tau reports in its ModelConfig answer (parameter `labels`, a JSON list)."""
    parameters = getattr(config, "parameters", {})
    if LABELS_PARAMETER not in parameters:
        return ()
    try:
        labels = json.loads(parameters[LABELS_PARAMETER].string_value)
    except json.JSONDecodeError:
        return ()
    return tuple(str(label) for label in labels) if isinstance(labels, list) else ()
