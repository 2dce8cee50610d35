"""Chunks in, durable parts out: requests packed to --request-rows, at most --concurrency in flight.

Several chunks are in flight at once (enough rows to keep every request slot busy,
plus the one being read), so the server's batcher always has work queued while
memory stays bounded by a few chunks. A request the model rejects is retried row
by row to isolate the bad rows (a row that fails alone is tried alone twice more,
since the server may have batched it with someone else's bad row); every other
failure stops the run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from clients.score.backends import RowsRejected, ScoringBackend
from clients.score.chunks import Chunk, ChunkResult
from clients.score.options import ScoringError

# Rows of one request: a contiguous run (no copy) or, around failed rows, the indices to gather.
RowSelection = slice | np.ndarray
# (rows scored, their outputs in pieces, rows that failed -> why)
RequestAnswer = tuple[np.ndarray, list[dict[str, np.ndarray]], dict[int, str]]
# How often a row that failed in a one-row request is tried again by itself before it counts as bad.
ISOLATED_RETRIES = 2


def _non_finite_rows(inputs: dict[str, np.ndarray], rows: int) -> dict[int, str]:
    errors: dict[int, str] = {}
    for name, values in inputs.items():
        if values.dtype.kind != "f":
            continue
        bad = ~np.isfinite(values.reshape(rows, -1)).all(axis=1)
        for row in np.flatnonzero(bad):
            errors.setdefault(int(row), f"NaN or infinite value in input '{name}' (--reject-nan)")
    return errors


def _selections(good_rows: np.ndarray, rows: int, request_rows: int) -> list[RowSelection]:
    if len(good_rows) == rows:
        return [slice(start, min(start + request_rows, rows)) for start in range(0, rows, request_rows)]
    return [good_rows[start : start + request_rows] for start in range(0, len(good_rows), request_rows)]


def _row_indices(selection: RowSelection) -> np.ndarray:
    if isinstance(selection, slice):
        return np.arange(selection.start, selection.stop, dtype=np.int64)
    return selection.astype(np.int64)


class ChunkScorer:
    """Scores one chunk's rows through a backend, sharing `concurrency` request slots with other chunks."""

    def __init__(self, backend: ScoringBackend, request_rows: int, concurrency: int, reject_nan: bool) -> None:
        self._backend = backend
        self._request_rows = request_rows
        self._slots = asyncio.Semaphore(concurrency)
        self._isolation = asyncio.Lock()
        self._reject_nan = reject_nan

    async def _infer(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        async with self._slots:
            outputs = await self._backend.infer(inputs)
        for name, values in outputs.items():
            if values.shape[:1] != (rows,):
                raise ScoringError(f"output '{name}' has shape {list(values.shape)} for a request of {rows} rows")
        return outputs

    async def _score_request(self, chunk: Chunk, selection: RowSelection) -> RequestAnswer:
        """(rows scored, their outputs in pieces, rows that failed -> why) for one request's rows."""
        rows = _row_indices(selection)
        inputs = {name: values[selection] for name, values in chunk.inputs.items()}
        try:
            return rows, [await self._infer(inputs, len(rows))], {}
        except RowsRejected as rejected:
            if len(rows) == 1:
                return await self._score_alone(chunk, int(rows[0]), str(rejected))
        # Isolate the bad rows: one request per row (each takes its own slot).
        singles = await asyncio.gather(*(self._score_request(chunk, rows[i : i + 1]) for i in range(len(rows))))
        scored = np.concatenate([single[0] for single in singles])
        pieces = [piece for single in singles for piece in single[1]]
        errors = {row: reason for single in singles for row, reason in single[2].items()}
        return scored, pieces, errors

    async def _score_alone(self, chunk: Chunk, row: int, reason: str) -> RequestAnswer:
        """A one-row request that failed, tried again with none of our other rejected rows in flight.

        The server's batcher may have put it in one batch with a bad row, and a failing
        batch fails every request in it; a row that is itself bad fails every time.
        """
        inputs = {name: values[row : row + 1] for name, values in chunk.inputs.items()}
        for _ in range(ISOLATED_RETRIES):
            async with self._isolation:
                try:
                    return np.asarray([row], np.int64), [await self._infer(inputs, 1)], {}
                except RowsRejected as rejected:
                    reason = str(rejected)
        return np.empty(0, np.int64), [], {row: reason}

    async def score(self, chunk: Chunk) -> ChunkResult:
        errors = dict(chunk.row_errors)
        if self._reject_nan:
            for row, reason in _non_finite_rows(chunk.inputs, chunk.rows).items():
                errors.setdefault(row, reason)
        good = np.ones(chunk.rows, bool)
        good[list(errors)] = False
        selections = _selections(np.flatnonzero(good), chunk.rows, self._request_rows)
        answers = await asyncio.gather(*(self._score_request(chunk, selection) for selection in selections))
        pieces = [piece for answer in answers for piece in answer[1]]
        for answer in answers:
            errors.update(answer[2])
        scored = np.concatenate([answer[0] for answer in answers]) if answers else np.empty(0, np.int64)
        outputs = {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]} if pieces else {}
        failed = sorted(errors)
        return ChunkResult(
            chunk_id=chunk.chunk_id,
            rows=scored + chunk.first_row,
            outputs=outputs,
            labels=chunk.labels[scored] if chunk.labels is not None else None,
            row_names=chunk.row_names[scored] if chunk.row_names is not None else None,
            error_rows=np.asarray(failed, np.int64) + chunk.first_row,
            error_reasons=np.asarray([errors[row] for row in failed], dtype=str),
        )


def chunks_in_flight(concurrency: int, request_rows: int, chunk_rows: int) -> int:
    """Enough chunks to fill every request slot, plus one being read: the bound on memory."""
    return max(2, math.ceil(concurrency * request_rows / chunk_rows) + 1)


async def score_chunks(
    chunks: Iterator[Chunk],
    scorer: ChunkScorer,
    save: Callable[[ChunkResult], None],
    on_done: Callable[[Chunk], None],
    max_chunks_in_flight: int,
) -> None:
    """Score every chunk; `save` (run in one writer thread, in completion order) makes each durable.

    The first failure cancels the rest and is raised as is; chunks already saved stay saved.
    """
    loop = asyncio.get_running_loop()
    reader_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tau-score-read")
    writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tau-score-write")
    room = asyncio.Semaphore(max_chunks_in_flight)

    async def finish(chunk: Chunk) -> None:
        try:
            result = await scorer.score(chunk)
            await loop.run_in_executor(writer_thread, save, result)
            on_done(chunk)
        finally:
            room.release()

    try:
        async with asyncio.TaskGroup() as group:
            while True:
                await room.acquire()
                chunk = await loop.run_in_executor(reader_thread, next, chunks, None)
                if chunk is None:
                    room.release()
                    break
                group.create_task(finish(chunk))
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    finally:
        # A save already running finishes (its part and claim stay consistent) before we return.
        writer_thread.shutdown(wait=True)
        reader_thread.shutdown(wait=True)
