"""export_model: PyTorch module -> ONNX file -> parity proof -> published repository version."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from exporter.datatypes import v2_datatype
from exporter.errors import ExportArgumentError, InputShapeError, ParityError
from exporter.model_io import output_tensors, random_inputs
from exporter.onnx_conversion import ConvertedModel, ExporterKind, convert_to_onnx
from exporter.parity import ParityReport, check_parity
from exporter.repository import (
    MODEL_FILENAME,
    PARITY_REPORT_FILENAME,
    TensorSpec,
    check_model_name,
    choose_version,
    model_config,
    publish_version,
    write_config,
    write_text_atomically,
)

# torch.export specialises dimensions of size 0 and 1, so tracing at batch 1 would fix the batch axis.
EXAMPLE_BATCH_SIZE = 2
DEFAULT_SEED = 0


@dataclass(frozen=True)
class ExportResult:
    """What was published, where, and the evidence that it matches PyTorch."""

    name: str
    version: int
    version_dir: Path
    model_path: Path
    report_path: Path
    config_path: Path
    opset: int
    exporter: ExporterKind
    parity: ParityReport
    config: dict[str, Any]


def export_model(
    module: torch.nn.Module,
    *,
    repository: Path,
    name: str,
    input_shape: tuple[int, ...],
    version: int | None = None,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
    input_dtype: torch.dtype = torch.float32,
    opset: int | None = None,
    max_batch_size: int = 64,
    parity_batch_sizes: Sequence[int] = (1, 7, 64),
    atol: float = 1e-4,
    rtol: float = 1e-3,
    labels: list[str] | None = None,
    reference: Callable[..., Any] | None = None,
    overwrite: bool = False,
    seed: int = DEFAULT_SEED,
) -> ExportResult:
    """Export `module` to `<repository>/<name>/<version>/model.onnx` after proving parity with PyTorch.

    `input_shape` excludes the batch dimension and applies to every input. `version=None` takes the next
    free number (1 for a new model); an existing version is replaced only with `overwrite=True`.
    `reference` is what the ONNX outputs are compared against, the module itself unless given.
    Nothing is written into the repository unless every step succeeds; failures raise `ExportError`.
    """
    repository = Path(repository)
    input_shape = tuple(input_shape)
    _check_arguments(
        name=name,
        input_shape=input_shape,
        input_names=input_names,
        output_names=output_names,
        max_batch_size=max_batch_size,
        parity_batch_sizes=parity_batch_sizes,
        atol=atol,
        rtol=rtol,
        version=version,
    )
    # Fail before the slow work if an explicit version is taken.
    choose_version(repository, name, version, overwrite=overwrite)
    module.eval()  # Dropout off, BatchNorm on running statistics: the behaviour being served.

    example_inputs = random_inputs(
        batch_size=EXAMPLE_BATCH_SIZE, input_shape=input_shape, dtype=input_dtype, count=len(input_names), seed=seed
    )
    example_outputs = _run_example(module, example_inputs, output_names)
    inputs = [TensorSpec(n, v2_datatype(input_dtype, tensor_name=n), input_shape) for n in input_names]
    # Output shapes are observed, not declared: whatever the model returns beyond the batch axis.
    outputs = [
        TensorSpec(n, v2_datatype(t.dtype, tensor_name=n), tuple(t.shape[1:]))
        for n, t in zip(output_names, example_outputs, strict=True)
    ]
    _check_labels(labels, outputs[0])

    with tempfile.TemporaryDirectory(prefix="tau-export-") as work:
        model_path = Path(work) / MODEL_FILENAME
        converted = convert_to_onnx(
            module, example_inputs, model_path, input_names=input_names, output_names=output_names, opset=opset
        )
        parity = check_parity(
            module if reference is None else reference,
            model_path,
            input_names=input_names,
            output_names=output_names,
            input_shape=input_shape,
            input_dtype=input_dtype,
            batch_sizes=parity_batch_sizes,
            atol=atol,
            rtol=rtol,
            seed=seed,
        )
        _require_parity(parity)
        report_path = _write_parity_report(Path(work) / PARITY_REPORT_FILENAME, parity, converted)
        chosen_version = choose_version(repository, name, version, overwrite=overwrite)
        version_dir = publish_version([model_path, report_path], repository, name, chosen_version, overwrite=overwrite)

    config = model_config(name=name, max_batch_size=max_batch_size, inputs=inputs, outputs=outputs, labels=labels)
    config_path = write_config(repository, name, config)
    return ExportResult(
        name=name,
        version=chosen_version,
        version_dir=version_dir,
        model_path=version_dir / MODEL_FILENAME,
        report_path=version_dir / PARITY_REPORT_FILENAME,
        config_path=config_path,
        opset=converted.opset,
        exporter=converted.exporter,
        parity=parity,
        config=config,
    )


def _require_parity(parity: ParityReport) -> None:
    if not parity.passed:
        failures = "; ".join(comparison.describe() for comparison in parity.failures)
        raise ParityError(
            f"ONNX Runtime disagrees with PyTorch beyond atol={parity.atol:g} + rtol={parity.rtol:g}*|expected|: "
            f"{failures}; nothing was published",
            parity,
        )


def _write_parity_report(path: Path, parity: ParityReport, converted: ConvertedModel) -> Path:
    """parity_report.json: the comparisons plus what produced the file they vouch for."""
    report = {
        **parity.to_json_dict(),
        "opset": converted.opset,
        "exporter": converted.exporter,
        "onnx_version": onnx.__version__,
    }
    write_text_atomically(path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def _run_example(
    module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], output_names: Sequence[str]
) -> tuple[torch.Tensor, ...]:
    """Call the model once, so a wrong input shape fails here with a message naming the shape."""
    try:
        with torch.no_grad():
            result = module(*example_inputs)
    except Exception as error:  # any forward failure means the model cannot take this input
        shape = list(example_inputs[0].shape)
        raise InputShapeError(
            f"model rejected an input of shape {shape} (batch of {EXAMPLE_BATCH_SIZE}, "
            f"input shape {shape[1:]}): {type(error).__name__}: {str(error).strip()}"
        ) from error
    outputs = output_tensors(result, output_names)
    for name, output in zip(output_names, outputs, strict=True):
        if output.dim() == 0 or output.shape[0] != EXAMPLE_BATCH_SIZE:
            raise ExportArgumentError(
                f"output {name!r} has shape {list(output.shape)} for a batch of {EXAMPLE_BATCH_SIZE}; "
                "its first axis must be the batch"
            )
    return outputs


def _check_labels(labels: list[str] | None, first_output: TensorSpec) -> None:
    if labels is None:
        return
    if first_output.shape != (len(labels),):
        raise ExportArgumentError(
            f"{len(labels)} labels were given but output {first_output.name!r} has shape "
            f"{list(first_output.shape)} (batch excluded); expected [{len(labels)}], one score per label"
        )


def _check_arguments(
    *,
    name: str,
    input_shape: tuple[int, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    max_batch_size: int,
    parity_batch_sizes: Sequence[int],
    atol: float,
    rtol: float,
    version: int | None,
) -> None:
    check_model_name(name)
    if any(not isinstance(size, int) or size < 1 for size in input_shape):
        raise ExportArgumentError(f"input shape {list(input_shape)} must hold positive integers")
    for kind, names in (("input", input_names), ("output", output_names)):
        if isinstance(names, str) or not names:
            raise ExportArgumentError(f"{kind} names must be a non-empty sequence of names, got {names!r}")
        if len(set(names)) != len(names):
            raise ExportArgumentError(f"{kind} names {list(names)} repeat a name")
    if set(input_names) & set(output_names):
        raise ExportArgumentError(f"names {sorted(set(input_names) & set(output_names))} are both input and output")
    if max_batch_size < 1:
        raise ExportArgumentError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if not parity_batch_sizes or any(size < 1 for size in parity_batch_sizes):
        raise ExportArgumentError(f"parity batch sizes {list(parity_batch_sizes)} must be positive integers")
    if atol < 0 or rtol < 0:
        raise ExportArgumentError(f"tolerances must not be negative, got atol={atol}, rtol={rtol}")
    if version is not None and version < 1:
        raise ExportArgumentError(f"version must be at least 1, got {version}")
