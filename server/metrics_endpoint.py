"""The Prometheus /metrics HTTP endpoint: the default registry, or with --workers N the sum of all workers."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def start_metrics_endpoint(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on its own port, in a background thread.

    With PROMETHEUS_MULTIPROC_DIR set (worker mode), the endpoint aggregates what every worker
    process wrote there, so totals are coherent whichever worker served a request.
    """
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, addr=host, registry=registry)
    else:
        start_http_server(port, addr=host, registry=REGISTRY)
