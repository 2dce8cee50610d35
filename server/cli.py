"""`tau-serve`: the server's command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from server.app import serve
from server.metrics_endpoint import start_metrics_endpoint
from server.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("tau")
    if settings.metrics_port:
        start_metrics_endpoint(settings.metrics_port, settings.grpc_host)
        log.info("metrics: http://%s:%d/metrics", settings.grpc_host, settings.metrics_port)
    else:
        log.info("metrics: off (--metrics-port 0), nothing is recorded")
    try:
        asyncio.run(serve(settings))
    except (FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
