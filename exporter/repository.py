"""The on-disk model repository: version numbering, config.json, and atomic publication of a version.

Layout (Triton-like)::

    <repository>/<name>/config.json
    <repository>/<name>/<version>/model.onnx
    <repository>/<name>/<version>/parity_report.json

Work in progress lives in hidden `.tmp-*` directories beside the versions; readers should only
consider directories whose names are all digits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.errors import ExportArgumentError, RepositoryError

MODEL_FILENAME = "model.onnx"
PARITY_REPORT_FILENAME = "parity_report.json"
CONFIG_FILENAME = "config.json"
PLATFORM = "onnxruntime_onnx"

# A plain directory name that cannot escape the repository or collide with the hidden work dirs.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as config.json describes it; `shape` excludes the batch dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def check_model_name(name: str) -> None:
    if not _MODEL_NAME.fullmatch(name) or name in {".", ".."}:
        raise ExportArgumentError(
            f"model name {name!r} is not a plain directory name; "
            "expected letters, digits, '_', '-' or '.', not starting with '.' or '-'"
        )


def existing_versions(repository: Path, name: str) -> list[int]:
    """Published version numbers of a model, ascending; empty when the model has none."""
    model_dir = repository / name
    if not model_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in model_dir.iterdir() if entry.is_dir() and _is_version_name(entry.name))


def _is_version_name(directory_name: str) -> bool:
    return directory_name.isascii() and directory_name.isdigit()


def choose_version(repository: Path, name: str, requested: int | None, *, overwrite: bool) -> int:
    """The version to publish: `requested`, or one past the highest existing version (1 for a new model)."""
    versions = existing_versions(repository, name)
    if requested is None:
        return versions[-1] + 1 if versions else 1
    if requested in versions and not overwrite:
        raise RepositoryError(
            f"version {requested} of model {name!r} already exists in {repository}; "
            "choose another version, omit it to use the next free one, or allow overwriting"
        )
    return requested


def model_config(
    *,
    name: str,
    max_batch_size: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    labels: Sequence[str] | None,
) -> dict[str, Any]:
    """config.json's content; keys in the order a reader expects them."""
    config: dict[str, Any] = {
        "name": name,
        "platform": PLATFORM,
        "max_batch_size": max_batch_size,
        "inputs": [spec.to_json_dict() for spec in inputs],
        "outputs": [spec.to_json_dict() for spec in outputs],
    }
    if labels is not None:
        config["labels"] = list(labels)
    return config


def publish_version(files: Sequence[Path], repository: Path, name: str, version: int, *, overwrite: bool) -> Path:
    """Copy `files` into `<repository>/<name>/<version>/`, which appears all at once or not at all.

    The files are staged in a hidden directory beside the versions (same filesystem), then renamed
    into place. Replacing an existing version takes two renames, so for a moment the version is absent
    but never half-written.
    """
    model_dir = repository / name
    target = model_dir / str(version)
    staging: Path | None = None
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
        staging.chmod(0o755)  # mkdtemp makes it private; a server running as another user must read it
        for file in files:
            shutil.copyfile(file, staging / file.name)
        if target.exists():
            if not overwrite:
                raise RepositoryError(f"version {version} of model {name!r} appeared in {model_dir} meanwhile")
            _replace_directory(staging, target)
        else:
            # rename refuses a non-empty target, so a concurrent publisher of the same version loses cleanly.
            os.rename(staging, target)
        staging = None
    except OSError as error:
        raise RepositoryError(
            f"cannot publish version {version} of model {name!r} into {model_dir}: {error}"
        ) from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_directory(new: Path, target: Path) -> None:
    retired = target.with_name(f".old-{target.name}-{uuid.uuid4().hex}")
    os.rename(target, retired)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(retired, target)  # put the old version back rather than leave none
        raise
    shutil.rmtree(retired, ignore_errors=True)


def write_config(repository: Path, name: str, config: dict[str, Any]) -> Path:
    """Write (or replace) `<repository>/<name>/config.json` atomically."""
    model_dir = repository / name
    destination = model_dir / CONFIG_FILENAME
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(destination, render_config(config))
    except OSError as error:
        raise RepositoryError(f"cannot write {destination}: {error}") from error
    return destination


def render_config(config: dict[str, Any]) -> str:
    """config.json text: one top-level key per line, each value on that line, so a person can scan it."""
    entries = [f"  {json.dumps(key)}: {json.dumps(value, allow_nan=False)}" for key, value in config.items()]
    return "{\n" + ",\n".join(entries) + "\n}\n"


def write_text_atomically(destination: Path, text: str) -> None:
    """Write to a temporary file beside `destination`, then rename it over `destination`."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{destination.name}-", dir=destination.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; readers may be other users
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
