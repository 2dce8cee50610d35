"""The model repository: which model versions exist, which serve, and the safe way to change that.

`<repo>/<model>/<version>/model.onnx` (+ `<repo>/<model>/config.json`).
Loading a model loads its new versions beside the serving ones, warms them,
and only then routes new requests to them; the versions they replace drain
(queued and running requests finish) before they are released. A model or
version that fails to load is reported with its reason and never takes down
what was serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from server.config import ConfigError, ModelConfig, parse_model_config
from server.config_files import load_model_config
from server.errors import ModelNotFoundError, ModelNotReadyError
from server.metrics import record_model_failed, record_model_unloaded
from server.model_loader import LoadedModel, load_model_version, version_numbers
from server.runtime import ModelLoadError

log = logging.getLogger(__name__)


class ModelState(StrEnum):
    """States as the V2 repository extension names them."""

    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass
class ModelVersionStatus:
    """One row of the repository index."""

    name: str
    version: str
    state: ModelState
    reason: str = ""
    model: LoadedModel | None = None


class ModelRepository:
    """Name/version -> loaded model, for the model folders under `root`."""

    def __init__(self, root: Path, metrics_enabled: bool = True, on_change: Callable[[], None] | None = None) -> None:
        self.root = root
        self._metrics_enabled = metrics_enabled
        self._on_change = on_change or (lambda: None)
        # model -> version -> status; a model with no rows has never been loaded (or was unloaded).
        self._models: dict[str, dict[str, ModelVersionStatus]] = {}
        self._failures: dict[str, str] = {}  # model-level failures (bad config, no versions)
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        # Set on close: loads still running in worker threads give up between warmup batches.
        self._abandon_loads = threading.Event()

    # -- lookups (synchronous: called on every request) --

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The ready model for `name` (the newest ready version when `version` is empty)."""
        rows = self._models.get(name)
        if rows is None and name not in self._failures:
            if self._folder(name).is_dir():
                raise ModelNotReadyError(f"model '{name}' is not loaded")
            raise ModelNotFoundError(f"unknown model '{name}'")
        rows = rows or {}
        if version:
            status = rows.get(version)
            if status is None:
                raise ModelNotFoundError(f"model '{name}' has no version '{version}'; available: {list(rows)}")
            candidates = [status]
        else:
            candidates = [rows[key] for key in sorted(rows, key=int, reverse=True)]
        for status in candidates:
            if status.state is ModelState.READY and status.model is not None:
                return status.model
        reasons = "; ".join(s.reason for s in candidates if s.reason) or self._failures.get(name, "")
        raise ModelNotReadyError(f"model '{name}' is not ready: {reasons or 'no ready version'}")

    def ready_versions(self, name: str) -> list[str]:
        rows = self._models.get(name, {})
        return [v for v in sorted(rows, key=int) if rows[v].state is ModelState.READY]

    def model_names(self) -> list[str]:
        return sorted(set(self._models) | set(self._failures))

    def folder_names(self) -> list[str]:
        """Every model folder in the repository, loaded or not."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def index(self) -> list[ModelVersionStatus]:
        """Every model folder and version, with its state; folders never loaded appear as UNAVAILABLE."""
        rows: list[ModelVersionStatus] = []
        for name in sorted(set(self.folder_names()) | set(self._models) | set(self._failures)):
            versions = self._models.get(name, {})
            if name in self._failures and not versions:
                rows.append(ModelVersionStatus(name, "", ModelState.UNAVAILABLE, self._failures[name]))
            elif not versions:
                rows.append(ModelVersionStatus(name, "", ModelState.UNAVAILABLE, "not loaded"))
            rows.extend(versions[v] for v in sorted(versions, key=int))
        return rows

    def all_ready(self, required: tuple[str, ...] = ()) -> bool:
        """Server readiness.

        With `required` models named, exactly those must have a ready version. Otherwise (Triton's
        strict readiness) every model asked to load must have a ready version and none may have
        failed. A version loading beside a serving one does not make the server unready, so a hot
        reload never takes a pod out of its Service.
        """
        if required:
            return all(self.ready_versions(name) for name in required)
        if self._failures:
            return False
        for rows in self._models.values():
            live = [s for s in rows.values() if s.reason != "unloaded"]
            if not live:
                continue
            if not any(s.state is ModelState.READY for s in live):
                return False
            if any(s.state is ModelState.UNAVAILABLE for s in live):
                return False
        return True

    # -- changes (asynchronous, one at a time per model) --

    def _folder(self, name: str) -> Path:
        return self.root / name

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load_all(self) -> None:
        """Load every model folder; failures are recorded, not raised."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        await self.load_models(self.folder_names())

    async def load_models(self, names: list[str]) -> None:
        for name in names:
            try:
                await self.load(name)
            except (ModelLoadError, ModelNotFoundError) as error:
                log.error("model %s: %s", name, error)

    async def load(self, name: str, config_override: dict[str, Any] | None = None) -> None:
        """Load or reload `name`: its versions per the version policy, beside what serves now.

        Raises ModelNotFoundError for a folder that does not exist, ModelLoadError when the
        config is bad or any version failed (what loaded still serves; what served before keeps
        serving for each version that failed).
        """
        if "/" in name or name.startswith(".") or not name:
            raise ModelNotFoundError(f"invalid model name {name!r}")
        async with self._lock(name):
            model_dir = self._folder(name)
            if not model_dir.is_dir():
                raise ModelNotFoundError(f"no model folder '{name}' in repository {self.root}")
            try:
                config = (
                    parse_model_config(config_override, name)
                    if config_override is not None
                    else load_model_config(model_dir)
                )
            except ConfigError as error:
                self._fail_model(name, f"bad config: {error}")
                raise ModelLoadError(f"model '{name}': bad config: {error}") from error
            wanted = config.version_policy.select(version_numbers(model_dir))
            if not wanted:
                self._fail_model(name, f"no version folder with model.onnx matches the version policy in {model_dir}")
                raise ModelLoadError(f"model '{name}': {self._failures[name]}")
            self._failures.pop(name, None)
            failures = await self._load_versions(name, model_dir, config, wanted)
            if failures:
                # A version that should replace others failed: the others keep serving.
                log.warning("model %s: keeping the versions that served, since a new one failed", name)
            else:
                self._retire_unwanted(name, {str(v) for v in wanted})
            self._on_change()
            if failures:
                raise ModelLoadError(f"model '{name}': " + "; ".join(failures))

    async def _load_versions(self, name: str, model_dir: Path, config: ModelConfig, wanted: list[int]) -> list[str]:
        rows = self._models.setdefault(name, {})
        failures: list[str] = []
        for version in wanted:
            key = str(version)
            serving = rows.get(key)
            if serving is None or serving.model is None:
                rows[key] = ModelVersionStatus(name, key, ModelState.LOADING)
                self._on_change()
            try:
                model = await asyncio.to_thread(
                    load_model_version, model_dir, version, config, self._metrics_enabled, self._abandon_loads
                )
            except ModelLoadError as error:
                failures.append(f"version {version}: {error}")
                log.error("model %s version %d failed to load: %s", name, version, error)
                if self._metrics_enabled:
                    record_model_failed(name, key)
                if serving is not None and serving.model is not None:
                    # The old instance of this version keeps serving; say why the new one is not.
                    serving.reason = f"reload failed, previous load still serving: {error}"
                else:
                    rows[key] = ModelVersionStatus(name, key, ModelState.UNAVAILABLE, str(error))
                continue
            # The swap: from here on new requests get the new instance.
            rows[key] = ModelVersionStatus(name, key, ModelState.READY, model=model)
            if serving is not None and serving.model is not None:
                self._retire(serving.model)
        return failures

    def _fail_model(self, name: str, reason: str) -> None:
        log.error("model %s failed to load: %s", name, reason)
        if not any(s.state is ModelState.READY for s in self._models.get(name, {}).values()):
            self._failures[name] = reason
            if self._metrics_enabled:
                record_model_failed(name, "")
        self._on_change()

    def _retire_unwanted(self, name: str, wanted: set[str]) -> None:
        rows = self._models.get(name, {})
        for key in [k for k in rows if k not in wanted]:
            status = rows[key]
            if status.model is not None and status.state is ModelState.READY:
                status.state = ModelState.UNLOADING
                self._retire(status.model, status)
            else:
                del rows[key]

    def _retire(self, model: LoadedModel, status: ModelVersionStatus | None = None) -> None:
        """Let `model` finish what it has, then release it; `status` (if given) ends as unloaded."""

        async def drain_and_close() -> None:
            await model.batcher.drain()
            await model.batcher.close()
            if status is not None:
                rows = self._models.get(model.name, {})
                if rows.get(model.version) is status:
                    status.state, status.reason, status.model = ModelState.UNAVAILABLE, "unloaded", None
                if self._metrics_enabled:
                    record_model_unloaded(model.name, model.version)
            log.info("model %s version %s: released", model.name, model.version)
            self._on_change()

        task = asyncio.get_running_loop().create_task(drain_and_close())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str, fail_queued: bool = False) -> None:
        """Stop routing to `name`; queued and running requests finish (or, with `fail_queued`, queued
        ones get UNAVAILABLE); then its versions are released."""
        async with self._lock(name):
            rows = self._models.get(name)
            if rows is None and name not in self._failures:
                if self._folder(name).is_dir():
                    return  # not loaded: nothing to do, as in Triton
                raise ModelNotFoundError(f"unknown model '{name}'")
            self._failures.pop(name, None)
            for status in list((rows or {}).values()):
                if status.model is not None and status.state is ModelState.READY:
                    status.state = ModelState.UNLOADING
                    if fail_queued:
                        status.model.batcher.fail_queued(ModelNotReadyError(f"model '{name}' is being unloaded"))
                    self._retire(status.model, status)
                elif status.state is not ModelState.UNLOADING:
                    status.state, status.reason, status.model = ModelState.UNAVAILABLE, "unloaded", None
            self._on_change()
        await self.wait_released()

    async def wait_released(self) -> None:
        """Wait until every retiring version has drained and been released."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        self._abandon_loads.set()
        await self.wait_released()
        for rows in self._models.values():
            for status in rows.values():
                if status.model is not None:
                    await status.model.batcher.close()
