"""One finished chunk on disk: an uncompressed .npz written atomically, read back at assembly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clients.score.chunks import ChunkResult
from clients.score.durable import write_atomically


def write_part(path: Path, result: ChunkResult) -> None:
    """Write a chunk's result so that the file either is complete or does not exist."""
    arrays: dict[str, np.ndarray] = {
        "chunk_id": np.asarray(result.chunk_id, np.int64),
        "row": result.rows,
        "output_names": np.asarray(list(result.outputs), dtype=str),
        "error_row": result.error_rows,
        "error_reason": result.error_reasons,
    }
    for index, values in enumerate(result.outputs.values()):
        arrays[f"output_{index}"] = np.ascontiguousarray(values)
    if result.labels is not None:
        arrays["label"] = result.labels
    if result.row_names is not None:
        arrays["row_name"] = result.row_names
    write_atomically(path, lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]


def read_part(path: Path) -> ChunkResult:
    with np.load(path, allow_pickle=False) as part:
        names = [str(name) for name in part["output_names"]]
        return ChunkResult(
            chunk_id=int(part["chunk_id"]),
            rows=part["row"],
            outputs={name: part[f"output_{index}"] for index, name in enumerate(names)},
            labels=part["label"] if "label" in part else None,
            row_names=part["row_name"] if "row_name" in part else None,
            error_rows=part["error_row"],
            error_reasons=part["error_reason"],
        )


def read_part_rows(path: Path) -> int:
    """How many rows a part scored, without reading its outputs."""
    with np.load(path, allow_pickle=False) as part:
        return int(part["row"].shape[0])
