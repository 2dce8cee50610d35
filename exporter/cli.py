"""tau-export: export a PyTorch model to ONNX with a parity proof, into a Triton-like model repository.

    tau-export --model pkg.module:factory [--weights w.pt] --repository models --name cnn --input-shape 3,32,32
    tau-export --torchscript model.pt --repository models --name cnn --input-shape 3,32,32
    tau-export --model pkg.module:factory --repository models --name cnn --input-shape 3,32,32 \
        --precision int8-static --calibration-data calibration.npy
    tau-export examples --repository models

Exit codes: 0 published; 1 the export failed (nothing was published; the reason is on stderr);
2 the command line itself is wrong (argparse's usage error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from exporter.calibration import load_calibration_file
from exporter.datatypes import DATATYPE_BY_TORCH_DTYPE
from exporter.errors import ExportError
from exporter.examples import export_examples
from exporter.export import ExportResult, export_model
from exporter.model_loading import build_from_reference, load_torchscript, load_weights
from exporter.precision import PRECISIONS, describe_precisions
from exporter.speed import DEFAULT_SPEED_RUNS, SPEED_THREADS

EXIT_OK = 0
EXIT_EXPORT_FAILED = 1
EXIT_USAGE = 2

PROGRAM = "tau-export"
TORCH_DTYPE_BY_DATATYPE = {datatype: dtype for dtype, datatype in DATATYPE_BY_TORCH_DTYPE.items()}


def main(argv: list[str] | None = None) -> int:
    """Run tau-export; returns the process exit code (see the module docstring)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        if arguments[:1] == ["examples"]:
            options = _examples_parser().parse_args(arguments[1:])
            results = export_examples(options.repository)
        else:
            results = [_export_from_options(_parse_export_arguments(arguments))]
    except SystemExit as exit_request:  # argparse exits on --help and on usage errors; report the code
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    except ExportError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_EXPORT_FAILED
    for result in results:
        print(_summary(result))
    return EXIT_OK


def _parse_export_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = _export_parser()
    options = parser.parse_args(arguments)
    if options.torchscript is not None and options.weights is not None:
        parser.error("--weights applies to --model only; a TorchScript archive carries its own weights")
    return options


def _export_from_options(options: argparse.Namespace) -> ExportResult:
    if options.torchscript is not None:
        module: torch.nn.Module = load_torchscript(options.torchscript)
    else:
        # Like `python -m`, resolve references against the working directory, which a console-script
        # entry point would otherwise leave off sys.path.
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        module = build_from_reference(options.model)
        if options.weights is not None:
            load_weights(module, options.weights)
    calibration = None if options.calibration_data is None else load_calibration_file(options.calibration_data)
    return export_model(
        module,
        repository=options.repository,
        name=options.name,
        input_shape=options.input_shape,
        version=options.version,
        overwrite=options.overwrite,
        input_names=options.input_names,
        output_names=options.output_names,
        input_dtype=TORCH_DTYPE_BY_DATATYPE[options.input_datatype],
        opset=options.opset,
        max_batch_size=options.max_batch_size,
        parity_batch_sizes=options.parity_batch_sizes,
        precision=options.precision,
        calibration_data=calibration,
        atol=options.atol,
        rtol=options.rtol,
        speed_batch_sizes=options.speed_batch_sizes,
        speed_runs=options.speed_runs,
        labels=options.labels,
    )


def _summary(result: ExportResult) -> str:
    parity = result.parity
    errors = "; ".join(_output_errors(output, worst) for output, worst in parity.max_errors().items())
    batch_sizes = ", ".join(str(size) for size in parity.batch_sizes)
    lines = [
        f"published {result.name} version {result.version}: {result.model_path} "
        f"(opset {result.opset}, {result.exporter} exporter, {result.precision})",
        f"  parity at batch sizes {batch_sizes} on {parity.input_source} inputs "
        f"(atol {parity.atol:g}, rtol {parity.rtol:g}): {errors}",
    ]
    if result.speed is not None:
        speed = result.speed
        timings = "; ".join(
            f"batch {t.batch_size} {t.fp32_latency_ms:.3g} -> {t.latency_ms:.3g} ms ({t.speedup:.2f}x)"
            for t in speed.timings
        )
        lines.append(
            f"  speed vs fp32 (median of {speed.runs} runs, {SPEED_THREADS} thread): {timings}; "
            f"size {speed.fp32_model_bytes / 1e3:.1f} -> {speed.model_bytes / 1e3:.1f} kB"
        )
    return "\n".join(lines)


