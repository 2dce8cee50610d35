"""The repository layout rules: version numbering, config.json text, atomic publication."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.errors import ExportArgumentError, RepositoryError
from exporter.repository import (
    TensorSpec,
    check_model_name,
    choose_version,
    model_config,
    publish_version,
    render_config,
)


def staged_file(directory: Path, name: str, content: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(content)
    return path


def test_config_renders_one_key_per_line_with_shapes_excluding_batch() -> None:
    config = model_config(
        name="mlp",
        max_batch_size=64,
        inputs=[TensorSpec("input", "FP32", (16,))],
        outputs=[TensorSpec("output", "FP32", (3,))],
        labels=["class_a", "class_b", "class_c"],
    )

    assert render_config(config) == (
        "{\n"
        '  "name": "mlp",\n'
        '  "platform": "onnxruntime_onnx",\n'
        '  "max_batch_size": 64,\n'
        '  "inputs": [{"name": "input", "datatype": "FP32", "shape": [16]}],\n'
        '  "outputs": [{"name": "output", "datatype": "FP32", "shape": [3]}],\n'
        '  "labels": ["class_a", "class_b", "class_c"]\n'
        "}\n"
    )


def test_config_has_no_labels_key_without_labels() -> None:
    config = model_config(name="m", max_batch_size=8, inputs=[], outputs=[], labels=None)

    assert "labels" not in json.loads(render_config(config))


def test_first_version_of_a_new_model_is_one(tmp_path: Path) -> None:
    assert choose_version(tmp_path, "new", None, overwrite=False) == 1


def test_next_version_ignores_hidden_and_non_numeric_directories(tmp_path: Path) -> None:
    for directory in ("1", "3", ".tmp-abc", "latest"):
        (tmp_path / "m" / directory).mkdir(parents=True)

    assert choose_version(tmp_path, "m", None, overwrite=False) == 4


def test_publishing_over_an_existing_version_needs_overwrite(tmp_path: Path) -> None:
    publish_version([staged_file(tmp_path / "a", "model.onnx", "old")], tmp_path / "repo", "m", 1, overwrite=False)
    new_file = staged_file(tmp_path / "b", "model.onnx", "new")

    with pytest.raises(RepositoryError):
        publish_version([new_file], tmp_path / "repo", "m", 1, overwrite=False)
    publish_version([new_file], tmp_path / "repo", "m", 1, overwrite=True)

    assert (tmp_path / "repo" / "m" / "1" / "model.onnx").read_text() == "new"
    assert sorted(path.name for path in (tmp_path / "repo" / "m").iterdir()) == ["1"]


@pytest.mark.parametrize("name", ["", ".hidden", "../escape", "a/b", "-flag"])
def test_model_name_must_be_a_plain_directory_name(name: str) -> None:
    with pytest.raises(ExportArgumentError):
        check_model_name(name)
