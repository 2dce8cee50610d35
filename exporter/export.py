"""export_model: PyTorch module -> ONNX file (-> reduced precision) -> parity proof -> published repository version."""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from exporter.calibration import CalibrationData, calibration_rows, check_calibration_data
from exporter.datatypes import v2_datatype
from exporter.errors import ExportArgumentError, InputShapeError, ParityError
from exporter.model_io import output_tensors, random_inputs
from exporter.onnx_conversion import ConvertedModel, ExporterKind, convert_to_onnx
from exporter.parity import CALIBRATION_INPUTS, SEEDED_INPUTS, ParityReport, check_parity, seeded_input_batches
from exporter.precision import DEFAULT_TOLERANCES, Precision, Tolerances, check_precision, reduce_precision
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
from exporter.speed import DEFAULT_SPEED_RUNS, SpeedComparison, compare_speed

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
    precision: Precision
    speed: SpeedComparison | None  # None for fp32 (nothing to compare) or when no speed batch sizes were given


@dataclass(frozen=True)
class _Plan:
    """The checked arguments that decide how the graph is built, proven and timed."""

    input_names: Sequence[str]
    output_names: Sequence[str]
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype
    opset: int | None
    precision: Precision
    tolerances: Tolerances
    parity_batch_sizes: Sequence[int]
    calibration: Mapping[str, np.ndarray] | None
    speed_batch_sizes: Sequence[int]
    speed_runs: int
    seed: int


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
    precision: str = "fp32",
    calibration_data: CalibrationData | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    speed_batch_sizes: Sequence[int] = (1, 64),
    speed_runs: int = DEFAULT_SPEED_RUNS,
    labels: list[str] | None = None,
    reference: Callable[..., Any] | None = None,
    overwrite: bool = False,
    seed: int = DEFAULT_SEED,
) -> ExportResult:
    """Export `module` to `<repository>/<name>/<version>/model.onnx` after proving parity with PyTorch.

    `input_shape` excludes the batch dimension and applies to every input. `version=None` takes the next
    free number (1 for a new model); an existing version is replaced only with `overwrite=True`.
    `reference` is what the ONNX outputs are compared against, the module itself unless given.
    `precision` ("fp32", "fp16", "int8-dynamic", "int8-static") other than fp32 publishes a reduced copy of
    the graph with the same inputs and outputs, judged against the fp32 reference with that precision's
    default tolerances unless `atol`/`rtol` are given, and timed against the fp32 graph at
    `speed_batch_sizes` (empty: not timed). int8-static needs `calibration_data`: an array
    [N, *input_shape] for a one-input model, or a mapping of input name to such an array.
    Nothing is written into the repository unless every step succeeds; failures raise `ExportError`.
    """
    repository = Path(repository)
    _check_arguments(
        name=name,
        input_shape=tuple(input_shape),
        input_names=input_names,
        output_names=output_names,
        max_batch_size=max_batch_size,
        parity_batch_sizes=parity_batch_sizes,
        version=version,
    )
    plan = _plan(
        input_names=input_names,
        output_names=output_names,
        input_shape=tuple(input_shape),
        input_dtype=input_dtype,
        opset=opset,
        precision=precision,
        atol=atol,
        rtol=rtol,
        parity_batch_sizes=parity_batch_sizes,
        calibration_data=calibration_data,
        speed_batch_sizes=speed_batch_sizes,
        speed_runs=speed_runs,
        seed=seed,
    )
    # Fail before the slow work if an explicit version is taken.
    choose_version(repository, name, version, overwrite=overwrite)
    module.eval()  # Dropout off, BatchNorm on running statistics: the behaviour being served.

    example_inputs = random_inputs(
        batch_size=EXAMPLE_BATCH_SIZE,
        input_shape=plan.input_shape,
        dtype=input_dtype,
        count=len(input_names),
        seed=seed,
    )
    example_outputs = _run_example(module, example_inputs, output_names)
    inputs = [TensorSpec(n, v2_datatype(input_dtype, tensor_name=n), plan.input_shape) for n in input_names]
    # Output shapes are observed, not declared: whatever the model returns beyond the batch axis.
    outputs = [
        TensorSpec(n, v2_datatype(t.dtype, tensor_name=n), tuple(t.shape[1:]))
        for n, t in zip(output_names, example_outputs, strict=True)
    ]
    _check_labels(labels, outputs[0])

    with tempfile.TemporaryDirectory(prefix="tau-export-") as work:
        model_path = Path(work) / MODEL_FILENAME
        converted, parity, speed = _build_and_prove(
            module, example_inputs, module if reference is None else reference, model_path, plan
        )
        chosen_version = choose_version(repository, name, version, overwrite=overwrite)
        version_dir = publish_version(
            [model_path, model_path.with_name(PARITY_REPORT_FILENAME)],
            repository,
            name,
            chosen_version,
            overwrite=overwrite,
        )

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
        precision=plan.precision,
        speed=speed,
    )


