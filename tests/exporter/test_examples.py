"""The bundled example models: built by `tau-export examples`, always as version 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.cli import EXIT_OK, main

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_BUNDLED_MODEL_BYTES = 1_000_000


def test_examples_command_publishes_mlp_and_cnn_as_version_one_even_when_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["examples", "--repository", str(tmp_path)]) == EXIT_OK
    assert main(["examples", "--repository", str(tmp_path)]) == EXIT_OK

    stdout = capsys.readouterr().out
    assert "published mlp version 1" in stdout
    assert "published cnn version 1" in stdout
    for name in ("mlp", "cnn"):
        assert sorted(path.name for path in (tmp_path / name).iterdir()) == ["1", "config.json"]
    mlp_config = json.loads((tmp_path / "mlp" / "config.json").read_text())
    cnn_config = json.loads((tmp_path / "cnn" / "config.json").read_text())
    assert mlp_config["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [16]}]
    assert mlp_config["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [3]}]
    assert mlp_config["labels"] == ["low", "medium", "high"]
    assert cnn_config["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [3, 32, 32]}]
    assert cnn_config["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [10]}]
    assert cnn_config["labels"] == [f"class_{index}" for index in range(10)]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_bundled_example_model_is_published_and_small(name: str) -> None:
    version_dir = REPO_ROOT / "models" / name / "1"
    report = json.loads((version_dir / "parity_report.json").read_text())

    assert (REPO_ROOT / "models" / name / "config.json").is_file()
    assert report["passed"] is True
    assert (version_dir / "model.onnx").stat().st_size < MAX_BUNDLED_MODEL_BYTES
