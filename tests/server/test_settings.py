"""Settings come from flags, then TAU_* variables, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cpus import available_cpus, default_intra_op_threads
from server.settings import Settings, load_settings


def test_defaults_follow_triton() -> None:
    settings = load_settings([], environ={})
    assert settings == Settings()
    assert (settings.grpc_port, settings.metrics_port) == (8001, 8002)


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    environ = {"TAU_GRPC_PORT": "9001", "TAU_MODEL_REPOSITORY": "/srv/models", "TAU_STRICT_READINESS": "false"}
    from_env = load_settings([], environ=environ)
    assert from_env.grpc_port == 9001
    assert from_env.model_repository == Path("/srv/models")
    assert from_env.strict_readiness is False
    assert load_settings(["--grpc-port", "7001"], environ=environ).grpc_port == 7001


def test_bad_environment_value_exits_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings([], environ={"TAU_GRPC_PORT": "eighty"})
    assert "TAU_GRPC_PORT='eighty'" in capsys.readouterr().err


def test_intra_op_threads_leave_room_for_the_grpc_side() -> None:
    assert 1 <= default_intra_op_threads() <= max(1, available_cpus() // 2)
