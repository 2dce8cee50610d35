"""Reduced-precision exports of the trained example models: each proven against fp32 PyTorch and timed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest

from exporter import CalibrationDataError, ExportArgumentError, ExportResult, ParityError, export_model
from exporter.examples import CNN_IMAGE_SHAPE, MLP_FEATURES, SmallCNN, TabularMLP, train_cnn, train_mlp

# Few timed runs: the tests check the speed figures are recorded, not what they are.
SPEED_BATCH_SIZES = (1, 8)
SPEED_RUNS = 3
CALIBRATION_ROWS = 128


@pytest.fixture(scope="module")
def mlp() -> TabularMLP:
    return train_mlp()


@pytest.fixture(scope="module")
def cnn() -> SmallCNN:
    return train_cnn()


def calibration_for(input_shape: tuple[int, ...], rows: int = CALIBRATION_ROWS) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((rows, *input_shape), dtype=np.float32)


def export_mlp(mlp: TabularMLP, repository: Path, precision: str, **options: Any) -> ExportResult:
    return export_model(
        mlp,
        repository=repository,
        name="mlp",
        input_shape=(MLP_FEATURES,),
        input_names=("features",),
        output_names=("probabilities",),
        precision=precision,
        speed_batch_sizes=SPEED_BATCH_SIZES,
        speed_runs=SPEED_RUNS,
        **options,
    )


def export_cnn(cnn: SmallCNN, repository: Path, precision: str, **options: Any) -> ExportResult:
    return export_model(
        cnn,
        repository=repository,
        name="cnn",
        input_shape=CNN_IMAGE_SHAPE,
        input_names=("pixels",),
        output_names=("logits",),
        precision=precision,
        speed_batch_sizes=SPEED_BATCH_SIZES,
        speed_runs=SPEED_RUNS,
        **options,
    )


@pytest.fixture(scope="module")
def mlp_fp16(mlp: TabularMLP, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export_mlp(mlp, tmp_path_factory.mktemp("repository"), "fp16")


@pytest.fixture(scope="module")
def mlp_int8_static(mlp: TabularMLP, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export_mlp(
        mlp, tmp_path_factory.mktemp("repository"), "int8-static", calibration_data=calibration_for((MLP_FEATURES,))
    )


def initializer_types(model_path: Path) -> set[int]:
    return {initializer.data_type for initializer in onnx.load(str(model_path)).graph.initializer}


def io_element_types(model_path: Path) -> list[int]:
    graph = onnx.load(str(model_path)).graph
    return [value.type.tensor_type.elem_type for value in [*graph.input, *graph.output]]


def test_fp16_mlp_has_fp16_weights_and_passes_with_fp16_tolerances(mlp_fp16: ExportResult) -> None:
    assert mlp_fp16.parity.passed
    assert (mlp_fp16.parity.atol, mlp_fp16.parity.rtol) == (1e-2, 1e-2)
    assert onnx.TensorProto.FLOAT16 in initializer_types(mlp_fp16.model_path)
    assert mlp_fp16.parity.max_errors()["probabilities"]["max_abs_error"] > 0  # it really is a different graph


def test_fp16_keeps_fp32_inputs_and_outputs_so_config_and_clients_do_not_change(mlp_fp16: ExportResult) -> None:
    session = onnxruntime.InferenceSession(str(mlp_fp16.model_path), providers=["CPUExecutionProvider"])

    (probabilities,) = session.run(None, {"features": np.ones((5, MLP_FEATURES), dtype=np.float32)})

    assert io_element_types(mlp_fp16.model_path) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert probabilities.dtype == np.float32
    assert mlp_fp16.config["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [MLP_FEATURES]}]
    assert mlp_fp16.config["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [3]}]


def test_onnxruntime_tools_leave_sys_path_as_it_was(mlp_fp16: ExportResult) -> None:
    # onnxruntime.transformers appends its own directory on import; the exporter undoes that.
    assert not any(Path(entry).parts[-2:] == ("onnxruntime", "transformers") for entry in sys.path)


def test_fp16_cnn_passes_parity_on_the_cpu_execution_provider(cnn: SmallCNN, tmp_path: Path) -> None:
    result = export_cnn(cnn, tmp_path, "fp16")

    assert result.parity.passed
    assert onnx.TensorProto.FLOAT16 in initializer_types(result.model_path)
    assert result.parity.top1_agreement("logits") == 1.0


def test_int8_dynamic_mlp_quantizes_linear_weights_and_passes(mlp: TabularMLP, tmp_path: Path) -> None:
    result = export_mlp(mlp, tmp_path, "int8-dynamic")
    op_types = {node.op_type for node in onnx.load(str(result.model_path)).graph.node}

    assert result.parity.passed
    assert (result.parity.atol, result.parity.rtol) == (0.05, 0.1)
    assert "MatMulInteger" in op_types
    assert onnx.TensorProto.INT8 in initializer_types(result.model_path)


def test_int8_static_mlp_passes_on_its_calibration_data(mlp_int8_static: ExportResult) -> None:
    assert mlp_int8_static.parity.passed
    assert mlp_int8_static.parity.input_source == "calibration data"
    assert io_element_types(mlp_int8_static.model_path) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]


def test_int8_static_cnn_is_qdq_with_per_channel_int8_weights_and_passes(cnn: SmallCNN, tmp_path: Path) -> None:
    result = export_cnn(cnn, tmp_path, "int8-static", calibration_data=calibration_for(CNN_IMAGE_SHAPE))
    model = onnx.load(str(result.model_path))
    op_types = {node.op_type for node in model.graph.node}
    scale_lengths = {tuple(tensor.dims) for tensor in model.graph.initializer if tensor.name.endswith("_scale")}

    assert result.parity.passed
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= op_types
    assert onnx.TensorProto.INT8 in initializer_types(result.model_path)
    assert {(16,), (32,)} <= scale_lengths, "per-channel: one weight scale per output channel of each Conv"
    assert result.parity.top1_agreement("logits") is not None


def test_report_records_precision_tolerances_errors_top1_and_speed(mlp_int8_static: ExportResult) -> None:
    report = json.loads(mlp_int8_static.report_path.read_text())

    assert report["passed"] is True
    assert report["precision"] == "int8-static"
    assert report["tolerances"] == {"atol": 0.1, "rtol": 0.1}
    assert report["input_source"] == "calibration data"
    errors = report["outputs"]["probabilities"]
    assert 0 < errors["max_abs_error"] <= 0.1 + 0.1 * 1.0
    assert 0 <= errors["max_rel_error"]
    assert 0.9 <= errors["top1_agreement"] <= 1.0
    assert report["conversion"]["tool"] == "onnxruntime.quantization.quantize_static"
    assert report["conversion"]["calibration_rows"] == CALIBRATION_ROWS
    speed = report["speed"]
    assert (speed["baseline"], speed["statistic"], speed["intra_op_num_threads"]) == ("fp32", "median", 1)
    assert speed["model_bytes"] > 0 and speed["fp32_model_bytes"] > 0
    assert [batch["batch_size"] for batch in speed["batches"]] == [1, 8]
    for batch in speed["batches"]:
        assert batch["fp32_latency_ms"] > 0 and batch["latency_ms"] > 0
        assert batch["speedup"] == pytest.approx(batch["fp32_latency_ms"] / batch["latency_ms"])
        assert batch["throughput_samples_per_s"] == pytest.approx(batch["batch_size"] / batch["latency_ms"] * 1e3)


def test_reduced_precision_publishes_one_self_contained_model_file(mlp_int8_static: ExportResult) -> None:
    model = onnx.load(str(mlp_int8_static.model_path), load_external_data=False)

    assert sorted(path.name for path in mlp_int8_static.version_dir.iterdir()) == ["model.onnx", "parity_report.json"]
    assert all(not onnx.external_data_helper.uses_external_data(tensor) for tensor in model.graph.initializer)


def test_fp32_export_records_no_conversion_and_no_speed_comparison(mlp: TabularMLP, tmp_path: Path) -> None:
    result = export_mlp(mlp, tmp_path, "fp32")
    report = json.loads(result.report_path.read_text())

    assert (report["precision"], report["conversion"], report["speed"]) == ("fp32", None, None)
    assert result.speed is None


def test_too_tight_tolerance_raises_parity_error_and_publishes_nothing(mlp: TabularMLP, tmp_path: Path) -> None:
    with pytest.raises(ParityError, match=r"ONNX Runtime \(int8-dynamic graph\) disagrees .* atol=1e-06") as raised:
        export_mlp(mlp, tmp_path, "int8-dynamic", atol=1e-6, rtol=0.0)

    assert raised.value.report.precision == "int8-dynamic"
    assert list(tmp_path.iterdir()) == []


def test_int8_static_without_calibration_data_fails_before_exporting(mlp: TabularMLP, tmp_path: Path) -> None:
    with pytest.raises(CalibrationDataError, match=r"int8-static quantization needs calibration data.*\[N, 16\]"):
        export_mlp(mlp, tmp_path, "int8-static")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (np.zeros((8, 15), np.float32), r"expected shape \[N, 16\] \(N samples\), got \[8, 15\]"),
        (np.zeros(16, np.float32), r"expected shape \[N, 16\] \(N samples\), got \[16\]"),
        (np.zeros((8, 16), np.float64), r"expected dtype float32, the model input's dtype, got float64"),
        ({"pixels": np.zeros((8, 16), np.float32)}, r"expected the model's inputs \['features'\]"),
    ],
)
def test_calibration_data_that_does_not_fit_the_input_is_rejected(
    mlp: TabularMLP, tmp_path: Path, calibration: object, message: str
) -> None:
    with pytest.raises(CalibrationDataError, match=message):
        export_mlp(mlp, tmp_path, "int8-static", calibration_data=calibration)

    assert list(tmp_path.iterdir()) == []


def test_calibration_data_with_another_precision_is_rejected(mlp: TabularMLP, tmp_path: Path) -> None:
    with pytest.raises(ExportArgumentError, match="calibration data is used by int8-static only"):
        export_mlp(mlp, tmp_path, "fp16", calibration_data=calibration_for((MLP_FEATURES,)))


def test_unknown_precision_is_rejected_with_the_choices(mlp: TabularMLP, tmp_path: Path) -> None:
    with pytest.raises(ExportArgumentError, match="precision 'int4' is not supported; expected one of: fp32, fp16"):
        export_mlp(mlp, tmp_path, "int4")
