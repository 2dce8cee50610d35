"""Rows that cannot be scored are listed in <output>.errors.csv, absent from the output, and exit 3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.clients.models import GATHER_TABLE
from tests.clients.score.scoring import error_rows, output_matrix, read_table, run_score
from tests.server_process import ServerProcess

BAD_ROWS = [7, 300, 301, 599]


@pytest.fixture(scope="module")
def indices() -> np.ndarray:
    """Gather indices, valid except at BAD_ROWS (out of the table's range, so the model run fails)."""
    values = np.random.default_rng(5).integers(0, 10, (600, 1)).astype(np.int64)
    values[BAD_ROWS] = [[50], [-11], [10], [99]]
    return values


def _check_only_bad_rows_failed(out: Path, indices: np.ndarray) -> None:
    good = np.setdiff1d(np.arange(len(indices)), BAD_ROWS)
    table = read_table(out)
    np.testing.assert_array_equal(table.column("row").to_numpy(), good)
    np.testing.assert_array_equal(output_matrix(table, "OUTPUT0")[:, 0], GATHER_TABLE[indices[good, 0]])
    assert sorted(error_rows(out)) == BAD_ROWS


def test_rows_the_server_rejects_are_isolated_one_by_one(
    client_server: ServerProcess, indices: np.ndarray, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", indices)
    out = tmp_path / "out.parquet"
    # Requests of 64 rows, 8 in flight: the server batches them, so a bad row fails its batch-mates too.
    code = run_score("--url", client_server.address, "--model", "gather", "--input", tmp_path / "in.npy",
                     "--output", out, "--chunk-rows", "256", "--concurrency", "8", "--quiet")  # fmt: skip
    assert code == 3
    _check_only_bad_rows_failed(out, indices)
    assert all(reason.startswith("INTERNAL: ") for reason in error_rows(out).values())


def test_rows_local_onnx_runtime_rejects_are_isolated_too(
    client_repository: Path, indices: np.ndarray, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", indices)
    out = tmp_path / "out.parquet"
    code = run_score("--local", "--repository", client_repository, "--model", "gather", "--input",
                     tmp_path / "in.npy", "--output", out, "--chunk-rows", "256", "--quiet")  # fmt: skip
    assert code == 3
    _check_only_bad_rows_failed(out, indices)
    assert all("ONNX Runtime" in reason for reason in error_rows(out).values())


def test_reject_nan_fails_non_finite_rows_and_without_it_they_are_scored(
    client_server: ServerProcess, tmp_path: Path
) -> None:
    features = np.random.default_rng(6).standard_normal((200, 16)).astype(np.float32)
    features[3, 0], features[10, 15], features[150, 7] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "in.npy", features)
    common = ["--url", client_server.address, "--model", "mlp", "--input", tmp_path / "in.npy", "--quiet"]
    assert run_score(*common, "--output", tmp_path / "strict.npy", "--reject-nan") == 3
    assert sorted(error_rows(tmp_path / "strict.npy")) == [3, 10, 150]
    assert "NaN or infinite value in input 'features'" in error_rows(tmp_path / "strict.npy")[3]
    assert np.load(tmp_path / "strict.npy").shape == (197, 3)
    assert run_score(*common, "--output", tmp_path / "lenient.npy") == 0
    assert np.load(tmp_path / "lenient.npy").shape == (200, 3)
    assert not (tmp_path / "lenient.npy.errors.csv").exists()


def test_null_cells_fail_their_row(client_server: ServerProcess, tmp_path: Path) -> None:
    columns = {f"f{i}": pa.array(np.ones(50, np.float32)) for i in range(16)}
    columns["f4"] = pa.array([None if row in (2, 40) else 1.0 for row in range(50)], pa.float32())
    pq.write_table(pa.table(columns), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    code = run_score("--url", client_server.address, "--model", "mlp", "--input", tmp_path / "in.parquet",
                     "--output", out, "--quiet")  # fmt: skip
    assert code == 3
    assert error_rows(out) == {2: "null value in column 'f4'", 40: "null value in column 'f4'"}
    assert len(read_table(out)) == 48
