"""A chunk: a fixed run of input rows, the unit that is read, scored, written and checkpointed."""

from __future__ import annotations

from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class Chunk:
    """Rows [first_row, first_row + rows) of the input, converted for the model.

    Chunk k always holds rows [k * chunk_rows, (k + 1) * chunk_rows): a rerun meets
    the same chunk ids, which is what the checkpoint records.
    """

    chunk_id: int
    first_row: int
    rows: int
    inputs: dict[str, np.ndarray]  # input name -> (rows, *shape), the model's dtype
    labels: np.ndarray | None = None  # (rows,): float (NaN: none) or str ('': none)
    row_names: np.ndarray | None = None  # (rows,) str, e.g. the image file of each row
    row_errors: dict[int, str] = field(default_factory=dict)  # row within the chunk -> why it cannot be scored


@dataclass
class ChunkResult:
    """What scoring a chunk produced: the rows that were scored, and why the others were not."""

    chunk_id: int
    rows: np.ndarray  # (n,) int64 absolute row indices, ascending
    outputs: dict[str, np.ndarray]  # output name -> (n, *shape)
    labels: np.ndarray | None
    row_names: np.ndarray | None
    error_rows: np.ndarray  # (m,) int64 absolute row indices
    error_reasons: np.ndarray  # (m,) str


class ChunkReader(Protocol):
    """One input format, read a chunk at a time."""

    total_rows: int | None  # None until the end when unknown up front (CSV)
    chunk_count: int | None  # how many chunks the input has; None until the end when unknown up front

    def identity(self) -> dict[str, Any]:
        """What identifies this input for the checkpoint: path, size, modification time..."""
        ...

    def chunks(self, skip: Set[int]) -> Iterator[Chunk]:
        """Every chunk in order, except those in `skip` (passed over without converting them)."""
        ...

    def close(self) -> None: ...


def row_shape(shape: tuple[int, ...], elements: int, what: str) -> tuple[int, ...]:
    """The input's per-row shape for rows of `elements` values; one -1 dimension is inferred."""
    unknown = [i for i, dim in enumerate(shape) if dim < 0]
    known = int(np.prod([dim for dim in shape if dim > 0], dtype=np.int64))
    if not unknown:
        if known != elements:
            raise ValueError(f"{what}: {elements} values per row, the model expects {known} (shape {list(shape)})")
        return shape
    if len(unknown) > 1 or elements % known:
        raise ValueError(f"{what}: cannot shape {elements} values per row into the model's {list(shape)}")
    return tuple(elements // known if dim < 0 else dim for dim in shape)
