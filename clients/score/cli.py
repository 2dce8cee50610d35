"""tau-score: score a whole file through a Tau server (or in-process ONNX Runtime), resumably.

Exit codes: 0 every row scored; 3 some rows failed (listed in <output>.errors.csv);
1 the run stopped (rerun the same command to resume); 2 usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clients.errors import InferenceError
from clients.score.options import ScoreOptions, ScoringError, UsageError
from clients.score.progress import configure_logging
from clients.score.runner import ScoreSummary, score

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_ROWS_FAILED = 3
EXIT_INTERRUPTED = 130

log = logging.getLogger("tau.score")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from error


def _header(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tau-score",
        description="Score a file (.npy, .npz, .csv, .parquet, or a folder of images) through a Tau model; "
        "resumes after a crash. Exit codes: 0 ok, 3 some rows failed, 1 stopped (rerun to resume), 2 usage.",
    )
    where = parser.add_argument_group("model")
    where.add_argument("--model", required=True, help="model name")
    where.add_argument("--model-version", default="", help="model version (default: the newest)")
    where.add_argument("--url", default="localhost:8001", help="server gRPC address (default: localhost:8001)")
    where.add_argument("--local", action="store_true", help="score with in-process ONNX Runtime, no server")
    where.add_argument("--repository", type=Path, help="model repository: for --local, --compare-local and labels")
    where.add_argument("--model-file", type=Path, help="a model.onnx for --local or --compare-local")
    data = parser.add_argument_group("input and output")
    data.add_argument("--input", type=Path, required=True, help=".npy, .npz, .csv, .parquet file or image folder")
    data.add_argument("--output", type=Path, required=True, help=".parquet or .npy file")
    data.add_argument("--outputs", type=_names, default=(), help="comma-separated model outputs (default: all)")
    data.add_argument("--columns", type=_names, default=(), help="CSV/Parquet feature columns, in order")
    data.add_argument("--label-column", help="CSV/Parquet column (or .npz array) of true labels: evaluate")
    data.add_argument("--labels-file", type=Path, help="class names, one per line (else the repository's)")
    data.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="image folder: each image's true label is the name of its sub-folder: evaluate",
    )
    data.add_argument("--task", choices=("classification", "regression"), default="classification")
    data.add_argument("--top-k", type=int, default=0, help="add the K best classes per row (Parquet only)")
    data.add_argument("--reject-nan", action="store_true", help="fail rows holding NaN or infinite values")
    data.add_argument("--mean", type=_floats, default=(), help="images: per-channel mean after /255")
    data.add_argument("--std", type=_floats, default=(), help="images: per-channel std after /255")
    speed = parser.add_argument_group("throughput and resume")
    speed.add_argument("--chunk-rows", type=int, default=8192, help="rows read, written and checkpointed at once")
    speed.add_argument("--request-rows", type=int, default=256, help="rows per request (capped at max_batch_size)")
    speed.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    speed.add_argument("--stream", action="store_true", help="send every request on one ModelStreamInfer stream")
    speed.add_argument("--timeout-seconds", type=float, default=60.0, help="one request's budget, retries included")
    speed.add_argument("--max-attempts", type=int, default=5, help="attempts per request on UNAVAILABLE")
    speed.add_argument("--restart", action="store_true", help="discard a checkpoint instead of resuming it")
    speed.add_argument("--compare-local", action="store_true", help="also time in-process ONNX Runtime; print ratio")
    speed.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    tls = parser.add_argument_group("connection")
    tls.add_argument("--ssl", action="store_true", help="connect with TLS")
    tls.add_argument("--root-certificates", type=Path, help="PEM CA bundle (default: the system's)")
    tls.add_argument("--private-key", type=Path, help="PEM client key (mutual TLS)")
    tls.add_argument("--certificate-chain", type=Path, help="PEM client certificate chain (mutual TLS)")
    tls.add_argument("--header", type=_header, action="append", default=[], help="KEY=VALUE sent with every call")
    tls.add_argument("--gzip", action="store_true", help="compress messages with gzip")
    return parser


def options_from(args: argparse.Namespace) -> ScoreOptions:
    return ScoreOptions(
        input=args.input,
        output=args.output,
        model=args.model,
        model_version=args.model_version,
        url=args.url,
        local=args.local,
        repository=args.repository,
        model_file=args.model_file,
        outputs=args.outputs,
        columns=args.columns,
        label_column=args.label_column,
        labels_file=args.labels_file,
        labels_from_folders=args.labels_from_folders,
        task=args.task,
        top_k=args.top_k,
        reject_nan=args.reject_nan,
        image_mean=args.mean,
        image_std=args.std,
        chunk_rows=args.chunk_rows,
        request_rows=args.request_rows,
        concurrency=args.concurrency,
        stream=args.stream,
        request_timeout_seconds=args.timeout_seconds,
        max_attempts=args.max_attempts,
        restart=args.restart,
        quiet=args.quiet,
        ssl=args.ssl,
        root_certificates=args.root_certificates,
        private_key=args.private_key,
        certificate_chain=args.certificate_chain,
        headers=tuple(args.header),
        gzip=args.gzip,
    )


def _print_summary(summary: ScoreSummary) -> None:
    resumed = f", {summary.chunks_resumed} chunks resumed from a checkpoint" if summary.chunks_resumed else ""
    print(
        f"scored {summary.rows_scored} of {summary.rows_total} rows ({summary.rows_failed} failed) into "
        f"{summary.output} on {summary.backend}{resumed}"
    )
    print(
        f"throughput: {summary.rows_per_second:,.0f} rows/s ({summary.rows_this_run} rows in "
        f"{summary.scoring_seconds:.2f} s; {summary.total_seconds:.2f} s in all; {summary.retries} retries)"
    )
    if summary.errors_file is not None:
        print(f"failed rows: {summary.rows_failed}, listed in {summary.errors_file}")
    if summary.metrics:
        _print_metrics(summary.metrics)
        print(f"metrics written to {summary.metrics_file}")


def _print_metrics(metrics: dict[str, object]) -> None:
    if metrics["task"] == "regression":
        print(f"regression on {metrics['rows']} rows: MAE {metrics['mae']:.6g}, RMSE {metrics['rmse']:.6g}")
        return
    print(
        f"classification on {metrics['rows']} rows: accuracy {metrics['accuracy']:.4f}, macro precision "
        f"{metrics['macro_precision']:.4f}, macro recall {metrics['macro_recall']:.4f}, "
        f"macro F1 {metrics['macro_f1']:.4f}"
    )
    per_class = metrics["per_class"]
    assert isinstance(per_class, dict)
    for name, scores in per_class.items():
        print(
            f"  {name:>12}: precision {scores['precision']:.4f}  recall {scores['recall']:.4f}  "
            f"F1 {scores['f1']:.4f}  support {scores['support']}"
        )
    confusion = metrics["confusion_matrix"]
    assert isinstance(confusion, dict)
    print("  confusion matrix (rows: true, columns: predicted):")
    for name, row in zip(confusion["labels"], confusion["matrix"], strict=True):
        print(f"  {name:>12}: " + " ".join(f"{count:>7}" for count in row))


async def _compare_local(options: ScoreOptions, summary: ScoreSummary) -> None:
    """Score the same input with in-process ONNX Runtime into a scratch folder; print both rates."""
    with tempfile.TemporaryDirectory(prefix="tau-score-local-") as scratch:
        local_options = dataclasses.replace(
            options, local=True, output=Path(scratch) / options.output.name, restart=True
        )
        local = await score(local_options)
    ratio = summary.rows_per_second / local.rows_per_second if local.rows_per_second else float("nan")
    print(
        f"in-process ONNX Runtime: {local.rows_per_second:,.0f} rows/s ({local.rows_this_run} rows in "
        f"{local.scoring_seconds:.2f} s); {summary.backend} / in-process = {ratio:.2f}"
    )


async def _run(options: ScoreOptions, compare_local: bool) -> ScoreSummary:
    summary = await score(options)
    _print_summary(summary)
    if compare_local and not options.local:
        await _compare_local(options, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help (0) or a usage error (2): a code, not an exit, for callers
        return int(exit_request.code or 0)
    configure_logging(args.quiet)
    try:
        options = options_from(args)
        if args.compare_local and options.repository is None and options.model_file is None:
            raise UsageError("--compare-local needs --repository DIR or --model-file model.onnx")
        summary = asyncio.run(_run(options, args.compare_local))
    except UsageError as error:
        print(f"tau-score: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ScoringError, InferenceError, OSError) as error:
        print(f"tau-score: stopped: {error}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("tau-score: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ROWS_FAILED if summary.rows_failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
