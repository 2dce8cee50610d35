"""Where a model's configuration comes from: its folder's config.json (Tau's form), else its
config.pbtxt (Triton's, so a Triton repository of ONNX models can be served as it is), else defaults."""

from __future__ import annotations

import json
from pathlib import Path

from server.config import CONFIG_FILE_NAME, ConfigError, ModelConfig, parse_model_config
from server.triton_config import from_triton_json, read_config_pbtxt

TRITON_CONFIG_FILE_NAME = "config.pbtxt"
# Both are watched in poll mode; config.json wins when a folder has both.
CONFIG_FILE_NAMES = (CONFIG_FILE_NAME, TRITON_CONFIG_FILE_NAME)


def load_model_config(model_dir: Path) -> ModelConfig:
    """The model's ModelConfig from config.json or config.pbtxt, or all defaults when it has neither."""
    path = model_dir / CONFIG_FILE_NAME
    if path.exists():
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: not valid JSON: {error}") from error
    elif (model_dir / TRITON_CONFIG_FILE_NAME).exists():
        path = model_dir / TRITON_CONFIG_FILE_NAME
        try:
            raw = from_triton_json(read_config_pbtxt(path), model_dir)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from error
    else:
        return ModelConfig(name=model_dir.name)
    try:
        return parse_model_config(raw, model_dir.name)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error
