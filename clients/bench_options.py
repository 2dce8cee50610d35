"""tau-bench's command line: its flags, their types, and the checks between them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clients.bench_report import BATCHING, CEILING, NO_BATCHING
from server.cpus import available_cpus
from server.runtime import ORT_PROVIDER_BY_NAME

SELF_CONTAINED_SCENARIOS = (CEILING, BATCHING, NO_BATCHING)


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,32, got {text!r}") from error
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,8,32, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _names_from(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for a comma-separated list drawn from `allowed` (scenarios, execution providers)."""

    def names(text: str) -> tuple[str, ...]:
        chosen = tuple(part.strip() for part in text.split(",") if part.strip())
        if not chosen or any(name not in allowed for name in chosen):
            raise argparse.ArgumentTypeError(f"expected some of {','.join(allowed)}, got {text!r}")
        return chosen

    return names


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tau-bench",
        description="Closed-loop gRPC load on Tau, compared with the gRPC ceiling and in-process ONNX Runtime.",
    )
    parser.add_argument("--model-file", type=Path, required=True, help="the ONNX model to serve and to compare with")
    parser.add_argument("--concurrency", type=positive_ints, default=[1, 8, 32], help="requests in flight (1,8,32)")
    parser.add_argument("--rows", type=_positive_int, default=1, help="rows (batch dimension) per request (1)")
    parser.add_argument("--duration", type=_seconds, default=5.0, help="measured seconds per run (5)")
    parser.add_argument("--warmup", type=_seconds, default=1.0, help="unmeasured seconds before each run (1)")
    parser.add_argument(
        "--client-processes", type=_positive_int, default=1, help="processes sharing the concurrency (1)"
    )
    parser.add_argument(
        "--server-workers",
        type=_positive_int,
        default=available_cpus(),
        help="server processes sharing the port, the server's --workers (its default: one per CPU, here "
        f"{available_cpus()})",
    )
    parser.add_argument(
        "--scenarios",
        type=_names_from(SELF_CONTAINED_SCENARIOS),
        default=SELF_CONTAINED_SCENARIOS,
        help=f"which self-contained scenarios to run ({','.join(SELF_CONTAINED_SCENARIOS)})",
    )
    parser.add_argument(
        "--execution-providers",
        type=_names_from(tuple(ORT_PROVIDER_BY_NAME)),
        default=("cpu",),
        help="the served models' execution_providers, also used by the in-process reference (cpu); e.g. cuda",
    )
    parser.add_argument(
        "--config-override",
        type=_json_object,
        default={},
        help='JSON merged into each served model\'s config.json, e.g. \'{"gpu": {"io_binding": true}}\'',
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="send over ModelStreamInfer (one stream per connection, one request in flight each) instead of ModelInfer",
    )
    parser.add_argument("--reference-seconds", type=_seconds, default=2.0, help="per in-process timing (2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (0)")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument("--url", help="host:port of a running server: skip starting one (and the ceiling)")
    parser.add_argument("--model", help="with --url: the served model's name")
    parser.add_argument(
        "--server-pid", type=int, help="with --url: measure the CPU and memory of this process and its children"
    )
    return parser


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.url and not options.model:
        parser.error("--url needs --model, the name the server serves the model file under")
    if (options.model or options.server_pid) and not options.url:
        parser.error("--model and --server-pid only apply with --url")
    if options.duration == 0:
        parser.error("--duration: expected more than 0 seconds")
    if not options.model_file.is_file():
        parser.error(f"--model-file: {options.model_file} is not a file")
    return options
