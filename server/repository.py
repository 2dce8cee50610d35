"""The model repository: finds `<repo>/<model>/<version>/model.onnx`, loads models, answers lookups.

A model that fails to load is kept in the index as UNAVAILABLE with its
reason; the others serve regardless.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from server.batcher import Batcher
from server.config import ConfigError, ModelConfig, load_model_config
from server.errors import ModelNotFoundError, ModelNotReadyError
from server.metrics import ModelMetrics, record_model_failed, record_model_loaded, set_queue_capacity
from server.runtime import ModelLoadError, OnnxSession
from server.statistics import ModelStatistics

log = logging.getLogger(__name__)

MODEL_FILE_NAME = "model.onnx"


class ModelState(StrEnum):
    """States as the V2 repository extension names them."""

    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass
class LoadedModel:
    """A model version that is ready to run."""

    name: str
    version: str
    config: ModelConfig
    session: OnnxSession
    batcher: Batcher
    statistics: ModelStatistics


@dataclass
class ModelVersionStatus:
    """One row of the repository index."""

    name: str
    version: str
    state: ModelState
    reason: str = ""
    model: LoadedModel | None = None


def _version_dirs(model_dir: Path) -> list[Path]:
    """Numeric subfolders holding a model file, oldest first."""
    versions = [
        path
        for path in model_dir.iterdir()
        if path.is_dir() and path.name.isdigit() and (path / MODEL_FILE_NAME).is_file()
    ]
    return sorted(versions, key=lambda path: int(path.name))


def load_model_version(model_dir: Path, version_dir: Path, config: ModelConfig, metrics_enabled: bool) -> LoadedModel:
    """Open one version's ONNX file with its config; raises ModelLoadError."""
    started = time.perf_counter()
    session = OnnxSession(version_dir / MODEL_FILE_NAME, config)
    name, version = model_dir.name, version_dir.name
    statistics = ModelStatistics(metrics=ModelMetrics.for_model(name, version) if metrics_enabled else None)
    if metrics_enabled:
        record_model_loaded(
            name,
            version,
            provider=session.active_provider,
            requested=",".join(config.execution_providers),
            load_seconds=time.perf_counter() - started,
        )
        set_queue_capacity(name, version, session.config.dynamic_batching.max_queue_size)
    batcher = Batcher(session.run, session.config, statistics, label=f"{model_dir.name}/{version_dir.name}")
    return LoadedModel(
        name=model_dir.name,
        version=version_dir.name,
        config=session.config,
        session=session,
        batcher=batcher,
        statistics=statistics,
    )


class ModelRepository:
    """Name/version -> loaded model, for every model folder under `root`."""

    def __init__(self, root: Path, metrics_enabled: bool = True) -> None:
        self.root = root
        self._metrics_enabled = metrics_enabled
        self._models: dict[str, list[ModelVersionStatus]] = {}

    def load_all(self) -> None:
        """Load the newest version of every model folder; failures are recorded, not raised."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self._models[model_dir.name] = [self._load_newest(model_dir)]

    def _load_newest(self, model_dir: Path) -> ModelVersionStatus:
        name = model_dir.name
        versions = _version_dirs(model_dir)
        if not versions:
            return self._failed(name, "", f"no version folder with {MODEL_FILE_NAME} in {model_dir}")
        newest = versions[-1]
        try:
            config = load_model_config(model_dir)
            model = load_model_version(model_dir, newest, config, self._metrics_enabled)
        except (ConfigError, ModelLoadError) as error:
            return self._failed(name, newest.name, str(error))
        return ModelVersionStatus(name=name, version=newest.name, state=ModelState.READY, model=model)

    def _failed(self, name: str, version: str, reason: str) -> ModelVersionStatus:
        log.error("model %s version %s failed to load: %s", name, version or "-", reason)
        if self._metrics_enabled:
            record_model_failed(name, version)
        return ModelVersionStatus(name=name, version=version, state=ModelState.UNAVAILABLE, reason=reason)

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The ready model for `name` (newest ready version when `version` is empty)."""
        statuses = self._models.get(name)
        if not statuses:
            raise ModelNotFoundError(f"unknown model '{name}'")
        if version:
            matching = [status for status in statuses if status.version == version]
            if not matching:
                available = [status.version for status in statuses]
                raise ModelNotFoundError(f"model '{name}' has no version '{version}'; available: {available}")
            statuses = matching
        for status in reversed(statuses):
            if status.model is not None and status.state is ModelState.READY:
                return status.model
        reasons = "; ".join(status.reason for status in statuses if status.reason)
        raise ModelNotReadyError(f"model '{name}' is not ready: {reasons or 'no ready version'}")

    def model_names(self) -> list[str]:
        return list(self._models)

    def versions(self, name: str) -> list[str]:
        return [status.version for status in self._models.get(name, []) if status.version]

    def index(self) -> list[ModelVersionStatus]:
        return [status for statuses in self._models.values() for status in statuses]

    def all_ready(self) -> bool:
        """True when every model in the repository is serving (what readiness probes ask)."""
        return all(status.state is ModelState.READY for status in self.index())

    async def close(self) -> None:
        for status in self.index():
            if status.model is not None:
                await status.model.batcher.close()