def _build_and_prove(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    reference: Callable[..., Any],
    model_path: Path,
    plan: _Plan,
) -> tuple[ConvertedModel, ParityReport, SpeedComparison | None]:
    """Write model.onnx at the plan's precision and parity_report.json beside it; raise if parity fails."""
    # A reduced precision starts from the fp32 graph, which stays aside as the speed baseline.
    reduced = plan.precision != "fp32"
    fp32_path = model_path.with_name(f"fp32-{MODEL_FILENAME}") if reduced else model_path
    converted = convert_to_onnx(
        module,
        example_inputs,
        fp32_path,
        input_names=plan.input_names,
        output_names=plan.output_names,
        opset=plan.opset,
    )
    conversion = None
    if reduced:
        conversion = reduce_precision(fp32_path, model_path, plan.precision, calibration=plan.calibration)
    parity = _check_parity(reference, model_path, plan)
    _require_parity(parity)
    speed = None
    if reduced and plan.speed_batch_sizes:
        speed = compare_speed(
            fp32_path,
            model_path,
            precision=plan.precision,
            input_names=plan.input_names,
            input_shape=plan.input_shape,
            input_dtype=plan.input_dtype,
            batch_sizes=plan.speed_batch_sizes,
            runs=plan.speed_runs,
            seed=plan.seed,
        )
    _write_parity_report(model_path.with_name(PARITY_REPORT_FILENAME), parity, converted, conversion, speed)
    return converted, parity, speed


def _check_parity(reference: Callable[..., Any], model_path: Path, plan: _Plan) -> ParityReport:
    if plan.calibration is not None:
        # Static quantization ranges were fitted to the calibration data: judge them on that distribution,
        # not on standard normal noise that real inputs (e.g. pixels in [0, 1]) may never resemble.
        input_source = CALIBRATION_INPUTS
        # Consecutive batches take the next rows, so no sample is counted twice while the data lasts.
        starts = itertools.accumulate(plan.parity_batch_sizes[:-1], initial=0)
        input_batches = [
            calibration_rows(plan.calibration, plan.input_names, size, start=start)
            for size, start in zip(plan.parity_batch_sizes, starts, strict=True)
        ]
    else:
        input_source = SEEDED_INPUTS
        input_batches = seeded_input_batches(
            batch_sizes=plan.parity_batch_sizes,
            input_shape=plan.input_shape,
            input_dtype=plan.input_dtype,
            count=len(plan.input_names),
            seed=plan.seed,
        )
    return check_parity(
        reference,
        model_path,
        input_names=plan.input_names,
        output_names=plan.output_names,
        input_batches=input_batches,
        atol=plan.tolerances.atol,
        rtol=plan.tolerances.rtol,
        seed=plan.seed,
        precision=plan.precision,
        input_source=input_source,
    )


def _require_parity(parity: ParityReport) -> None:
    if not parity.passed:
        failures = "; ".join(comparison.describe() for comparison in parity.failures)
        graph = "ONNX Runtime" if parity.precision == "fp32" else f"ONNX Runtime ({parity.precision} graph)"
        raise ParityError(
            f"{graph} disagrees with PyTorch beyond atol={parity.atol:g} + rtol={parity.rtol:g}*|expected|: "
            f"{failures}; nothing was published",
            parity,
        )


def _write_parity_report(
    path: Path,
    parity: ParityReport,
    converted: ConvertedModel,
    conversion: dict[str, Any] | None,
    speed: SpeedComparison | None,
) -> Path:
    """parity_report.json: the comparisons plus what produced the file they vouch for, and how fast it runs."""
    report = {
        **parity.to_json_dict(),
        "opset": converted.opset,
        "exporter": converted.exporter,
        "onnx_version": onnx.__version__,
        "conversion": conversion,
        "speed": None if speed is None else speed.to_json_dict(),
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


def _plan(
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    input_shape: tuple[int, ...],
    input_dtype: torch.dtype,
    opset: int | None,
    precision: str,
    atol: float | None,
    rtol: float | None,
    parity_batch_sizes: Sequence[int],
    calibration_data: CalibrationData | None,
    speed_batch_sizes: Sequence[int],
    speed_runs: int,
    seed: int,
) -> _Plan:
    """Check the arguments about precision, tolerances, calibration and timing; fill in per-precision defaults."""
    checked_precision = check_precision(precision)
    defaults = DEFAULT_TOLERANCES[checked_precision]
    tolerances = Tolerances(atol=defaults.atol if atol is None else atol, rtol=defaults.rtol if rtol is None else rtol)
    if tolerances.atol < 0 or tolerances.rtol < 0:
        raise ExportArgumentError(
            f"tolerances must not be negative, got atol={tolerances.atol}, rtol={tolerances.rtol}"
        )
    if any(size < 1 for size in speed_batch_sizes):
        raise ExportArgumentError(f"speed batch sizes {list(speed_batch_sizes)} must be positive integers")
    if speed_runs < 1:
        raise ExportArgumentError(f"speed runs must be at least 1, got {speed_runs}")
    calibration = None
    if checked_precision == "int8-static":
        calibration = check_calibration_data(
            calibration_data, input_names=input_names, input_shape=input_shape, input_dtype=input_dtype
        )
    elif calibration_data is not None:
        raise ExportArgumentError(
            f"calibration data is used by int8-static only; precision {checked_precision} does not take it"
        )
    return _Plan(
        input_names=tuple(input_names),
        output_names=tuple(output_names),
        input_shape=input_shape,
        input_dtype=input_dtype,
        opset=opset,
        precision=checked_precision,
        tolerances=tolerances,
        parity_batch_sizes=tuple(parity_batch_sizes),
        calibration=calibration,
        speed_batch_sizes=tuple(speed_batch_sizes),
        speed_runs=speed_runs,
        seed=seed,
    )


def _check_arguments(
    *,
    name: str,
    input_shape: tuple[int, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    max_batch_size: int,
    parity_batch_sizes: Sequence[int],
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
    if version is not None and version < 1:
        raise ExportArgumentError(f"version must be at least 1, got {version}")
