"""Turns one version folder into a LoadedModel: session, warmup, batcher, statistics, metrics.

Blocking work (ONNX Runtime session creation, warmup runs): the repository
calls it from a worker thread so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.batcher import Batcher
from server.config import ModelConfig, TensorSpec
from server.datatypes import NUMPY_BY_DATATYPE
from server.metrics import ModelMetrics, record_model_loaded, set_queue_capacity
from server.runtime import ModelLoadError, OnnxSession
from server.statistics import ModelStatistics

log = logging.getLogger(__name__)

MODEL_FILE_NAME = "model.onnx"


@dataclass
class LoadedModel:
    """A model version that is ready to run."""

    name: str
    version: str
    config: ModelConfig
    session: OnnxSession
    batcher: Batcher
    statistics: ModelStatistics


def version_numbers(model_dir: Path) -> list[int]:
    """Numeric subfolders holding a model file, ascending. Hidden or other names (.tmp-3) are ignored."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(path.name)
        for path in model_dir.iterdir()
        if path.is_dir() and path.name.isdigit() and (path / MODEL_FILE_NAME).is_file()
    )


def _warmup_tensor(spec: TensorSpec, batch_size: int, batched: bool, data: str) -> np.ndarray:
    dims = [dim if dim > 0 else 1 for dim in spec.shape]
    shape = [batch_size, *dims] if batched else dims
    dtype = NUMPY_BY_DATATYPE[spec.datatype]
    if data == "zero":
        return np.zeros(shape, dtype)
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.integers(0, 8, size=shape).astype(dtype)


def warm_up(session: OnnxSession, abandon: threading.Event | None = None) -> float:
    """Run the configured warmup batches; returns the seconds it took. Raises ModelLoadError on failure,
    or when `abandon` is set (the server is shutting down) between two batches."""
    config = session.config
    assert config.inputs is not None and config.outputs is not None
    batched = bool(config.max_batch_size)
    started = time.perf_counter()
    output_names = [spec.name for spec in config.outputs]
    for batch_size in config.warmup.batch_sizes:
        if abandon is not None and abandon.is_set():
            raise ModelLoadError("warmup abandoned: the server is shutting down")
        if batched and batch_size > (config.max_batch_size or 0):
            raise ModelLoadError(f"warmup: batch size {batch_size} is over max_batch_size {config.max_batch_size}")
        inputs = {spec.name: _warmup_tensor(spec, batch_size, batched, config.warmup.data) for spec in config.inputs}
        try:
            session.run(inputs, output_names)
        except Exception as error:  # ONNX Runtime's errors are untyped
            raise ModelLoadError(f"warmup at batch size {batch_size} failed: {error}") from error
    return time.perf_counter() - started


def load_model_version(
    model_dir: Path, version: int, config: ModelConfig, metrics_enabled: bool, abandon: threading.Event | None = None
) -> LoadedModel:
    """Open, check and warm one version; raises ModelLoadError. Blocking."""
    started = time.perf_counter()
    name = model_dir.name
    session = OnnxSession(model_dir / str(version) / MODEL_FILE_NAME, config)
    warmup_seconds = warm_up(session, abandon)
    if session.config.warmup.batch_sizes:
        log.info("model %s version %d: warmed up in %.3fs", name, version, warmup_seconds)
    statistics = ModelStatistics(metrics=ModelMetrics.for_model(name, str(version)) if metrics_enabled else None)
    if metrics_enabled:
        record_model_loaded(
            name,
            str(version),
            provider=session.active_provider,
            requested=",".join(config.execution_providers),
            load_seconds=time.perf_counter() - started,
        )
        set_queue_capacity(name, str(version), session.config.dynamic_batching.max_queue_size)
    batcher = Batcher(session.run, session.config, statistics, label=f"{name}/{version}")
    return LoadedModel(
        name=name,
        version=str(version),
        config=session.config,
        session=session,
        batcher=batcher,
        statistics=statistics,
    )
