"""How many CPUs this process may really use (affinity and cgroup quota, not the host's core count)."""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _cgroup_cpu_limit() -> float | None:
    try:
        if _CGROUP_V2_CPU_MAX.exists():
            quota, period = _CGROUP_V2_CPU_MAX.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if _CGROUP_V1_QUOTA.exists():
            quota_us = int(_CGROUP_V1_QUOTA.read_text())
            return None if quota_us <= 0 else quota_us / int(_CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a container's CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


_worker_count = 1


def share_cpus_among(worker_count: int) -> None:
    """Worker mode: this process gets 1/worker_count of the CPUs for ONNX Runtime's default threads."""
    global _worker_count
    _worker_count = max(1, worker_count)


def default_intra_op_threads(worker_count: int | None = None) -> int:
    """Half of this worker's share of the usable CPUs, at least one: the gRPC side needs the rest.

    Measured on a 2-core machine: one intra-op thread beat ONNX Runtime's default
    (one per core) by 26% under a gRPC server, whose CPU the pool threads took.
    """
    share = worker_count if worker_count is not None else _worker_count
    return max(1, available_cpus() // (2 * max(1, share)))
