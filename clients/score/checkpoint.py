"""Which chunks are durably done, and with which arguments and input: what makes a rerun resume safely.

Layout: `<output>.parts/` holds `part-<chunk>.npz` files and `checkpoint.json`. A
chunk is claimed in the checkpoint only after its part file has been written,
fsynced and renamed into place, so a crash at any moment loses at most the chunks
in flight, which the rerun scores again. The checkpoint also records a fingerprint
of everything that decides the output (input identity, model, chunk and request
sizes...); a rerun whose fingerprint differs is refused instead of mixing outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from clients.score.durable import write_json_atomically
from clients.score.options import UsageError

CHECKPOINT_FILE_NAME = "checkpoint.json"
CHECKPOINT_FORMAT = 1


class ResumeMismatchError(UsageError):
    """A checkpoint made by a run with other arguments or another input."""


def part_path(parts_dir: Path, chunk_id: int) -> Path:
    return parts_dir / f"part-{chunk_id:06d}.npz"


def _normalised(data: Any) -> Any:
    """As it will read back from JSON (tuples become lists), so comparisons are like for like."""
    return json.loads(json.dumps(data, sort_keys=True))


def _differences(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    lines = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"  {prefix}{key}: {old!r} then, {new!r} now")
    return lines


def _ranges(chunk_ids: set[int]) -> list[list[int]]:
    """[[first, last], ...] runs of consecutive ids: a long run's checkpoint stays a few bytes."""
    runs: list[list[int]] = []
    for chunk in sorted(chunk_ids):
        if runs and runs[-1][1] == chunk - 1:
            runs[-1][1] = chunk
        else:
            runs.append([chunk, chunk])
    return runs


def _chunk_ids(runs: list[list[int]]) -> set[int]:
    return {chunk for first, last in runs for chunk in range(first, last + 1)}


class Checkpoint:
    """The completed chunk ids of one output, kept on disk in the parts folder."""

    def __init__(self, parts_dir: Path, fingerprint: dict[str, Any], completed: set[int]) -> None:
        self.parts_dir = parts_dir
        self.path = parts_dir / CHECKPOINT_FILE_NAME
        self.fingerprint = fingerprint
        self.completed = completed

    @classmethod
    def open(cls, parts_dir: Path, fingerprint: dict[str, Any], restart: bool) -> Checkpoint:
        """Resume the checkpoint in `parts_dir`, or start a new one (always, with `restart`).

        Raises ResumeMismatchError when the checkpoint was made with another fingerprint.
        """
        fingerprint = _normalised(fingerprint)
        path = parts_dir / CHECKPOINT_FILE_NAME
        if restart and parts_dir.exists():
            shutil.rmtree(parts_dir)
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("format") != CHECKPOINT_FORMAT or saved.get("fingerprint") != fingerprint:
                changes = _differences(saved.get("fingerprint", {}), fingerprint)
                raise ResumeMismatchError(
                    f"{parts_dir} holds a run made with other arguments or another input:\n"
                    + "\n".join(changes or ["  (checkpoint format)"])
                    + f"\nRerun with the original arguments to resume its {len(_chunk_ids(saved['completed']))} "
                    "finished chunks, or pass --restart to discard them."
                )
            # A claimed part that is gone (deleted by hand) is simply scored again.
            claimed = _chunk_ids(saved["completed"])
            completed = {chunk for chunk in claimed if part_path(parts_dir, chunk).is_file()}
            return cls(parts_dir, fingerprint, completed)
        if parts_dir.exists():
            # No checkpoint: the run died before claiming anything, so nothing here is trusted.
            shutil.rmtree(parts_dir)
        parts_dir.mkdir(parents=True)
        checkpoint = cls(parts_dir, fingerprint, set())
        checkpoint.save()
        return checkpoint

    def save(self) -> None:
        completed = _ranges(self.completed)
        write_json_atomically(
            self.path, {"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "completed": completed}
        )

    def mark_done(self, chunk_id: int) -> None:
        """Claim a chunk whose part file is already durably in place."""
        self.completed.add(chunk_id)
        self.save()

    def remove(self) -> None:
        """Once the final output is in place: the parts and the checkpoint are no longer needed."""
        shutil.rmtree(self.parts_dir, ignore_errors=True)
