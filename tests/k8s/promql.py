"""Which metrics a PromQL expression reads, and which metrics Tau exports, so a renamed metric breaks the tests."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

# The sample names each metric type exposes under its family name.
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count"),
}
# Written by Prometheus itself for every scrape target.
SCRAPE_METRICS = frozenset({"up"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier not glued to a number (1e3, 5m) and not a function call.
_NAME = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*+(?!\s*\()")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)
# Grafana's interval variables, replaced by a duration so the expression is plain PromQL.
_GRAFANA_DURATIONS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label names, functions, keywords and durations left out)."""
    stripped = _STRING.sub('""', expr)
    for pattern in (_LABEL_MATCHERS, _RANGE, _LABEL_LIST):
        stripped = pattern.sub(" ", stripped)
    return {name for name in _NAME.findall(stripped) if name.lower() not in _KEYWORDS}


def exported_metric_names() -> frozenset[str]:
    """Every sample name Tau's /metrics serves: its tau_* metrics and the process collector's."""
    import server.metrics  # noqa: F401  (registers Tau's metrics in prometheus_client's default registry)

    names = {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith(("tau_", "process_"))
        for suffix in SAMPLE_SUFFIXES[family.type]
    }
    return frozenset(names)


def substitute_grafana_variables(expr: str, value: str = "tau") -> str:
    """The expression with Grafana's template variables replaced: intervals by durations, the rest by `value`."""
    return _GRAFANA_VARIABLE.sub(lambda match: _GRAFANA_DURATIONS.get(match.group(1), value), expr)
