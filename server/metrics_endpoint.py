"""The Prometheus /metrics HTTP endpoint, from prometheus_client's one default registry."""

from __future__ import annotations

from prometheus_client import start_http_server


def start_metrics_endpoint(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics (process metrics for now) on its own port, in a background thread."""
    start_http_server(port, addr=host)
