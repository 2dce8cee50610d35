"""The benchmark's results: one row per run, the ratios against the references, as Markdown and as JSON."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from clients.bench_load import LoadTally
from clients.bench_reference import InProcessTiming
from clients.bench_server import BatchCounters

CEILING = "ceiling"
BATCHING = "batching"
NO_BATCHING = "no-batching"
REMOTE = "remote"
# The budget a request at concurrency 1 may spend beyond gRPC's own cost and the model's compute.
LATENCY_SLACK_MS = 0.1
# Above this much CPU used by other processes during a run, the report warns that its numbers are disturbed.
DISTURBED_CPU_PERCENT = 10


@dataclass(frozen=True)
class RunResult:
    """One scenario at one concurrency: throughput and latency over the measured window, errors over the run."""

    scenario: str
    model: str
    concurrency: int
    rows_per_request: int
    duration_s: float
    requests: int
    requests_per_s: float
    rows_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    wrong_answer_detail: str
    checked_responses: int
    server_cpu_percent: float | None  # 100 = one core busy for the whole window
    client_cpu_percent: float
    other_cpu_percent: float  # the rest of the machine: high means the run was disturbed
    average_batch: float | None  # rows per batch the server ran; None without its statistics
    batch_histogram: dict[int, int]  # batch size -> batches run

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def summarize_run(
    scenario: str,
    model: str,
    concurrency: int,
    rows_per_request: int,
    duration_s: float,
    tally: LoadTally,
    client_cpu_seconds: float,
    server_cpu_seconds: float | None,
    machine_cpu_seconds: float,
    batches: BatchCounters | None,
) -> RunResult:
    """Turn a run's raw counts into rates, percentiles and percentages."""
    # Whatever the machine ran besides the bench and its server; without the server's pid it counts the server too.
    other_cpu_seconds = max(0.0, machine_cpu_seconds - client_cpu_seconds - (server_cpu_seconds or 0.0))
    latencies_ms = tally.latencies_s * 1e3
    p50, p90, p99 = (
        (float(v) for v in np.percentile(latencies_ms, [50, 90, 99])) if latencies_ms.size else (None, None, None)
    )
    return RunResult(
        scenario=scenario,
        model=model,
        concurrency=concurrency,
        rows_per_request=rows_per_request,
        duration_s=duration_s,
        requests=tally.completed,
        requests_per_s=tally.completed / duration_s,
        rows_per_s=tally.completed * rows_per_request / duration_s,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        errors=dict(sorted(tally.errors.items())),
        wrong_answer_detail=tally.wrong_answer_detail,
        checked_responses=tally.checked,
        server_cpu_percent=server_cpu_seconds / duration_s * 100 if server_cpu_seconds is not None else None,
        client_cpu_percent=client_cpu_seconds / duration_s * 100,
        other_cpu_percent=other_cpu_seconds / duration_s * 100,
        average_batch=batches.average_batch if batches else None,
        batch_histogram=dict(batches.batches_by_size) if batches else {},
    )


@dataclass(frozen=True)
class Ratio:
    """`numerator` ÷ `denominator` at one concurrency (e.g. batching req/s ÷ ceiling req/s)."""

    name: str
    concurrency: int
    value: float | None  # None when the denominator was 0 (nothing completed)
    note: str = ""


@dataclass(frozen=True)
class LatencyBudget:
    """At concurrency 1: a scenario's p50 against ceiling p50 + in-process p50 + LATENCY_SLACK_MS."""

    scenario: str
    p50_ms: float
    ceiling_p50_ms: float
    in_process_p50_ms: float

    @property
    def budget_ms(self) -> float:
        return self.ceiling_p50_ms + self.in_process_p50_ms + LATENCY_SLACK_MS

    @property
    def met(self) -> bool:
        return self.p50_ms <= self.budget_ms


@dataclass
class BenchReport:
    settings: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    single_request: InProcessTiming | None = None  # batch = rows per request
    at_server_batch: dict[int, InProcessTiming] = field(default_factory=dict)  # by batch size
    server_rss_mib_before: float | None = None
    server_rss_mib_after: float | None = None

    @property
    def ok(self) -> bool:
        """No error of any kind, wrong answers included."""
        return all(run.error_count == 0 for run in self.runs)


def _runs_by_concurrency(runs: list[RunResult]) -> dict[int, dict[str, RunResult]]:
    table: dict[int, dict[str, RunResult]] = defaultdict(dict)
    for run in runs:
        table[run.concurrency][run.scenario] = run
    return table


def _ratio(numerator: float, denominator: float) -> float | None:
    # None, not NaN: NaN is not JSON.
    return numerator / denominator if denominator else None


def compute_ratios(report: BenchReport) -> list[Ratio]:
    """Against the gRPC ceiling (req/s), batching on vs off (rows/s), and in-process ORT (rows/s at the same batch)."""
    ratios = []
    for concurrency, by_scenario in sorted(_runs_by_concurrency(report.runs).items()):
        ceiling = by_scenario.get(CEILING)
        for run in by_scenario.values():
            if ceiling and run.scenario != CEILING:
                name = f"{run.scenario} ÷ {CEILING} (req/s)"
                ratios.append(Ratio(name, concurrency, _ratio(run.requests_per_s, ceiling.requests_per_s)))
        if BATCHING in by_scenario and NO_BATCHING in by_scenario:
            on, off = by_scenario[BATCHING].rows_per_s, by_scenario[NO_BATCHING].rows_per_s
            ratios.append(Ratio(f"{BATCHING} ÷ {NO_BATCHING} (rows/s)", concurrency, _ratio(on, off)))
        for run in by_scenario.values():
            timing = report.at_server_batch.get(reference_batch(run) or 0)
            if run.scenario != CEILING and timing:
                name = f"{run.scenario} ÷ in-process ORT (rows/s)"
                note = f"at batch {timing.batch}, the server's average {run.average_batch:.2f} rounded"
                ratios.append(Ratio(name, concurrency, _ratio(run.rows_per_s, timing.rows_per_s), note))
    return ratios


