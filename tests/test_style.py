"""The code base stays ruff clean (lint and format), as STYLE.md asks."""

from __future__ import annotations

import subprocess
import sys

from tests.server_process import REPO_ROOT


def test_ruff_lint_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean_on_the_packages() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "server", "clients", "exporter"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
