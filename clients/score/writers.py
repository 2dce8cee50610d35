"""The final output, assembled in input order from the finished parts: Parquet or .npy, plus the errors file.

Parquet columns: `row` (the input row index), `file` (image folders only), then
each output flattened to one column per element (`probabilities_0`,
`probabilities_1`, ...; C order for multi-dimensional outputs), then `label` when a
label column was read, then with --top-k K: `top1_class`, `top1_score`
(`top1_label` too when the model has labels) up to K, from the first output.
A .npy output is the one selected output, shape (rows scored, *output shape).
Rows that failed are absent from both and listed in `<output>.errors.csv`.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clients.score.checkpoint import part_path
from clients.score.chunks import ChunkResult
from clients.score.durable import write_atomically
from clients.score.evaluation import Evaluator
from clients.score.options import ScoreOptions, ScoringError
from clients.score.parts import read_part, read_part_rows
from clients.score.signature import ModelSignature

log = logging.getLogger(__name__)


def top_k_columns(scores: np.ndarray, k: int, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """The k highest-scoring classes of each row (ties: the lower class index first)."""
    flat = scores.reshape(len(scores), -1)
    k = min(k, flat.shape[1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    names = np.asarray(labels, dtype=str) if len(labels) == flat.shape[1] else None
    columns: dict[str, np.ndarray] = {}
    for rank in range(k):
        classes = order[:, rank]
        columns[f"top{rank + 1}_class"] = classes.astype(np.int64)
        columns[f"top{rank + 1}_score"] = flat[np.arange(len(flat)), classes]
        if names is not None:
            columns[f"top{rank + 1}_label"] = names[classes]
    return columns


def result_table(result: ChunkResult, top_k: int, labels: Sequence[str]) -> pa.Table:
    columns: dict[str, np.ndarray] = {"row": result.rows}
    if result.row_names is not None:
        columns["file"] = result.row_names
    for name, values in result.outputs.items():
        by_column = np.ascontiguousarray(values.reshape(len(result.rows), -1).T)
        for index, column in enumerate(by_column):
            columns[f"{name}_{index}"] = column
    if result.labels is not None:
        columns["label"] = result.labels
    if top_k and result.outputs:
        columns.update(top_k_columns(next(iter(result.outputs.values())), top_k, labels))
    return pa.table(columns)


class OutputAssembler:
    """Reads the parts of chunks 0..n-1 in order and writes the output, errors file and metrics."""

    def __init__(self, options: ScoreOptions, signature: ModelSignature, chunk_count: int) -> None:
        self._options = options
        self._signature = signature
        self._parts = [part_path(options.parts_dir, chunk) for chunk in range(chunk_count)]
        missing = [path.name for path in self._parts if not path.is_file()]
        if missing:
            raise ScoringError(f"{options.parts_dir}: parts {missing[:5]} are missing; rerun to score them")

    def write(self, evaluator: Evaluator | None) -> tuple[int, int]:
        """Write the output and errors file; returns (rows scored, rows failed)."""
        if self._options.output_format == "npy":
            scored = self._write_npy(evaluator)
        else:
            scored = self._write_parquet(evaluator)
        failed = self._write_errors()
        return scored, failed

    def _evaluate(self, evaluator: Evaluator | None, result: ChunkResult) -> None:
        if evaluator is not None and result.labels is not None and result.outputs:
            evaluator.update(next(iter(result.outputs.values())), result.labels)

    def _empty_table(self) -> pa.Table:
        outputs = {
            spec.name: np.empty((0, int(np.prod([max(dim, 0) for dim in spec.shape], dtype=np.int64))))
            for spec in self._signature.outputs
        }
        empty = ChunkResult(-1, np.empty(0, np.int64), outputs, None, None, np.empty(0, np.int64), np.empty(0, str))
        return result_table(empty, 0, ())

    def _write_parquet(self, evaluator: Evaluator | None) -> int:
        scored = 0

        def write(file: IO[bytes]) -> None:
            nonlocal scored
            writer: pq.ParquetWriter | None = None
            try:
                for path in self._parts:
                    result = read_part(path)
                    self._evaluate(evaluator, result)
                    if not len(result.rows):
                        continue
                    table = result_table(result, self._options.top_k, self._signature.labels)
                    if writer is None:
                        writer = pq.ParquetWriter(file, table.schema)
                    writer.write_table(table)
                    scored += len(result.rows)
                if writer is None:
                    pq.write_table(self._empty_table(), file)
            finally:
                if writer is not None:  # also on failure: its file is still open here, not at garbage collection
                    writer.close()

        write_atomically(self._options.output, write)
        return scored

    def _write_npy(self, evaluator: Evaluator | None) -> int:
        counts = [read_part_rows(path) for path in self._parts]
        spec = self._signature.outputs[0]
        dtype = self._signature.dtype(spec)
        shape: tuple[int, ...] = tuple(max(dim, 0) for dim in spec.shape)
        for path, rows in zip(self._parts, counts, strict=True):
            if rows:  # the real shape, whatever dimensions the model left open
                shape = read_part(path).outputs[spec.name].shape[1:]
                break
        total = sum(counts)

        def write(file: IO[bytes]) -> None:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total, *shape)}
            np.lib.format.write_array_header_2_0(file, header)
            for path, rows in zip(self._parts, counts, strict=True):
                result = read_part(path)
                self._evaluate(evaluator, result)
                if rows:
                    file.write(np.ascontiguousarray(result.outputs[spec.name], dtype=dtype).data)

        write_atomically(self._options.output, write)
        return total

    def _error_arrays(self, part: Path) -> tuple[np.ndarray, np.ndarray]:
        with np.load(part, allow_pickle=False) as arrays:  # reads only these two members
            return arrays["error_row"], arrays["error_reason"]

    def _write_errors(self) -> int:
        failed = sum(len(self._error_arrays(part)[0]) for part in self._parts)
        if not failed:
            self._options.errors_path.unlink(missing_ok=True)  # a stale list from an earlier run would mislead
            return 0

        def write(file: IO[bytes]) -> None:
            text = io.TextIOWrapper(file, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(["row", "reason"])
            for part in self._parts:
                rows, reasons = self._error_arrays(part)
                writer.writerows(zip(rows.tolist(), reasons.tolist(), strict=True))
            text.flush()
            text.detach()  # leave the file open for write_atomically's fsync

        write_atomically(self._options.errors_path, write)
        return failed
