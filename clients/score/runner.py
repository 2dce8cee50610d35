"""score_file(): read, score, checkpoint and assemble one input file; the story of a tau-score run."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clients.score.backends import ScoringBackend, open_backend
from clients.score.checkpoint import Checkpoint, part_path
from clients.score.chunks import Chunk, ChunkReader, ChunkResult
from clients.score.durable import write_json_atomically
from clients.score.evaluation import ClassificationEvaluator, Evaluator, RegressionEvaluator
from clients.score.options import ScoreOptions, ScoringError, UsageError
from clients.score.parts import write_part
from clients.score.pipeline import ChunkScorer, chunks_in_flight, score_chunks
from clients.score.progress import Progress
from clients.score.readers import open_reader
from clients.score.signature import ModelSignature
from clients.score.writers import OutputAssembler

log = logging.getLogger("tau.score")


@dataclass(frozen=True)
class ScoreSummary:
    """How a run went. Rows/s counts the rows scored by this run over its scoring time."""

    output: Path
    backend: str
    rows_total: int
    rows_scored: int
    rows_failed: int
    rows_this_run: int  # rows read and scored now; the rest came from a checkpoint
    chunks_resumed: int
    scoring_seconds: float  # reading, scoring and writing parts (not model loading or assembly)
    total_seconds: float
    retries: int
    errors_file: Path | None
    metrics_file: Path | None
    metrics: dict[str, Any] | None

    @property
    def rows_per_second(self) -> float:
        return self.rows_this_run / self.scoring_seconds if self.scoring_seconds > 0 else 0.0


def score_file(input_path: str | Path, output_path: str | Path, model: str, **settings: Any) -> ScoreSummary:
    """Score a whole file (or image folder) into `output_path`; `settings` are ScoreOptions fields.

    Raises UsageError (bad arguments, input that does not fit the model, a checkpoint
    from other arguments) and ScoringError or InferenceError (the run stopped; rerun to
    resume). Rows that failed are in the summary and the errors file, not raised.
    """
    options = ScoreOptions(input=Path(input_path), output=Path(output_path), model=model, **settings)
    return asyncio.run(score(options))


def _fingerprint(options: ScoreOptions, signature: ModelSignature, request_rows: int, input_identity: Any) -> Any:
    """Everything that decides the parts' contents; the backend and concurrency do not."""
    return {
        "input": input_identity,
        "model": options.model,
        "model_version": options.model_version,
        "outputs": signature.output_names,
        "chunk_rows": options.chunk_rows,
        "request_rows": request_rows,
        "columns": list(options.columns),
        "label_column": options.label_column,
        "labels_from_folders": options.labels_from_folders,
        "reject_nan": options.reject_nan,
        "image_mean": list(options.image_mean),
        "image_std": list(options.image_std),
    }


def _evaluator(options: ScoreOptions, signature: ModelSignature) -> Evaluator | None:
    if not options.evaluates:
        return None
    if options.task == "regression":
        return RegressionEvaluator()
    shape = signature.outputs[0].shape
    classes = int(np.prod(shape)) if all(dim > 0 for dim in shape) else len(signature.labels)
    if classes < 1:
        raise UsageError(f"output '{signature.outputs[0].name}' has an open shape {list(shape)}: pass --labels-file")
    return ClassificationEvaluator(classes, signature.labels)


def _request_rows(options: ScoreOptions, signature: ModelSignature) -> int:
    if options.request_rows > signature.max_batch_size:
        log.info(
            "request rows: %d, the model's max_batch_size (asked for %d)",
            signature.max_batch_size,
            options.request_rows,
        )
    return min(options.request_rows, signature.max_batch_size)


@dataclass(frozen=True)
class _ScoringPhase:
    checkpoint: Checkpoint
    chunks_resumed: int
    rows_now: int
    seconds: float


async def _score_chunks(
    options: ScoreOptions, backend: ScoringBackend, signature: ModelSignature, reader: ChunkReader
) -> _ScoringPhase:
    """Score every chunk not yet checkpointed."""
    request_rows = _request_rows(options, signature)
    checkpoint = Checkpoint.open(
        options.parts_dir, _fingerprint(options, signature, request_rows, reader.identity()), options.restart
    )
    chunks_resumed = len(checkpoint.completed)
    resumed_rows = chunks_resumed * options.chunk_rows
    if checkpoint.completed:
        log.info("resuming: %d chunks already done in %s", len(checkpoint.completed), options.parts_dir)
    total = reader.total_rows
    progress = Progress(total, min(resumed_rows, total) if total is not None else resumed_rows, options.quiet)
    rows_now = 0

    def save(result: ChunkResult) -> None:
        write_part(part_path(options.parts_dir, result.chunk_id), result)
        checkpoint.mark_done(result.chunk_id)  # only now: the part is durably in place

    def on_done(chunk: Chunk) -> None:
        nonlocal rows_now
        rows_now += chunk.rows
        progress.advance(chunk.rows)

    scorer = ChunkScorer(backend, request_rows, options.concurrency, options.reject_nan)
    started = time.perf_counter()
    try:
        await score_chunks(
            reader.chunks(frozenset(checkpoint.completed)),
            scorer,
            save,
            on_done,
            chunks_in_flight(options.concurrency, request_rows, options.chunk_rows),
        )
    except UsageError:
        raise
    except Exception as error:
        raise ScoringError(f"{error}\n{_resume_hint(checkpoint)}") from error
    finally:
        progress.close()
    return _ScoringPhase(checkpoint, chunks_resumed, rows_now, time.perf_counter() - started)


def _resume_hint(checkpoint: Checkpoint) -> str:
    return f"{len(checkpoint.completed)} finished chunks are kept in {checkpoint.parts_dir}; rerun to resume."


async def score(options: ScoreOptions) -> ScoreSummary:
    """score_file() inside a running event loop."""
    started = time.perf_counter()
    backend, signature = await open_backend(options)
    log.info("scoring %s with model '%s' on %s", options.input, options.model, backend.description)
    try:
        reader = open_reader(signature, options)
        try:
            phase = await _score_chunks(options, backend, signature, reader)
        finally:
            reader.close()
    finally:
        await backend.close()
    assert reader.chunk_count is not None  # known once every chunk has been read
    evaluator = _evaluator(options, signature)
    try:
        assembler = OutputAssembler(options, signature, reader.chunk_count)
        rows_scored, rows_failed = await asyncio.to_thread(assembler.write, evaluator)
        metrics = evaluator.result() if evaluator is not None else None
        if metrics is not None:
            write_json_atomically(options.metrics_path, metrics)
    except Exception as error:
        raise ScoringError(f"assembling {options.output} failed: {error}\n{_resume_hint(phase.checkpoint)}") from error
    # Only once the output, errors file and metrics are in place: a crash before this line
    # leaves every part checkpointed, and the rerun assembles again.
    phase.checkpoint.remove()
    return ScoreSummary(
        output=options.output,
        backend=backend.description,
        rows_total=rows_scored + rows_failed,
        rows_scored=rows_scored,
        rows_failed=rows_failed,
        rows_this_run=phase.rows_now,
        chunks_resumed=phase.chunks_resumed,
        scoring_seconds=phase.seconds,
        total_seconds=time.perf_counter() - started,
        retries=backend.retries,
        errors_file=options.errors_path if rows_failed else None,
        metrics_file=options.metrics_path if metrics is not None else None,
        metrics=metrics,
    )
