"""A model repository of small real models, and one real server process serving it for the whole session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.onnx_builders import add_sub_model, identity_model, slow_model, variable_width_model
from tests.server_process import ServerProcess, running_server

IDENTITY_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
)


def identity_model_name(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


def build_test_repository(root: Path) -> Path:
    """Good models, plus two that must fail to load without disturbing the others."""
    add_sub_model(root / "add_sub" / "1" / "model.onnx")  # no config.json: served with graph defaults
    for datatype in IDENTITY_DATATYPES:
        model_dir = root / identity_model_name(datatype)
        identity_model(model_dir / "1" / "model.onnx", datatype)
        (model_dir / "config.json").write_text(json.dumps({"max_batch_size": 8}))
    variable_width_model(root / "variable_width" / "1" / "model.onnx")
    slow_model(root / "slow" / "1" / "model.onnx")
    corrupt = root / "corrupt" / "1" / "model.onnx"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"this is not an onnx file")
    mismatched = root / "mismatched_config"
    identity_model(mismatched / "1" / "model.onnx", "FP32")
    (mismatched / "config.json").write_text(
        json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [5]}]})
    )
    return root


@pytest.fixture(scope="session")
def test_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    with running_server(test_repository, log_path) as process:
        yield process
