"""Poll mode: follow the repository folder, loading what appeared or changed and unloading what vanished.

A change is applied only once it has been stable for one whole poll interval
(same files, sizes and modification times in two scans in a row), so a
version being copied in is not picked up half-written. Writing into a hidden
or non-numeric name (`.tmp-3`) and renaming it to `3` when complete is the
convention that makes this airtight; tau-export publishes that way.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from server.config_files import CONFIG_FILE_NAMES
from server.errors import ModelNotFoundError
from server.model_loader import MODEL_FILE_NAME
from server.repository import ModelRepository
from server.runtime import ModelLoadError

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def _stat(path: Path, label: str) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (label, stat.st_mtime_ns, stat.st_size)


def model_fingerprint(model_dir: Path) -> Fingerprint:
    """What poll mode watches in one model folder: config.json, config.pbtxt and each version's model file."""
    entries = [_stat(model_dir / name, name) for name in CONFIG_FILE_NAMES]
    try:
        children = sorted(model_dir.iterdir())
    except OSError:
        children = []
    for child in children:
        if child.is_dir() and child.name.isdigit():
            entries.append(_stat(child / MODEL_FILE_NAME, f"{child.name}/{MODEL_FILE_NAME}"))
    return tuple(entry for entry in entries if entry is not None)


def scan(repository: ModelRepository) -> dict[str, Fingerprint]:
    return {name: model_fingerprint(repository.root / name) for name in repository.folder_names()}


class RepositoryPoller:
    """Re-scans the repository every `interval_seconds` and applies stable changes."""

    def __init__(self, repository: ModelRepository, interval_seconds: float) -> None:
        self._repository = repository
        self._interval_seconds = interval_seconds
        self._applied = scan(repository)
        self._previous = dict(self._applied)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_seconds)
            await self.poll_once()

    async def poll_once(self) -> None:
        current = await asyncio.to_thread(scan, self._repository)
        for name, fingerprint in current.items():
            stable = self._previous.get(name) == fingerprint
            if stable and self._applied.get(name) != fingerprint:
                self._applied[name] = fingerprint
                log.info("poll: model %s changed; loading", name)
                try:
                    await self._repository.load(name)
                except (ModelLoadError, ModelNotFoundError) as error:
                    log.error("poll: model %s: %s", name, error)
        for name in [name for name in self._applied if name not in current and name not in self._previous]:
            del self._applied[name]
            log.info("poll: model %s removed; unloading", name)
            await self._repository.unload(name)
        self._previous = current
