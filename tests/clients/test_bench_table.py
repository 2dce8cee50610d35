"""tau-bench-table: one command runs every model, worker count and concurrency, and rewrites the docs table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clients import bench_table
from clients.bench_report import RunResult
from clients.bench_table import TableRow, markers, replace_between_markers
from tests.server.onnx_builders import add_sub_model

BEGIN_MARKER, END_MARKER = markers()
QUICK = ["--duration", "0.4", "--warmup", "0.2", "--reference-seconds", "0.2"]


def _run(concurrency: int, requests: int, server_cpu_percent: float | None, p50_ms: float = 0.5) -> RunResult:
    return RunResult(
        scenario="batching",
        model="model",
        concurrency=concurrency,
        rows_per_request=1,
        duration_s=2.0,
        requests=requests,
        requests_per_s=requests / 2.0,
        rows_per_s=requests / 2.0,
        p50_ms=p50_ms,
        p90_ms=p50_ms,
        p99_ms=p50_ms,
        errors={},
        wrong_answer_detail="",
        checked_responses=1,
        server_cpu_percent=server_cpu_percent,
        client_cpu_percent=10.0,
        other_cpu_percent=0.0,
        average_batch=2.4,
        batch_histogram={2: 1, 3: 1},
    )


def test_overheads_subtract_the_model_compute_from_server_cost() -> None:
    # 2,000 requests in 2 s at 80% of a core: 800 us of server CPU per request; in-process does
    # 10,000 rows/s, i.e. 100 us a row, so 700 us per request is the server's own.
    row = TableRow("m", 1, _run(1, 2000, 80.0, p50_ms=0.5), 10_000.0, 2, single_request_p50_ms=0.1)
    assert row.server_cpu_us_per_request == pytest.approx(800)
    assert row.overhead_us_per_request == pytest.approx(700)
    assert row.latency_overhead_us == pytest.approx(400)
    assert row.ratio == pytest.approx(1000 / 10_000)


def test_latency_overhead_is_only_given_at_concurrency_one() -> None:
    row = TableRow("m", 1, _run(8, 2000, 80.0), 10_000.0, 2, single_request_p50_ms=0.1)
    assert row.latency_overhead_us is None
    assert TableRow("m", 1, _run(1, 2000, None), None, None, None).overhead_us_per_request is None


def test_only_the_text_between_the_markers_is_replaced() -> None:
    text = f"intro\n{BEGIN_MARKER}\nold table\n{END_MARKER}\noutro\n"
    replaced = replace_between_markers(text, "new table\n")
    assert replaced == f"intro\n{BEGIN_MARKER}\nnew table\n{END_MARKER}\noutro\n"
    assert replace_between_markers(replaced, "new table\n") == replaced


def test_a_named_table_leaves_the_default_one_alone() -> None:
    gpu_begin, gpu_end = markers("gpu")
    text = f"{BEGIN_MARKER}\ncpu\n{END_MARKER}\n{gpu_begin}\nold\n{gpu_end}\n"
    expected = f"{BEGIN_MARKER}\ncpu\n{END_MARKER}\n{gpu_begin}\nnew\n{gpu_end}\n"
    assert replace_between_markers(text, "new\n", "gpu") == expected


@pytest.mark.parametrize("text", ["no markers", f"{END_MARKER}\n{BEGIN_MARKER}\n"])
def test_a_file_without_both_markers_in_order_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers(text, "table")


def test_one_command_measures_every_combination_and_rewrites_the_doc(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    add_sub_model(repository / "addsub" / "1" / "model.onnx")
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\n{BEGIN_MARKER}\nstale\n{END_MARKER}\n\nmore text\n")
    out = tmp_path / "table.json"
    code = bench_table.main(
        [
            "--model-repository",
            str(repository),
            "--models",
            "addsub",
            "--workers",
            "1,2",
            "--concurrency",
            "1,4",
            *QUICK,
            "--write",
            str(doc),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = doc.read_text()
    assert "stale" not in text and text.endswith(f"{END_MARKER}\n\nmore text\n")
    rows = [line for line in text.splitlines() if line.startswith("| addsub |")]
    assert [tuple(cell.strip() for cell in row.split("|")[2:4]) for row in rows] == [
        ("1", "1"),
        ("1", "4"),
        ("2", "1"),
        ("2", "4"),
    ]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert float(cells[3].replace(",", "")) > 0  # req/s
        assert re.fullmatch(r"[\d,]+ \(batch \d+\)", cells[7])  # in-process rows/s at the formed batch
        assert float(cells[8]) > 0  # ratio
        assert cells[12] == "0"  # errors
    reports = json.loads(out.read_text())
    assert [(report["model"], report["workers"]) for report in reports] == [("addsub", 1), ("addsub", 2)]
    assert all(run["scenario"] == "batching" for report in reports for run in report["runs"])


def test_a_doc_without_the_markers_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("no markers here\n")
    code = bench_table.main(["--models", "mlp", *QUICK, "--write", str(doc), "--marker", "gpu"])
    assert code == 2
    assert "<!-- gpu:begin -->" in capsys.readouterr().err
    assert doc.read_text() == "no markers here\n"


def test_a_missing_model_is_reported_without_touching_the_doc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"{BEGIN_MARKER}\nkept\n{END_MARKER}\n")
    code = bench_table.main(["--model-repository", str(tmp_path), "--models", "absent", *QUICK, "--write", str(doc)])
    assert code == 2
    assert "absent" in capsys.readouterr().err
    assert "kept" in doc.read_text()
