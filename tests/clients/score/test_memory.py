"""Memory stays flat: scoring a file far bigger than a chunk peaks near scoring a single chunk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.clients.models import WIDE
from tests.server_process import REPO_ROOT

CHUNK_ROWS = 4096
BIG_ROWS = 51_200  # 200 MiB of float32 rows, 1024 wide
MARGIN_MIB = 100  # well under the 200 MiB that loading the input whole would add

# Run the command as the only child of a fresh interpreter, whose RUSAGE_CHILDREN is then that child's peak.
PEAK_RSS_SCRIPT = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _write_rows(path: Path, rows: int) -> None:
    """Written a chunk at a time, so that the test itself never holds the whole file either."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, WIDE))
    rng = np.random.default_rng(8)
    for start in range(0, rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, rows)
        array[start:stop] = rng.standard_normal((stop - start, WIDE), dtype=np.float32)
    array.flush()
    del array


def _peak_rss_mib(repository: Path, input_path: Path, output: Path) -> float:
    command = [
        sys.executable, "-m", "clients.score.cli", "--local", "--repository", str(repository),
        "--model", "row_sum", "--input", str(input_path), "--output", str(output),
        "--chunk-rows", str(CHUNK_ROWS), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, *command], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) / 1024  # Linux reports KiB


def test_peak_memory_does_not_grow_with_the_input(client_repository: Path, tmp_path: Path) -> None:
    _write_rows(tmp_path / "one_chunk.npy", CHUNK_ROWS)
    _write_rows(tmp_path / "big.npy", BIG_ROWS)
    assert (tmp_path / "big.npy").stat().st_size > 2 * MARGIN_MIB * 2**20
    baseline = _peak_rss_mib(client_repository, tmp_path / "one_chunk.npy", tmp_path / "one_chunk.npy.out.npy")
    big = _peak_rss_mib(client_repository, tmp_path / "big.npy", tmp_path / "big.out.npy")
    assert big - baseline < MARGIN_MIB, f"peak RSS {big:.0f} MiB vs {baseline:.0f} MiB for one chunk"
    sums = np.load(tmp_path / "big.out.npy")
    assert sums.shape == (BIG_ROWS, 1)
    first_rows = np.load(tmp_path / "big.npy", mmap_mode="r")[:3]
    np.testing.assert_allclose(sums[:3, 0], first_rows.sum(axis=1), rtol=1e-4, atol=1e-3)