def reference_batch(run: RunResult) -> int | None:
    """The in-process batch size to compare a run with: the server's average batch, rounded."""
    return max(1, round(run.average_batch)) if run.average_batch else None


def latency_budgets(report: BenchReport) -> list[LatencyBudget]:
    by_scenario = _runs_by_concurrency(report.runs).get(1, {})
    ceiling = by_scenario.get(CEILING)
    if ceiling is None or ceiling.p50_ms is None or report.single_request is None:
        return []
    return [
        LatencyBudget(run.scenario, run.p50_ms, ceiling.p50_ms, report.single_request.p50_ms)
        for run in by_scenario.values()
        if run.scenario != CEILING and run.p50_ms is not None
    ]


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _errors(run: RunResult) -> str:
    return ", ".join(f"{code}: {count}" for code, count in run.errors.items()) or "0"


def _in_process_timings(report: BenchReport) -> list[InProcessTiming]:
    by_batch = dict(report.at_server_batch)
    if report.single_request:
        by_batch[report.single_request.batch] = report.single_request
    return [by_batch[batch] for batch in sorted(by_batch)]


TABLE_HEADER = (
    "| scenario | concurrency | rows/req | req/s | rows/s | p50 ms | p90 ms | p99 ms | errors "
    "| server CPU % | client CPU % | avg batch |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
)


def render_markdown(report: BenchReport) -> str:
    lines = [TABLE_HEADER]
    for run in report.runs:
        cells = [
            run.scenario,
            str(run.concurrency),
            str(run.rows_per_request),
            _number(run.requests_per_s, 0),
            _number(run.rows_per_s, 0),
            _number(run.p50_ms, 3),
            _number(run.p90_ms, 3),
            _number(run.p99_ms, 3),
            _errors(run),
            _number(run.server_cpu_percent, 0),
            _number(run.client_cpu_percent, 0),
            _number(run.average_batch, 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for ratio in compute_ratios(report):
        note = f" ({ratio.note})" if ratio.note else ""
        lines.append(f"- {ratio.name} at concurrency {ratio.concurrency}: {_number(ratio.value, 2)}{note}")
    for timing in _in_process_timings(report):
        lines.append(
            f"- in-process ORT at batch {timing.batch}: p50 {timing.p50_ms:.3f} ms, {timing.rows_per_s:.0f} rows/s "
            f"({timing.runs} runs)"
        )
    for budget in latency_budgets(report):
        verdict = "within" if budget.met else "over"
        lines.append(
            f"- p50 at concurrency 1, {budget.scenario}: {budget.p50_ms:.3f} ms, {verdict} the budget "
            f"{budget.budget_ms:.3f} ms (ceiling {budget.ceiling_p50_ms:.3f} + in-process "
            f"{budget.in_process_p50_ms:.3f} + {LATENCY_SLACK_MS})"
        )
    if report.server_rss_mib_before is not None:
        lines.append(
            f"- server RSS: {report.server_rss_mib_before:.1f} MiB before, "
            f"{_number(report.server_rss_mib_after, 1)} MiB after"
        )
    disturbed = [run for run in report.runs if run.other_cpu_percent > DISTURBED_CPU_PERCENT]
    if disturbed:
        worst = max(disturbed, key=lambda run: run.other_cpu_percent)
        lines.append(
            f"- warning: other processes used over {DISTURBED_CPU_PERCENT}% CPU in {len(disturbed)} of "
            f"{len(report.runs)} runs (worst: {worst.other_cpu_percent:.0f}% in {worst.scenario} at concurrency "
            f"{worst.concurrency}); those numbers are disturbed"
        )
    for run in report.runs:
        if run.wrong_answer_detail:
            lines.append(
                f"- WRONG ANSWER in {run.scenario} at concurrency {run.concurrency}: {run.wrong_answer_detail}"
            )
    return "\n".join(lines)


def report_json(report: BenchReport) -> dict[str, Any]:
    """Every number of the report, ratios included, as plain JSON types."""
    return {
        "settings": report.settings,
        "ok": report.ok,
        "runs": [
            {**asdict(run), "batch_histogram": {str(size): n for size, n in run.batch_histogram.items()}}
            for run in report.runs
        ],
        "in_process": {
            "single_request": report.single_request.as_json() if report.single_request else None,
            "at_server_batch": {str(batch): timing.as_json() for batch, timing in report.at_server_batch.items()},
        },
        "ratios": [asdict(ratio) for ratio in compute_ratios(report)],
        "latency_budgets": [
            {**asdict(budget), "budget_ms": budget.budget_ms, "met": budget.met} for budget in latency_budgets(report)
        ],
        "server_rss_mib": {"before": report.server_rss_mib_before, "after": report.server_rss_mib_after},
    }
