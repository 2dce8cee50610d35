"""A killed tau-score run resumes where it stopped and ends with exactly the output of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clients.score import ScoringError, score_file
from clients.score.checkpoint import CHECKPOINT_FILE_NAME, part_path
from clients.score.chunks import Chunk, ChunkResult
from clients.score.pipeline import ChunkScorer
from tests.clients.score.scoring import output_matrix, read_table, run_score
from tests.server_process import REPO_ROOT, ServerProcess

ROWS = 16_000
CHUNK_ROWS = 1000


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume_input") / "in.npy"
    np.save(path, np.random.default_rng(7).standard_normal((ROWS, 4)).astype(np.float32))
    return path


def _command(server: ServerProcess, rows_file: Path, output: Path, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "clients.score.cli", "--url", server.address, "--model", "identity_delayed",
        "--input", str(rows_file), "--output", str(output), "--chunk-rows", str(CHUNK_ROWS),
        "--request-rows", "100", "--concurrency", str(concurrency), "--quiet",
    ]  # fmt: skip


def _claimed(parts_dir: Path) -> set[int]:
    try:
        runs = json.loads((parts_dir / CHECKPOINT_FILE_NAME).read_text())["completed"]
    except FileNotFoundError:
        return set()
    return {chunk for first, last in runs for chunk in range(first, last + 1)}


def _kill_once_claimed(command: list[str], parts_dir: Path, chunks: int, log: Path) -> set[int]:
    """Run the command and SIGKILL it as soon as the checkpoint claims `chunks` chunks."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + 60
    while len(_claimed(parts_dir)) < chunks:
        assert process.poll() is None, f"finished before it could be killed:\n{log.read_text()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    claimed = _claimed(parts_dir)
    # The checkpoint never claims a chunk whose part is not on disk.
    assert all(part_path(parts_dir, chunk).is_file() for chunk in claimed)
    return claimed


def test_killed_twice_then_resumed_equals_an_uninterrupted_run(
    client_server: ServerProcess, rows_file: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(_command(client_server, rows_file, reference, 8), cwd=REPO_ROOT, env=env, timeout=60)
    assert done.returncode == 0

    # With one request in flight, each waits out the model's 20 ms queue delay: slow enough to kill.
    output = tmp_path / "out.parquet"
    parts_dir = tmp_path / "out.parquet.parts"
    command = _command(client_server, rows_file, output, 1)
    first = _kill_once_claimed(command, parts_dir, 2, tmp_path / "run.log")
    second = _kill_once_claimed(command, parts_dir, len(first) + 5, tmp_path / "run.log")
    assert first < second and len(second) < ROWS // CHUNK_ROWS
    finished = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(second)} chunks resumed" in finished.stdout

    table, expected = read_table(output), read_table(reference)
    assert table.equals(expected)
    np.testing.assert_array_equal(table.column("row").to_numpy(), np.arange(ROWS))
    np.testing.assert_array_equal(output_matrix(table, "OUTPUT0"), np.load(rows_file))
    assert not parts_dir.exists()


def _local(repository: Path, **settings: object) -> dict[str, object]:
    return {
        "local": True, "repository": repository, "chunk_rows": 1000, "request_rows": 250, "quiet": True, **settings,
    }  # fmt: skip


def _crash_at_chunk(monkeypatch: pytest.MonkeyPatch, chunk_id: int) -> None:
    real_score = ChunkScorer.score

    async def score(self: ChunkScorer, chunk: Chunk) -> ChunkResult:
        if chunk.chunk_id == chunk_id:
            raise OSError("simulated crash")
        return await real_score(self, chunk)

    monkeypatch.setattr(ChunkScorer, "score", score)


def test_a_rerun_with_other_arguments_or_a_changed_input_is_refused(
    client_repository: Path, rows_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    small = tmp_path / "small.npy"
    np.save(small, np.load(rows_file)[:2000])
    output = tmp_path / "out.parquet"
    with monkeypatch.context() as patch:
        _crash_at_chunk(patch, 12)  # chunks of 100 rows
        with pytest.raises(ScoringError, match="simulated crash"):
            score_file(small, output, "identity", **_local(client_repository, chunk_rows=100))
    assert _claimed(tmp_path / "out.parquet.parts")

    common = ["--local", "--repository", client_repository, "--model", "identity", "--input", small,
              "--output", output, "--request-rows", "250", "--quiet"]  # fmt: skip
    assert run_score(*common, "--chunk-rows", "200") == 2
    refusal = capsys.readouterr().err
    assert "chunk_rows: 100 then, 200 now" in refusal and "--restart" in refusal
    os.utime(small, ns=(time.time_ns(), time.time_ns()))
    assert run_score(*common, "--chunk-rows", "100") == 2
    assert "input.mtime_ns" in capsys.readouterr().err
    assert run_score(*common, "--chunk-rows", "100", "--restart") == 0
    np.testing.assert_array_equal(output_matrix(read_table(output), "OUTPUT0"), np.load(small))


def test_a_crash_during_assembly_is_finished_by_the_rerun(
    client_repository: Path, rows_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out.parquet"
    settings = _local(client_repository)
    calls = 0

    def failing_table(*args: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 8:
            raise OSError("simulated crash while writing the output")
        return real_table(*args)

    from clients.score import writers

    real_table = writers.result_table
    with monkeypatch.context() as patch:
        patch.setattr(writers, "result_table", failing_table)
        with pytest.raises(ScoringError, match="assembling"):
            score_file(rows_file, output, "identity", **settings)
    # What a SIGKILL at that moment would leave: a half-written temporary file, and maybe an old output.
    (tmp_path / f".out.parquet.tmp-{os.getpid() + 1}").write_bytes(b"PAR1 half")
    output.write_bytes(b"an older, different output")
    assert len(_claimed(tmp_path / "out.parquet.parts")) == ROWS // 1000

    summary = score_file(rows_file, output, "identity", **settings)
    assert summary.rows_this_run == 0 and summary.chunks_resumed == ROWS // 1000
    np.testing.assert_array_equal(output_matrix(read_table(output), "OUTPUT0"), np.load(rows_file))
    assert not (tmp_path / "out.parquet.parts").exists()


def test_a_crash_after_the_output_but_before_cleanup_reassembles_the_same_output(
    client_repository: Path, rows_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clients.score.checkpoint import Checkpoint

    output = tmp_path / "out.npy"
    settings = _local(client_repository)
    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "remove", lambda self: None)
        score_file(rows_file, output, "identity", **settings)
    first = np.load(output)
    summary = score_file(rows_file, output, "identity", **settings)
    assert summary.rows_this_run == 0
    np.testing.assert_array_equal(np.load(output), first)
    np.testing.assert_array_equal(first, np.load(rows_file))
    assert not (tmp_path / "out.npy.parts").exists()
