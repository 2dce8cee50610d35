"""Every server knob in one typed object, loaded from CLI flags and TAU_* environment variables.

Precedence: command line, then environment, then the default. Flag names are
Triton's where Triton has one, so Triton users feel at home.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "TAU_"
# Triton's model control modes: load everything and never change; load on request only; follow the folder.
CONTROL_MODES = ("none", "explicit", "poll")
# grpcio's 4 MiB default is far below what tritonclient may send (up to 2 GB).
MAX_GRPC_MESSAGE_BYTES = 2**31 - 1


@dataclass(frozen=True)
class Settings:
    """Server settings; each field's metadata gives its flag and help."""

    model_repository: Path = Path("models")
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 8001
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8002  # 0 turns the metrics endpoint off
    max_message_bytes: int = MAX_GRPC_MESSAGE_BYTES
    max_elements_per_input: int = 2**28
    max_inputs_per_request: int = 64
    max_concurrent_streams: int = 1024
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    auth_token_file: str = ""
    auth_tokens: tuple[str, ...] = ()
    auth_open_health: bool = True
    grace_period_seconds: float = 30.0
    strict_readiness: bool = True
    required_models: tuple[str, ...] = ()
    model_control_mode: str = "none"
    load_model: tuple[str, ...] = ()
    repository_poll_secs: float = 15.0
    workers: int = 0  # 0: one per CPU this process may use (one in explicit mode)
    worker_count: int = 1  # set by the supervisor: how many workers share the CPUs
    log_level: str = "INFO"
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format: expected 'text' or 'json', got {self.log_format!r}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file: give both, or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        if self.model_control_mode not in CONTROL_MODES:
            raise ValueError(f"model_control_mode: expected one of {CONTROL_MODES}, got {self.model_control_mode!r}")
        if self.workers > 1 and self.model_control_mode == "explicit":
            raise ValueError(
                "workers: explicit model control needs a single worker (a load request would reach only one); "
                "use --workers 1, or model control mode none or poll"
            )
        if self.repository_poll_secs <= 0:
            raise ValueError(f"repository_poll_secs: expected a positive number, got {self.repository_poll_secs}")


_HELP = {
    "model_repository": "folder of <model>/<version>/model.onnx (+ optional <model>/config.json)",
    "grpc_host": "address the gRPC server binds",
    "grpc_port": "gRPC port (Triton's default: 8001)",
    "metrics_host": "address the metrics endpoint binds (may differ from the gRPC one)",
    "metrics_port": "Prometheus /metrics HTTP port (Triton's default: 8002); 0 disables it",
    "max_message_bytes": "largest gRPC message received or sent, in bytes",
    "max_elements_per_input": "largest element count one input tensor may declare; bigger is refused unread",
    "max_inputs_per_request": "most input tensors one request may carry",
    "max_concurrent_streams": "most concurrent calls on one client connection",
    "tls_cert_file": "PEM server certificate (chain): serve gRPC over TLS (reloaded when the files change)",
    "tls_key_file": "PEM private key of tls_cert_file",
    "tls_client_ca_file": "PEM CA bundle: require client certificates signed by it (mutual TLS)",
    "auth_token_file": "file of accepted bearer tokens, one per line: calls without one get UNAUTHENTICATED",
    "auth_tokens": "accepted bearer tokens (prefer the env variable or the file: flags show up in ps)",
    "auth_open_health": "with tokens set, leave the health and reflection services open for probes",
    "grace_period_seconds": "on SIGTERM/SIGINT, how long in-flight calls may take to finish",
    "strict_readiness": "server is ready only when every model is ready (Triton's --strict-readiness)",
    "required_models": "repeatable: when set, the server is ready exactly when each of these models is ready",
    "model_control_mode": "none: load all at start, never change; explicit: load --load-model at start, then "
    "only via the load/unload API; poll: load all, then follow changes in the repository",
    "load_model": "repeatable: models to load at start in explicit mode ('*' = all)",
    "repository_poll_secs": "poll mode: seconds between repository scans",
    "workers": "server processes sharing the gRPC port (0 = one per CPU this process may use, "
    "or 1 in explicit mode); more than 1 needs model control mode none or poll",
    "worker_count": "internal: set by the worker supervisor",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "text or json (one JSON object per line, with the request id where there is one)",
}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "Path": Path,
    "str": str,
    "int": int,
    "float": float,
    "bool": _parse_bool,
}


def _converter(annotation: Any) -> Callable[[str], Any]:
    return _CONVERTERS[str(annotation)]


def _is_list(annotation: Any) -> bool:
    return str(annotation).startswith("tuple[")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tau-serve",
        description="Serve ONNX models over the KServe V2 / Triton gRPC protocol.",
        epilog=f"Every flag can also be set as an environment variable: {ENV_PREFIX}<FLAG_NAME>, "
        f"e.g. {ENV_PREFIX}GRPC_PORT=9001.",
    )
    for spec in fields(Settings):
        flag = "--" + spec.name.replace("_", "-")
        help_text = f"{_HELP[spec.name]} (env {ENV_PREFIX}{spec.name.upper()}"
        if _is_list(spec.type):
            parser.add_argument(
                flag, dest=spec.name, action="append", default=None, help=f"{help_text}, comma-separated)"
            )
        else:
            parser.add_argument(
                flag,
                dest=spec.name,
                type=_converter(spec.type),
                default=None,
                help=f"{help_text}; default {spec.default})",
            )
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the command line, then TAU_* variables, then defaults."""
    environ = dict(os.environ) if environ is None else environ
    parser = build_parser()
    parsed = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        if parsed[spec.name] is not None:
            values[spec.name] = parsed[spec.name]
            continue
        env_value = environ.get(ENV_PREFIX + spec.name.upper())
        if env_value is None:
            continue
        if _is_list(spec.type):
            values[spec.name] = tuple(item.strip() for item in env_value.split(",") if item.strip())
            continue
        try:
            values[spec.name] = _converter(spec.type)(env_value)
        except (ValueError, argparse.ArgumentTypeError) as error:
            parser.error(f"{ENV_PREFIX}{spec.name.upper()}={env_value!r}: {error}")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    try:
        return Settings(**values)
    except ValueError as error:
        parser.error(str(error))
        raise  # parser.error exits; this keeps type checkers content
