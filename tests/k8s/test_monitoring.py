"""The monitoring artifacts in k8s/monitoring/ are valid: the Grafana dashboard type-checks against
@grafana/schema and reads only metrics Tau exports in valid PromQL; the alert rules pass promtool's checks
and unit tests, and the PrometheusRule carries the same rules."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.k8s.dashboard_structure import all_panels, dashboard_problems, panel_exprs
from tests.k8s.prometheus_install import ensure_prometheus
from tests.k8s.promql import SCRAPE_METRICS, exported_metric_names, metric_names, substitute_grafana_variables
from tests.server_process import REPO_ROOT

# The first run may `npm ci` the schema check and `apt-get install prometheus`.
pytestmark = pytest.mark.timeout(600)

MONITORING = REPO_ROOT / "k8s" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
SCHEMA_CHECK = MONITORING / "schema-check"
RULES = MONITORING / "tau-alerts.rules.yml"
RULE_TESTS = MONITORING / "tau-alerts.test.yml"
PROMETHEUS_RULE = MONITORING / "prometheus-rule.yaml"
SERVICE_MONITOR = MONITORING / "service-monitor.yaml"
NPM_TIMEOUT_S = 180
ALERTS = {"TauHighErrorRatio", "TauHighP99Latency", "TauQueueNearlyFull", "TauModelNotReady", "TauScrapeDown"}
RECORDINGS = {"tau:queue_wait_seconds:mean_rate1m", "tau:queue_depth_requests:avg_per_pod"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def yaml() -> ModuleType:
    return pytest.importorskip("yaml", reason="PyYAML is needed to read the rule files and Kubernetes manifests")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = ensure_prometheus()
    if found is None:
        pytest.skip("promtool not found, and `apt-get install prometheus` failed or is not possible here")
    return found[1]


@pytest.fixture(scope="module")
def schema_check() -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """Runs check-dashboard.mjs on a dashboard file, after `npm ci` if node_modules lacks the pinned versions."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to type-check the dashboard against @grafana/schema")
    if not _pinned_packages_installed():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=SCHEMA_CHECK,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci in {SCHEMA_CHECK} failed:\n{installed.stdout}{installed.stderr}"

    def check(dashboard_path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [node, "check-dashboard.mjs", str(dashboard_path)],
            cwd=SCHEMA_CHECK,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return check


def _pinned_packages_installed() -> bool:
    pinned = json.loads((SCHEMA_CHECK / "package.json").read_text())["devDependencies"]
    for name, version in pinned.items():
        installed = SCHEMA_CHECK / "node_modules" / name / "package.json"
        if not installed.exists() or json.loads(installed.read_text())["version"] != version:
            return False
    return True


def _first_panel_of_type(dashboard: dict[str, Any], panel_type: str) -> dict[str, Any]:
    return next(panel for panel in all_panels(dashboard) if panel["type"] == panel_type)


def _promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


# --- Grafana dashboard ---------------------------------------------------------------------------------


def test_dashboard_type_checks_against_grafana_schema(schema_check: Callable[[Path], subprocess.CompletedProcess[str]]):
    result = schema_check(DASHBOARD)
    assert result.returncode == 0, result.stdout + result.stderr


BREAKAGES_TSC_CATCHES: dict[str, Callable[[dict[str, Any]], None]] = {
    "gridPos is a string": lambda d: _first_panel_of_type(d, "timeseries").update(gridPos="oops"),
    "panel without type": lambda d: _first_panel_of_type(d, "stat").pop("type"),
    "misspelled panel property": lambda d: _first_panel_of_type(d, "table").update(gridpos={"h": 1}),
    "unknown panel type": lambda d: _first_panel_of_type(d, "timeseries").update(type="timeseriez"),
    "thresholds mode outside its enum": lambda d: _first_panel_of_type(d, "stat")["fieldConfig"]["defaults"][
        "thresholds"
    ].update(mode="absolut"),
    "timeseries option of the wrong type": lambda d: _first_panel_of_type(d, "timeseries")["options"].update(legend=5),
    "variable of unknown type": lambda d: d["templating"]["list"][0].update(type="prometheus"),
    "no schemaVersion": lambda d: d.pop("schemaVersion"),
}


@pytest.mark.parametrize("breakage", BREAKAGES_TSC_CATCHES)
def test_dashboard_type_check_fails_on_a_broken_dashboard(
    breakage: str,
    dashboard: dict[str, Any],
    schema_check: Callable[[Path], subprocess.CompletedProcess[str]],
    tmp_path: Path,
):
    broken = copy.deepcopy(dashboard)
    BREAKAGES_TSC_CATCHES[breakage](broken)
    broken_path = tmp_path / "broken-dashboard.json"
    broken_path.write_text(json.dumps(broken, indent=2))
    result = schema_check(broken_path)
    assert result.returncode != 0, f"tsc accepted a dashboard with {breakage}"
    assert f"{broken_path}(" in result.stderr and "error TS" in result.stderr, result.stderr


def test_dashboard_panels_are_structurally_sound(dashboard: dict[str, Any]):
    assert dashboard_problems(dashboard) == []


BREAKAGES_STRUCTURE_CATCHES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # None of these fail the TypeScript check.
    "target without refId": (lambda d: _first_panel_of_type(d, "timeseries")["targets"][0].pop("refId"), "no refId"),
    "duplicate refId": (
        lambda d: _first_panel_of_type(d, "timeseries")["targets"].append(
            copy.deepcopy(_first_panel_of_type(d, "timeseries")["targets"][0])
        ),
        "used twice",
    ),
    "panel without gridPos": (lambda d: _first_panel_of_type(d, "stat").pop("gridPos"), "gridPos must hold"),
    "panel wider than the grid": (
        lambda d: _first_panel_of_type(d, "stat")["gridPos"].update(x=20, w=12),
        "outside the 24-column grid",
    ),
    "overlapping panels": (lambda d: _first_panel_of_type(d, "table")["gridPos"].update(y=0), "overlaps"),
    "duplicate panel id": (lambda d: _first_panel_of_type(d, "timeseries").update(id=1), "also used by"),
    "panel without datasource": (lambda d: _first_panel_of_type(d, "bargauge").pop("datasource"), "datasource must"),
    "panel without targets": (lambda d: _first_panel_of_type(d, "stat").update(targets=[]), "no targets"),
    "target without expr": (lambda d: _first_panel_of_type(d, "table")["targets"][0].pop("expr"), "no expr"),
}


