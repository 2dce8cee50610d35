"""Convert a PyTorch module into one self-contained ONNX file whose batch dimension is dynamic."""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx
import torch

from exporter.errors import ConversionError, FixedBatchError

BATCH_DIM_NAME = "batch"

ExporterKind = Literal["dynamo", "torchscript"]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ConvertedModel:
    """Where the ONNX file went, and how it was made."""

    path: Path
    opset: int
    exporter: ExporterKind


def convert_to_onnx(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    destination: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int | None,
) -> ConvertedModel:
    """Export `module` to `destination` as a single ONNX file and check its batch axis is symbolic.

    Eager modules go through the torch.export-based (dynamo) exporter, the one torch 2.13 recommends;
    ScriptModules cannot be traced by torch.export, so they take the TorchScript-based exporter.
    """
    exporter: ExporterKind = "torchscript" if isinstance(module, torch.jit.ScriptModule) else "dynamo"
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=destination.parent) as scratch:
        raw_path = Path(scratch) / "model.onnx"
        try:
            with _quiet_exporter():
                if exporter == "dynamo":
                    _export_with_dynamo(module, example_inputs, raw_path, input_names, output_names, opset)
                else:
                    _export_with_torchscript(module, example_inputs, raw_path, input_names, output_names, opset)
        except Exception as error:  # torch.onnx raises many unrelated types; all mean "cannot convert"
            raise ConversionError(
                f"torch.onnx ({exporter} exporter) could not convert the model: {_summarize(error)}"
            ) from error
        # Loading pulls in any external-data side file the exporter chose to write; saving without
        # external data then gives the one self-contained file the repository layout promises.
        model = onnx.load(str(raw_path))
    _check_graph(model, input_names, output_names)
    onnx.save_model(model, str(destination), save_as_external_data=False)
    return ConvertedModel(path=destination, opset=_default_domain_opset(model), exporter=exporter)


def _export_with_dynamo(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int | None,
) -> None:
    batch = torch.export.Dim(BATCH_DIM_NAME)
    torch.onnx.export(
        module,
        example_inputs,
        str(path),
        dynamo=True,
        external_data=False,
        verbose=False,
        input_names=list(input_names),
        output_names=list(output_names),
        opset_version=opset,
        # One shared Dim: every input carries the same batch, so the graph may rely on that.
        dynamic_shapes=tuple({0: batch} for _ in example_inputs),
    )


def _export_with_torchscript(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int | None,
) -> None:
    torch.onnx.export(
        module,
        example_inputs,
        str(path),
        dynamo=False,
        verbose=False,
        input_names=list(input_names),
        output_names=list(output_names),
        opset_version=opset,
        dynamic_axes={name: {0: BATCH_DIM_NAME} for name in [*input_names, *output_names]},
    )


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence known, harmless noise from torch.onnx for the duration of one export."""
    with warnings.catch_warnings():
        # torch.export's pytree code trips this inside torch 2.13; it is attributed to copyreg, so the
        # project's "ignore DeprecationWarning from torch.*" filters do not reach it.
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
        )
        # We choose the TorchScript exporter on purpose for ScriptModules; its deprecation notices are
        # attributed to the caller (us), not to torch.
        warnings.filterwarnings(
            "ignore", message="You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="no signature found for", category=UserWarning)
        # The registry logs one warning per torchvision operator when torchvision is absent; Tau never
        # needs them.
        registration_logger = logging.getLogger("torch.onnx._internal.exporter._registration")
        previous_level = registration_logger.level
        registration_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            registration_logger.setLevel(previous_level)


def _summarize(error: BaseException) -> str:
    """The root cause from torch.onnx's multi-paragraph error text, without colour codes."""
    text = _ANSI_ESCAPE.sub("", str(error)).strip()
    marker = "## Exception summary"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    # "<class 'torch.onnx._internal.exporter._errors.DispatchError'>: ..." -> "DispatchError: ..."
    return re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", first_line)


def _check_graph(model: onnx.ModelProto, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    """The graph is valid ONNX, has the requested tensor names, and batch (axis 0) is never fixed."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ConversionError(f"the exported ONNX graph is invalid: {error}") from error
    initializers = {initializer.name for initializer in model.graph.initializer}
    graph_inputs = [value for value in model.graph.input if value.name not in initializers]
    actual_inputs = [value.name for value in graph_inputs]
    actual_outputs = [value.name for value in model.graph.output]
    if actual_inputs != list(input_names) or actual_outputs != list(output_names):
        raise ConversionError(
            f"the exported graph has inputs {actual_inputs} and outputs {actual_outputs}; "
            f"expected inputs {list(input_names)} and outputs {list(output_names)} "
            "(does the model use every input and return one tensor per output name?)"
        )
    fixed = [
        f"{value.name!r} {_shape_text(value)}"
        for value in [*graph_inputs, *model.graph.output]
        if not _has_symbolic_batch(value)
    ]
    if fixed:
        raise FixedBatchError(
            "the exported graph fixes the batch dimension (axis 0) of " + ", ".join(fixed) + "; "
            "the model must not depend on a specific batch size (e.g. reshape(2, ...)) "
            "so it can serve dynamic batches"
        )


def _has_symbolic_batch(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return len(dims) > 0 and not dims[0].HasField("dim_value")


def _shape_text(value: onnx.ValueInfoProto) -> str:
    """[2, 16] for fixed dims, [batch, 16] for symbolic ones, ? where the graph says nothing."""
    dims = value.type.tensor_type.shape.dim
    return "[" + ", ".join(_dim_text(dim) for dim in dims) + "]"


def _dim_text(dim: onnx.TensorShapeProto.Dimension) -> str:
    if dim.HasField("dim_value"):
        return str(dim.dim_value)
    return dim.dim_param or "?"


def _default_domain_opset(model: onnx.ModelProto) -> int:
    for opset_id in model.opset_import:
        if opset_id.domain in ("", "ai.onnx"):
            return int(opset_id.version)
    raise ConversionError("the exported graph declares no default-domain (ai.onnx) opset")
