"""export_model end to end: real torch.onnx export, real ONNX Runtime, a real repository in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from exporter import (
    ConversionError,
    ExportResult,
    FixedBatchError,
    InputShapeError,
    ParityError,
    RepositoryError,
    export_model,
)
from exporter.examples import build_cnn, build_mlp
from tests.exporter.fixtures_module import build_batch_of_two, build_eigenvalues, build_tiny

MLP_LABELS = ["low", "medium", "high"]


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    torch.manual_seed(0)
    return export_model(
        build_mlp(),
        repository=tmp_path_factory.mktemp("repository"),
        name="mlp",
        input_shape=(16,),
        input_names=("features",),
        output_names=("probabilities",),
        labels=MLP_LABELS,
    )


def test_mlp_export_passes_parity_and_saves_report_beside_model(mlp_export: ExportResult) -> None:
    report = json.loads(mlp_export.report_path.read_text())

    assert mlp_export.report_path.parent == mlp_export.model_path.parent == mlp_export.version_dir
    assert report["passed"] is True
    assert report["batch_sizes"] == [1, 7, 64]
    assert report["tolerances"] == {"atol": 1e-4, "rtol": 1e-3}
    assert report["opset"] == mlp_export.opset
    assert report["torch_version"] == torch.__version__
    assert report["onnxruntime_version"] == onnxruntime.__version__
    assert report["outputs"]["probabilities"]["max_abs_error"] <= 1e-4
    assert {check["batch_size"] for check in report["checks"]} == {1, 7, 64}


def test_mlp_export_publishes_version_one_of_a_new_model(mlp_export: ExportResult) -> None:
    assert mlp_export.version == 1
    assert mlp_export.version_dir.name == "1"
    assert mlp_export.version_dir.parent.name == "mlp"


def test_config_json_describes_tensors_without_batch_dimension(mlp_export: ExportResult) -> None:
    config = json.loads(mlp_export.config_path.read_text())

    assert mlp_export.config_path == mlp_export.version_dir.parent / "config.json"
    assert config == {
        "name": "mlp",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 64,
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [16]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [3]}],
        "labels": MLP_LABELS,
    }
    assert list(config) == ["name", "platform", "max_batch_size", "inputs", "outputs", "labels"]


def test_exported_batch_dimension_is_symbolic_and_serves_unseen_batch_size(mlp_export: ExportResult) -> None:
    model = onnx.load(str(mlp_export.model_path))
    session = onnxruntime.InferenceSession(str(mlp_export.model_path), providers=["CPUExecutionProvider"])

    (probabilities,) = session.run(None, {"features": np.ones((5, 16), dtype=np.float32)})

    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param, value.name
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_version_directory_holds_one_self_contained_model_file(mlp_export: ExportResult) -> None:
    model = onnx.load(str(mlp_export.model_path), load_external_data=False)

    assert sorted(path.name for path in mlp_export.version_dir.iterdir()) == ["model.onnx", "parity_report.json"]
    assert all(not onnx.external_data_helper.uses_external_data(tensor) for tensor in model.graph.initializer)
    assert sorted(path.name for path in mlp_export.version_dir.parent.iterdir()) == ["1", "config.json"]


def test_cnn_with_conv_batchnorm_pooling_and_flatten_exports(tmp_path: Path) -> None:
    result = export_model(
        build_cnn(), repository=tmp_path, name="cnn", input_shape=(3, 32, 32), parity_batch_sizes=(1, 3)
    )

    assert result.parity.passed
    assert result.config["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [10]}]
    assert result.config["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [3, 32, 32]}]
    assert "labels" not in result.config


def test_parity_failure_raises_and_publishes_nothing(tmp_path: Path) -> None:
    module = build_tiny()

    with pytest.raises(ParityError, match=r"output 'output' at batch size 1: max abs error 1"):
        export_model(
            module,
            repository=tmp_path,
            name="tiny",
            input_shape=(16,),
            reference=lambda features: module(features) + 1.0,
        )

    assert list(tmp_path.iterdir()) == []


def test_next_free_version_follows_the_highest_existing_one(tmp_path: Path) -> None:
    first = export_model(build_tiny(), repository=tmp_path, name="tiny", input_shape=(16,), parity_batch_sizes=(1,))
    (tmp_path / "tiny" / "7").mkdir()

    second = export_model(build_tiny(), repository=tmp_path, name="tiny", input_shape=(16,), parity_batch_sizes=(1,))

    assert (first.version, second.version) == (1, 8)


def test_existing_version_is_kept_unless_overwrite_is_asked(tmp_path: Path) -> None:
    export_model(build_tiny(), repository=tmp_path, name="tiny", input_shape=(16,), parity_batch_sizes=(1,))
    with pytest.raises(RepositoryError, match="version 1 of model 'tiny' already exists"):
        export_model(build_tiny(), repository=tmp_path, name="tiny", input_shape=(16,), version=1)

    replaced = export_model(
        build_tiny(), repository=tmp_path, name="tiny", input_shape=(16,), version=1, overwrite=True
    )

    assert replaced.version == 1
    assert sorted(path.name for path in (tmp_path / "tiny").iterdir()) == ["1", "config.json"]


def test_model_rejecting_the_input_shape_is_reported_with_the_shape(tmp_path: Path) -> None:
    with pytest.raises(InputShapeError, match=r"model rejected an input of shape \[2, 5\]"):
        export_model(build_tiny(), repository=tmp_path, name="tiny", input_shape=(5,))

    assert list(tmp_path.iterdir()) == []


def test_operator_without_onnx_translation_raises_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="linalg_eig"):
        export_model(build_eigenvalues(), repository=tmp_path, name="eig", input_shape=(16,))

    assert list(tmp_path.iterdir()) == []


def test_model_that_fixes_the_batch_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FixedBatchError, match=r"fixes the batch dimension .* 'input' \[2, 16\]"):
        export_model(build_batch_of_two(), repository=tmp_path, name="fixed", input_shape=(16,))

    assert list(tmp_path.iterdir()) == []