@pytest.mark.parametrize("breakage", BREAKAGES_STRUCTURE_CATCHES)
def test_structure_check_fails_on_a_broken_panel(breakage: str, dashboard: dict[str, Any]):
    break_dashboard, expected_problem = BREAKAGES_STRUCTURE_CATCHES[breakage]
    broken = copy.deepcopy(dashboard)
    break_dashboard(broken)
    problems = dashboard_problems(broken)
    assert any(expected_problem in problem for problem in problems), problems


def test_dashboard_has_datasource_model_and_pod_variables(dashboard: dict[str, Any]):
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("model", "pod"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables[name]["query"]["query"].endswith(f", {name})")


def test_dashboard_queries_read_only_metrics_tau_exports(dashboard: dict[str, Any]):
    exported = exported_metric_names() | SCRAPE_METRICS
    queries = panel_exprs(dashboard) | {
        f"variable {variable['name']}": _label_values_selector(variable["query"]["query"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    }
    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where}: reads no metric: {expr}"
        assert names <= exported, f"{where}: reads {sorted(names - exported)}, which Tau does not export"


def _label_values_selector(variable_query: str) -> str:
    """The series selector of a Grafana `label_values(selector, label)` variable query."""
    match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable_query)
    assert match, f"expected label_values(selector, label), got {variable_query!r}"
    return match.group(1)


def test_metric_name_check_catches_a_renamed_metric():
    assert metric_names('sum by (model) (rate(tau_request_total{model=~"$model"}[$__rate_interval]))') == {
        "tau_request_total"
    }
    assert "tau_request_total" not in exported_metric_names()


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], promtool: str, tmp_path: Path):
    rules = []
    for where, expr in panel_exprs(dashboard).items():
        concrete = substitute_grafana_variables(expr)
        assert "$" not in concrete, f"{where}: a Grafana variable is left in {concrete}"
        rules.append({"record": "dashboard:" + re.sub(r"\W", "_", where), "expr": concrete})
    rule_file = tmp_path / "dashboard-queries.rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    result = _promtool(promtool, "check", "rules", rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Prometheus rules ----------------------------------------------------------------------------------


def test_rule_file_passes_promtool_check(promtool: str):
    result = _promtool(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_spec_passes_promtool_check(promtool: str, yaml: ModuleType, tmp_path: Path):
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    rule_file = tmp_path / "prometheus-rule-spec.rules.yml"
    rule_file.write_text(yaml.safe_dump(spec))
    result = _promtool(promtool, "check", "rules", rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_carries_the_rule_files_groups(yaml: ModuleType):
    prometheus_rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert prometheus_rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert prometheus_rule["kind"] == "PrometheusRule"
    assert prometheus_rule["spec"] == yaml.safe_load(RULES.read_text()), (
        f"{PROMETHEUS_RULE.name}'s spec differs from {RULES.name}: change both together"
    )


def test_alert_rule_unit_tests_pass(promtool: str):
    result = _promtool(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_fails_on_a_rule_with_bad_promql(promtool: str, tmp_path: Path):
    rule_file = tmp_path / "broken.rules.yml"
    bad_rule = {"alert": "Broken", "expr": "sum by (model (rate(tau_requests_total[5m]))"}
    rule_file.write_text(json.dumps({"groups": [{"name": "broken", "rules": [bad_rule]}]}))
    result = _promtool(promtool, "check", "rules", rule_file)
    assert result.returncode != 0, result.stdout + result.stderr


def test_rule_file_defines_the_alerts_and_recording_rules(yaml: ModuleType):
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules if "alert" in rule} == ALERTS
    assert {rule["record"] for rule in rules if "record" in rule} == RECORDINGS


def test_rules_read_only_metrics_tau_exports(yaml: ModuleType):
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    known = exported_metric_names() | SCRAPE_METRICS | RECORDINGS
    for rule in rules:
        names = metric_names(rule["expr"])
        name = rule.get("alert") or rule.get("record")
        assert names <= known, f"{name}: reads {sorted(names - known)}, which Tau does not export"


# --- ServiceMonitor ------------------------------------------------------------------------------------


def test_service_monitor_scrapes_tau_metrics_port_every_15s(yaml: ModuleType):
    service_monitor = yaml.safe_load(SERVICE_MONITOR.read_text())
    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert service_monitor["kind"] == "ServiceMonitor"
    assert service_monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "tau"}}
    [endpoint] = service_monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")