def _output_errors(output: str, worst: dict[str, float]) -> str:
    text = f"{output} max abs error {worst['max_abs_error']:.3g}, max rel error {worst['max_rel_error']:.3g}"
    if "top1_agreement" in worst:
        text += f", top-1 agreement {worst['top1_agreement']:.1%}"
    return text


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Export a PyTorch model to ONNX, prove parity with ONNX Runtime, and publish it as "
        "<repository>/<name>/<version>/model.onnx. Run 'tau-export examples --repository DIR' to build the "
        "bundled example models instead.",
        epilog="Exit codes: 0 published; 1 export failed, nothing published; 2 bad command line.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="PKG.MODULE:FACTORY", help="callable returning an nn.Module")
    source.add_argument("--torchscript", metavar="FILE", type=Path, help="TorchScript archive (torch.jit.save)")
    parser.add_argument("--weights", metavar="FILE", type=Path, help="state_dict to load into the --model module")
    _add_repository_argument(parser)
    parser.add_argument("--name", required=True, help="model name: the directory under the repository")
    parser.add_argument(
        "--input-shape",
        required=True,
        type=_integer_list,
        metavar="D1,D2,...",
        help="shape of each input without the batch dimension, e.g. 3,32,32",
    )
    parser.add_argument("--version", type=int, help="version number (default: next free, starting at 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace --version if it already exists")
    parser.add_argument("--input-names", type=_name_list, default=["input"], metavar="A,B")
    parser.add_argument("--output-names", type=_name_list, default=["output"], metavar="Y,Z")
    parser.add_argument(
        "--input-datatype", choices=sorted(TORCH_DTYPE_BY_DATATYPE), default="FP32", help="default: FP32"
    )
    parser.add_argument("--labels", type=_name_list, metavar="L1,L2,...", help="class labels of the first output")
    parser.add_argument("--max-batch-size", type=int, default=64, help="written to config.json; default: 64")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's choice)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="precision of the published graph; inputs and outputs keep their datatypes. default: fp32",
    )
    parser.add_argument(
        "--calibration-data",
        type=Path,
        metavar="FILE",
        help="int8-static only: representative inputs, a .npy array [N, *input-shape] or an .npz of one "
        "such array per input name",
    )
    parser.add_argument(
        "--atol",
        type=float,
        help="absolute parity tolerance; default per precision: " + describe_precisions(),
    )
    parser.add_argument("--rtol", type=float, help="relative parity tolerance; default per precision (see --atol)")
    parser.add_argument(
        "--parity-batch-sizes", type=_integer_list, default=[1, 7, 64], metavar="B1,B2,...", help="default: 1,7,64"
    )
    parser.add_argument(
        "--speed-batch-sizes",
        type=_integer_list,
        default=[1, 64],
        metavar="B1,B2,...",
        help="batch sizes at which a reduced precision is timed against fp32; default: 1,64",
    )
    parser.add_argument(
        "--speed-runs",
        type=int,
        default=DEFAULT_SPEED_RUNS,
        help=f"timed runs per batch size (the median is reported); default: {DEFAULT_SPEED_RUNS}",
    )
    return parser


def _examples_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROGRAM} examples",
        description="Train the bundled example models (mlp, cnn) and publish each as version 1, "
        "replacing an existing version 1.",
    )
    _add_repository_argument(parser)
    return parser


def _add_repository_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", required=True, type=Path, help="model repository directory")


def _integer_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-empty names, got {text!r}")
    return names
