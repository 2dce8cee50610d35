"""`tau-serve`: the server's command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from server.app import serve
from server.cpus import available_cpus
from server.logging_setup import configure_logging
from server.metrics_endpoint import start_metrics_endpoint
from server.settings import load_settings
from server.workers import WorkerSupervisor


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("tau")
    workers = settings.workers or (1 if settings.model_control_mode == "explicit" else available_cpus())
    if settings.metrics_port:
        log.info("metrics: http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    else:
        log.info("metrics: off (--metrics-port 0), nothing is recorded")
    if workers > 1:
        if not settings.model_repository.is_dir():
            log.error("model repository %s is not a directory", settings.model_repository)
            return 2
        return WorkerSupervisor(settings, workers).run()
    if settings.metrics_port:
        start_metrics_endpoint(settings.metrics_port, settings.metrics_host)
    try:
        asyncio.run(serve(settings))
    except (FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
