"""tau-export's command line: each form end to end, and each failure as exit code 1 with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exporter.cli import EXIT_EXPORT_FAILED, EXIT_OK, EXIT_USAGE, main
from tests.exporter.fixtures_module import build_tiny, build_wider

TINY = "tests.exporter.fixtures_module:build_tiny"


def export_arguments(repository: Path, *extra: str, model: str = TINY, input_shape: str = "16") -> list[str]:
    return [
        "--model",
        model,
        "--repository",
        str(repository),
        "--name",
        "tiny",
        "--input-shape",
        input_shape,
        "--parity-batch-sizes",
        "1,3",
        *extra,
    ]


def assert_failed_with(exit_code: int, capsys: pytest.CaptureFixture[str], message: str) -> None:
    stderr = capsys.readouterr().err
    assert exit_code == EXIT_EXPORT_FAILED
    assert stderr.startswith("tau-export: error: ")
    assert message in stderr


def test_model_reference_with_weights_is_exported_with_those_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = build_tiny()
    with torch.no_grad():
        trained.out.bias.fill_(3.0)
        trained.out.weight.zero_()
    torch.save(trained.state_dict(), tmp_path / "weights.pt")

    exit_code = main(
        export_arguments(
            tmp_path / "models", "--weights", str(tmp_path / "weights.pt"), "--labels", "a,b,c", "--max-batch-size", "8"
        )
    )

    stdout = capsys.readouterr().out
    report = json.loads((tmp_path / "models" / "tiny" / "1" / "parity_report.json").read_text())
    config = json.loads((tmp_path / "models" / "tiny" / "config.json").read_text())
    assert exit_code == EXIT_OK
    assert "published tiny version 1" in stdout
    assert f"opset {report['opset']}" in stdout
    assert report["batch_sizes"] == [1, 3]
    assert config["max_batch_size"] == 8
    assert config["labels"] == ["a", "b", "c"]


def test_torchscript_module_is_exported_with_the_torchscript_exporter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.jit.save(torch.jit.script(build_tiny()), str(tmp_path / "tiny.pt"))

    exit_code = main(
        [
            "--torchscript",
            str(tmp_path / "tiny.pt"),
            "--repository",
            str(tmp_path / "models"),
            "--name",
            "scripted",
            "--input-shape",
            "16",
        ]
    )

    report = json.loads((tmp_path / "models" / "scripted" / "1" / "parity_report.json").read_text())
    assert exit_code == EXIT_OK, capsys.readouterr().err
    assert report["exporter"] == "torchscript"
    assert report["passed"] is True


def test_module_that_does_not_import_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, model="tests.exporter.no_such_module:build"))

    assert_failed_with(exit_code, capsys, "cannot import module 'tests.exporter.no_such_module'")


def test_missing_factory_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, model="tests.exporter.fixtures_module:build_nothing"))

    assert_failed_with(exit_code, capsys, "has no attribute 'build_nothing'")


def test_factory_that_raises_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, model="tests.exporter.fixtures_module:build_broken"))

    assert_failed_with(exit_code, capsys, "raised RuntimeError: factory failed on purpose")


def test_weights_of_another_architecture_are_reported_with_the_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(build_wider().state_dict(), tmp_path / "wider.pt")

    exit_code = main(export_arguments(tmp_path / "models", "--weights", str(tmp_path / "wider.pt")))

    assert_failed_with(
        exit_code, capsys, "size mismatch for 'hidden.weight': module expects [8, 16], weights have [12, 16]"
    )
    assert not (tmp_path / "models").exists()


def test_weights_with_missing_and_unexpected_keys_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dict = build_tiny().state_dict()
    state_dict["extra.weight"] = state_dict.pop("out.weight")
    torch.save(state_dict, tmp_path / "renamed.pt")

    exit_code = main(export_arguments(tmp_path / "models", "--weights", str(tmp_path / "renamed.pt")))

    assert_failed_with(exit_code, capsys, "missing keys ['out.weight']; unexpected keys ['extra.weight']")


def test_input_shape_the_model_rejects_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, input_shape="5"))

    assert_failed_with(exit_code, capsys, "model rejected an input of shape [2, 5]")


def test_operator_the_exporter_cannot_convert_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, model="tests.exporter.fixtures_module:build_eigenvalues"))

    assert_failed_with(exit_code, capsys, "could not convert the model")


def test_malformed_input_shape_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, input_shape="3,x"))

    assert exit_code == EXIT_USAGE
    assert "expected comma-separated integers" in capsys.readouterr().err


def test_weights_with_torchscript_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(
        [
            "--torchscript",
            "m.pt",
            "--weights",
            "w.pt",
            "--repository",
            str(tmp_path),
            "--name",
            "m",
            "--input-shape",
            "4",
        ]
    )

    assert exit_code == EXIT_USAGE
    assert "--weights applies to --model only" in capsys.readouterr().err


def test_int8_static_with_npz_calibration_reports_parity_and_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(tmp_path / "calibration.npz", input=np.random.default_rng(0).standard_normal((64, 16), dtype=np.float32))

    exit_code = main(
        export_arguments(
            tmp_path / "models",
            "--precision",
            "int8-static",
            "--calibration-data",
            str(tmp_path / "calibration.npz"),
            "--speed-batch-sizes",
            "1,4",
            "--speed-runs",
            "2",
        )
    )

    stdout = capsys.readouterr().out
    report = json.loads((tmp_path / "models" / "tiny" / "1" / "parity_report.json").read_text())
    assert exit_code == EXIT_OK
    assert "int8-static" in stdout
    assert "on calibration data inputs (atol 0.1, rtol 0.1)" in stdout
    assert "speed vs fp32 (median of 2 runs, 1 thread): batch 1 " in stdout
    assert report["precision"] == "int8-static"
    assert [batch["batch_size"] for batch in report["speed"]["batches"]] == [1, 4]


def test_atol_and_rtol_override_the_precision_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(
        export_arguments(
            tmp_path / "models", "--precision", "fp16", "--atol", "0.02", "--rtol", "0.03", "--speed-runs", "1"
        )
    )

    report = json.loads((tmp_path / "models" / "tiny" / "1" / "parity_report.json").read_text())
    assert exit_code == EXIT_OK, capsys.readouterr().err
    assert report["tolerances"] == {"atol": 0.02, "rtol": 0.03}


def test_int8_static_without_calibration_data_fails_and_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(export_arguments(tmp_path / "models", "--precision", "int8-static"))

    assert_failed_with(exit_code, capsys, "int8-static quantization needs calibration data")
    assert not (tmp_path / "models").exists()


def test_unknown_precision_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(export_arguments(tmp_path, "--precision", "int4"))

    assert exit_code == EXIT_USAGE
    assert "invalid choice: 'int4'" in capsys.readouterr().err
