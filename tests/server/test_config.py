"""config.json parsing: defaults, every knob, and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.config import ConfigError, ModelConfig, TensorSpec, parse_model_config
from server.config_files import load_model_config


def test_missing_config_file_gives_all_defaults(tmp_path: Path) -> None:
    config = load_model_config(tmp_path / "mlp")
    assert config == ModelConfig(name="mlp")
    assert config.inputs is None and config.max_batch_size is None


def test_full_config_is_parsed() -> None:
    config = parse_model_config(
        {
            "name": "mlp",
            "max_batch_size": 32,
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [16]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [3]}],
            "execution_providers": ["cuda", "cpu"],
            "require_gpu": True,
            "instance_count": 2,
            "intra_op_threads": 1,
            "dynamic_batching": {"max_queue_delay_microseconds": 500, "preferred_batch_sizes": [8, 16]},
            "labels": ["a", "b", "c"],
        },
        "mlp",
    )
    assert config.max_batch_size == 32
    assert config.inputs == (TensorSpec("features", "FP32", (16,)),)
    assert config.execution_providers == ("cuda", "cpu")
    assert config.require_gpu and config.instance_count == 2
    assert config.dynamic_batching.preferred_batch_sizes == (8, 16)
    assert config.labels == ("a", "b", "c")


def test_batching_can_be_turned_off() -> None:
    assert parse_model_config({"dynamic_batching": False}, "m").dynamic_batching.enabled is False
    assert parse_model_config({"dynamic_batching": {"enabled": False}}, "m").dynamic_batching.enabled is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"max_batch_size": -1}, "max_batch_size: expected a non-negative integer"),
        ({"max_batch_size": True}, "max_batch_size: expected a non-negative integer"),
        ({"name": "other"}, "does not match the model folder"),
        ({"platform": "tensorflow_savedmodel"}, "platform: expected 'onnxruntime_onnx'"),
        ({"execution_providers": ["rocm"]}, "execution_providers: expected some of"),
        ({"instance_count": 0}, "instance_count: expected at least 1"),
        ({"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}, "inputs[0].datatype: expected one of"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0]}]}, "inputs[0].shape: expected positive"),
        ({"inputs": [{"name": "x", "datatype": "FP32"}]}, "inputs[0].shape: expected a list"),
        ({"max_batch_sise": 4}, "unknown keys ['max_batch_sise']"),
        ({"dynamic_batching": {"max_queue_delay_ms": 1}}, "dynamic_batching: unknown keys"),
        ({"dynamic_batching": {"max_queue_size": 0}}, "dynamic_batching.max_queue_size: expected at least 1"),
        ({"dynamic_batching": {"priority_levels": 2, "default_priority_level": 3}}, "default_priority_level: 3"),
    ],
)
def test_bad_config_raises_naming_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_model_config(raw, "m")
    assert message in str(error.value)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        load_model_config(tmp_path)


def test_config_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_batch_size": 4}))
    assert load_model_config(tmp_path).max_batch_size == 4
