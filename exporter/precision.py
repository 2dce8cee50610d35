"""Reduced-precision copies of an exported fp32 ONNX graph: fp16 weights, or int8 by ONNX Runtime's quantizer.

Every precision keeps the model's inputs and outputs as they were (FP32 for a float model), so config.json
and clients do not change; only the weights and the arithmetic inside the graph do.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import onnx
import onnx_ir

from exporter.errors import ConversionError, ExportArgumentError

# onnxruntime.transformers (which the quantization tools import too) appends its own directory to sys.path
# so its scripts can import each other by bare name (`import onnx_model`); put sys.path back so importing the
# exporter does not change how the caller's own imports resolve.
_sys_path_before_onnxruntime_tools = list(sys.path)
try:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from onnxruntime.transformers import float16
finally:
    sys.path[:] = _sys_path_before_onnxruntime_tools

Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

# Dynamic quantization covers the weight-heavy matrix products (Linear layers reach ONNX as MatMul or Gemm;
# ORT's "MatMul" rule takes both), attention, LSTMs and embedding lookups. Conv is left fp32 on purpose:
# ORT's ConvInteger on CPU ran the example CNN about 8x slower than fp32 Conv; int8-static handles convnets.
DYNAMIC_QUANTIZED_OPS = ("MatMul", "Attention", "LSTM", "Gather")
# Rows per calibration batch: large enough to be quick, small enough to keep memory flat on big inputs.
CALIBRATION_BATCH_ROWS = 32


@dataclass(frozen=True)
class Tolerances:
    """Parity passes where |onnx - pytorch| <= atol + rtol * |pytorch|, element by element."""

    atol: float
    rtol: float


# Measured on the example models (docs/export.md): fp16 stays under 1e-3; int8 errors reach ~0.05 (dynamic)
# and ~0.1 (static, where activations are rounded too) on softmax probabilities. The defaults leave headroom.
DEFAULT_TOLERANCES: dict[Precision, Tolerances] = {
    "fp32": Tolerances(atol=1e-4, rtol=1e-3),
    "fp16": Tolerances(atol=1e-2, rtol=1e-2),
    "int8-dynamic": Tolerances(atol=0.05, rtol=0.1),
    "int8-static": Tolerances(atol=0.1, rtol=0.1),
}


def check_precision(precision: str) -> Precision:
    """`precision` as a Precision, or an ExportArgumentError naming the accepted values."""
    for known in PRECISIONS:
        if precision == known:
            return known
    raise ExportArgumentError(f"precision {precision!r} is not supported; expected one of: {', '.join(PRECISIONS)}")


def reduce_precision(
    fp32_path: Path,
    destination: Path,
    precision: Precision,
    *,
    calibration: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write the fp32 graph at `fp32_path` as `destination` at `precision`; returns how, for the report.

    `calibration` (input name -> [rows, ...]) is required for int8-static and ignored otherwise.
    The result is one self-contained ONNX file, like the fp32 export.
    """
    if precision == "fp32":
        raise ExportArgumentError("fp32 is the exported graph itself; there is nothing to reduce")
    if precision == "int8-static" and calibration is None:
        raise ExportArgumentError("int8-static quantization needs calibration data")
    with tempfile.TemporaryDirectory(prefix=".precision-", dir=destination.parent) as scratch:
        try:
            if precision == "fp16":
                model, method = _to_float16(fp32_path)
            else:
                source, method = _pre_process(fp32_path, Path(scratch) / "pre_processed.onnx")
                quantized_path = Path(scratch) / "quantized.onnx"
                if precision == "int8-dynamic":
                    method |= _quantize_dynamic(source, quantized_path)
                else:
                    assert calibration is not None  # checked above
                    method |= _quantize_static(source, quantized_path, calibration)
                model = onnx.load(str(quantized_path))
        except Exception as error:  # the converters raise assorted types; all mean "cannot convert"
            raise ConversionError(
                f"could not convert the fp32 ONNX graph to {precision}: {type(error).__name__}: {error}"
            ) from error
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ConversionError(f"the {precision} ONNX graph is invalid: {error}") from error
    onnx.save_model(model, str(destination), save_as_external_data=False)
    return {"precision": precision, **method}


def _to_float16(fp32_path: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    # keep_io_types: Cast nodes at the edges keep inputs and outputs FP32, so clients and config.json stay as
    # they were. On CPU, ONNX Runtime runs ops that lack fp16 kernels in fp32 between inserted casts.
    model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    # The converter appends its Cast nodes at the end of the node list; ONNX requires producers first.
    ir_model = onnx_ir.from_proto(model)
    ir_model.graph.sort()
    return onnx_ir.to_proto(ir_model), {"tool": "onnxruntime.transformers.float16", "keep_io_types": True}


def _pre_process(fp32_path: Path, destination: Path) -> tuple[Path, dict[str, Any]]:
    """ORT's recommended step before quantizing: shape inference and basic graph fusions (e.g. Conv+BN)."""
    try:
        quant_pre_process(str(fp32_path), str(destination))
    except Exception as error:  # symbolic shape inference gives up on some graphs; quantizing still works
        return fp32_path, {"pre_processing": f"skipped: {type(error).__name__}: {error}"}
    return destination, {"pre_processing": "onnxruntime.quantization.shape_inference.quant_pre_process"}


def _quantize_dynamic(source: Path, destination: Path) -> dict[str, Any]:
    quantize_dynamic(
        str(source),
        str(destination),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(DYNAMIC_QUANTIZED_OPS),
    )
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "int8",
        "activations": "quantized per call from their observed range",
        "op_types": list(DYNAMIC_QUANTIZED_OPS),
    }


def _quantize_static(source: Path, destination: Path, calibration: Mapping[str, np.ndarray]) -> dict[str, Any]:
    # QDQ with uint8 activations and int8 weights is the combination ORT recommends for x86 CPUs;
    # per-channel weight scales keep Conv and Linear layers with uneven filters accurate.
    quantize_static(
        str(source),
        str(destination),
        CalibrationBatches(calibration, CALIBRATION_BATCH_ROWS),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activation_type": "uint8",
        "weight_type": "int8",
        "per_channel": True,
        "calibration_method": "MinMax",
        "calibration_rows": int(next(iter(calibration.values())).shape[0]),
    }


class CalibrationBatches(CalibrationDataReader):
    """Feeds calibration rows to quantize_static in batches of `batch_rows`, every input sliced alike."""

    def __init__(self, calibration: Mapping[str, np.ndarray], batch_rows: int) -> None:
        rows = next(iter(calibration.values())).shape[0]
        self._batches = [
            {name: array[start : start + batch_rows] for name, array in calibration.items()}
            for start in range(0, rows, batch_rows)
        ]
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position == len(self._batches):
            return None
        self._position += 1
        return self._batches[self._position - 1]

    def rewind(self) -> None:
        self._position = 0

    def __len__(self) -> int:
        return len(self._batches)


def describe_precisions(precisions: Sequence[Precision] = PRECISIONS) -> str:
    """'fp32 (atol 0.0001, rtol 0.001), fp16 (...)': the default tolerances, for help texts."""
    return ", ".join(
        f"{p} (atol {DEFAULT_TOLERANCES[p].atol:g}, rtol {DEFAULT_TOLERANCES[p].rtol:g})" for p in precisions
    )
