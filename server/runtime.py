"""ONNX Runtime sessions: execution-provider choice, and what the graph says about its tensors.

This module knows ONNX Runtime and nothing of gRPC.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from server.config import ModelConfig, TensorSpec
from server.cpus import default_intra_op_threads
from server.datatypes import DATATYPE_BY_ONNX_TYPE

log = logging.getLogger(__name__)

# Triton autocompletes a dynamic-batch ONNX model's max_batch_size; so do we.
DEFAULT_MAX_BATCH_SIZE = 64

ORT_PROVIDER_BY_NAME = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}


class ModelLoadError(RuntimeError):
    """A model that cannot serve; the message says why."""


_GRAPH_OPTIMIZATION = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def provider_options(config: ModelConfig) -> list[str | tuple[str, dict[str, Any]]]:
    """The providers to ask ONNX Runtime for, in preference order, with their options."""
    gpu = config.gpu
    providers: list[str | tuple[str, dict[str, Any]]] = []
    for name in config.execution_providers:
        if name == "tensorrt":
            options: dict[str, Any] = {"device_id": config.gpu_device_id, "trt_fp16_enable": gpu.tensorrt_fp16}
            if gpu.tensorrt_engine_cache_path:
                options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": gpu.tensorrt_engine_cache_path}
            providers.append(("TensorrtExecutionProvider", options))
        elif name == "cuda":
            options = {"device_id": config.gpu_device_id, "cudnn_conv_algo_search": gpu.cudnn_conv_algo_search}
            if gpu.gpu_mem_limit_bytes:
                options["gpu_mem_limit"] = gpu.gpu_mem_limit_bytes
            providers.append(("CUDAExecutionProvider", options))
        else:
            providers.append("CPUExecutionProvider")
    return providers


def session_options(config: ModelConfig) -> ort.SessionOptions:
    settings = config.onnxruntime
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads or default_intra_op_threads()
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _GRAPH_OPTIMIZATION[settings.graph_optimization_level]
    options.enable_cpu_mem_arena = settings.enable_cpu_mem_arena
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if settings.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    if settings.optimized_model_path:
        options.optimized_model_filepath = settings.optimized_model_path
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if settings.allow_spinning else "0")
    options.log_severity_level = 3
    return options


def _spec_from_node(node: Any, batched: bool) -> TensorSpec:
    datatype = DATATYPE_BY_ONNX_TYPE.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"tensor {node.name!r} has type {node.type}, which Tau does not serve")
    dims = [dim if isinstance(dim, int) and dim > 0 else -1 for dim in node.shape]
    return TensorSpec(name=node.name, datatype=datatype, shape=tuple(dims[1:] if batched else dims))


def _has_dynamic_batch(nodes: list[Any]) -> bool:
    return all(len(node.shape) > 0 and not isinstance(node.shape[0], int) for node in nodes)


def _check_against_graph(declared: tuple[TensorSpec, ...], graph: tuple[TensorSpec, ...], kind: str) -> None:
    graph_by_name = {spec.name: spec for spec in graph}
    if {spec.name for spec in declared} != set(graph_by_name):
        raise ModelLoadError(
            f"config {kind} {sorted(s.name for s in declared)} do not match the graph's {sorted(graph_by_name)}"
        )
    for spec in declared:
        actual = graph_by_name[spec.name]
        if spec.datatype != actual.datatype:
            raise ModelLoadError(
                f"{kind[:-1]} {spec.name!r}: config says {spec.datatype}, graph says {actual.datatype}"
            )
        fits = len(spec.shape) == len(actual.shape) and all(
            graph_dim in (-1, dim) for dim, graph_dim in zip(spec.shape, actual.shape, strict=True)
        )
        if not fits:
            raise ModelLoadError(
                f"{kind[:-1]} {spec.name!r}: config shape {list(spec.shape)} does not fit "
                f"the graph's {list(actual.shape)}"
            )


def _available(
    providers: list[str | tuple[str, dict[str, Any]]], config: ModelConfig
) -> list[str | tuple[str, dict[str, Any]]]:
    """Drop the providers this ONNX Runtime build lacks (it refuses to start otherwise), saying so."""
    available = set(ort.get_available_providers())
    kept = [p for p in providers if (p if isinstance(p, str) else p[0]) in available]
    dropped = [p if isinstance(p, str) else p[0] for p in providers if p not in kept]
    if dropped:
        log.warning(
            "model %s: this ONNX Runtime build has no %s (available: %s)", config.name, dropped, sorted(available)
        )
    if config.require_gpu and not any((p if isinstance(p, str) else p[0]) in GPU_PROVIDERS for p in kept):
        raise ModelLoadError(
            f"require_gpu is set but no GPU execution provider is available; available: {sorted(available)}"
        )
    if not kept:
        raise ModelLoadError(
            f"none of the requested execution providers {list(config.execution_providers)} is available; "
            f"available: {sorted(available)}"
        )
    return kept


class OnnxSession:
    """One loaded ONNX model, with the config completed from its graph."""

    def __init__(self, model_path: Path, config: ModelConfig) -> None:
        providers = _available(provider_options(config), config)
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=session_options(config), providers=providers
            )
        except Exception as error:  # ORT raises its own untyped errors for corrupt files
            raise ModelLoadError(f"ONNX Runtime could not load {model_path}: {error}") from error
        self.active_providers: list[str] = self._session.get_providers()
        self._check_providers(config)
        self.config = self._complete_config(config)
        log.info(
            "model %s: loaded %s on %s (requested %s)",
            config.name,
            model_path,
            self.active_provider,
            ", ".join(config.execution_providers),
        )

    @property
    def active_provider(self) -> str:
        """The provider that runs the graph: the first ONNX Runtime actually registered."""
        return self.active_providers[0]

    def _check_providers(self, config: ModelConfig) -> None:
        wanted = [ORT_PROVIDER_BY_NAME[name] for name in config.execution_providers]
        missing = [name for name in wanted if name not in self.active_providers]
        if missing:
            log.warning(
                "model %s: requested %s but ONNX Runtime activated only %s",
                config.name,
                missing,
                self.active_providers,
            )
        if config.require_gpu and not GPU_PROVIDERS & set(self.active_providers):
            raise ModelLoadError(
                f"require_gpu is set but no GPU execution provider loaded; active: {self.active_providers}"
            )

    def _complete_config(self, config: ModelConfig) -> ModelConfig:
        input_nodes = self._session.get_inputs()
        output_nodes = self._session.get_outputs()
        batched_graph = _has_dynamic_batch(input_nodes + output_nodes)
        batched = config.max_batch_size > 0 if config.max_batch_size is not None else batched_graph
        if batched and not batched_graph:
            raise ModelLoadError(
                f"max_batch_size is {config.max_batch_size} but the graph has no dynamic batch dimension"
            )
        graph_inputs = tuple(_spec_from_node(node, batched) for node in input_nodes)
        graph_outputs = tuple(_spec_from_node(node, batched) for node in output_nodes)
        completed = config.with_graph_defaults(DEFAULT_MAX_BATCH_SIZE if batched else 0, graph_inputs, graph_outputs)
        assert completed.inputs is not None and completed.outputs is not None
        _check_against_graph(completed.inputs, graph_inputs, "inputs")
        _check_against_graph(completed.outputs, graph_outputs, "outputs")
        return completed

    @property
    def device(self) -> str:
        """Where the graph's tensors live: "cuda" when a GPU provider is active, else "cpu"."""
        return "cuda" if self.active_provider in GPU_PROVIDERS else "cpu"

    def run(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        """Run the graph once; blocks, and releases the GIL while ONNX Runtime computes."""
        if self.config.gpu.io_binding:
            return self._run_bound(inputs, output_names)
        results = self._session.run(output_names, inputs)
        return dict(zip(output_names, results, strict=True))

    def _run_bound(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        """I/O binding: each input is copied to the device once per batch, each output back once."""
        binding = self._session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in output_names:
            # Outputs bound to the CPU are copied off the device once, at the end of the run.
            binding.bind_output(name, "cpu")
        self._session.run_with_iobinding(binding)
        return dict(zip(output_names, binding.copy_outputs_to_cpu(), strict=True))


def check_single_onnxruntime() -> None:
    """Refuse to start when onnxruntime and onnxruntime-gpu are both installed: they overwrite each other."""
    from importlib.metadata import PackageNotFoundError, version

    installed = []
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed.append(f"{distribution}=={version(distribution)}")
        except PackageNotFoundError:
            continue
    if len(installed) > 1:
        raise RuntimeError(
            f"both {' and '.join(installed)} are installed; they overwrite each other's files. "
            "Uninstall both and install exactly one (pip install 'tau[cpu]' or 'tau[gpu]')."
        )
