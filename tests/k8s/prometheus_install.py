"""Finds Prometheus and promtool, installing Debian's prometheus package once when they are missing."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

APT_TIMEOUT_S = 240


@functools.cache
def ensure_prometheus() -> tuple[str, str] | None:
    """(prometheus path, promtool path); tries `apt-get install prometheus` once per process, None if that fails."""
    found = _find_prometheus()
    if found is None and _can_apt_install():
        _apt_install_prometheus()
        found = _find_prometheus()
    return found


def _find_prometheus() -> tuple[str, str] | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return (prometheus, promtool) if prometheus and promtool else None


def _can_apt_install() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def _apt_install_prometheus() -> None:
    # Recommends would pull in node-exporter and friends; the lock timeout waits out a concurrent apt run.
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120", "prometheus"]
    if _apt(install):
        return
    # A fresh machine may have no package lists yet.
    if _apt(["apt-get", "update", "-o", "DPkg::Lock::Timeout=120"]):
        _apt(install)


def _apt(command: list[str]) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0
