"""Worker mode (`--workers N`): N server processes share the gRPC port, one supervisor owns them.

One Python process cannot keep many cores busy on small models (the gRPC and
Python work per request is the bottleneck), so N processes bind the same port
with SO_REUSEPORT (on by default in grpcio on Linux) and the kernel spreads
connections among them. Health covers them all: each worker is ready only
while every worker is (server/readiness_board.py). Metrics stay coherent: every worker writes to
prometheus_client's multiprocess directory, and the supervisor's /metrics
endpoint sums them. SIGTERM to the supervisor reaches every worker, each of
which drains as a single server does.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from typing import Any

from server.logging_setup import configure_logging
from server.metrics_endpoint import MULTIPROCESS_DIR_VARIABLE, start_metrics_endpoint
from server.readiness_board import ReadinessBoard, allocate_slots, clear_slot
from server.settings import Settings

log = logging.getLogger(__name__)

RESTART_LIMIT = 5


def _worker_main(settings: Settings, index: int, readiness_slots: Any) -> None:
    """Entry point of one worker process."""
    from server.app import serve  # imported here so prometheus_client sees the multiprocess directory

    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger(__name__).info("worker %d (pid %d) starting", index, os.getpid())
    board = ReadinessBoard(readiness_slots, index)
    asyncio.run(serve(settings, metrics_enabled=settings.metrics_port != 0, board=board))
    # asyncio restored the default handlers on the way out; a second SIGTERM (the supervisor's, after
    # a process-group signal) must not turn a clean exit into a kill.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerSupervisor:
    """Starts, watches, restarts and stops the workers."""

    def __init__(self, settings: Settings, count: int) -> None:
        # Each worker gets an equal share of the CPUs for ONNX Runtime's threads.
        self._settings = replace(settings, workers=1, worker_count=count)
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._readiness_slots = allocate_slots(self._context, count)
        self._stopping = False
        self._restarts = 0

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker_main, args=(self._settings, index, self._readiness_slots), name=f"tau-worker-{index}"
        )
        process.start()
        self._workers[index] = process

    def _stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="tau-metrics-")
        os.environ[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            for index in range(self._count):
                self._start(index)
            if self._settings.metrics_port:
                start_metrics_endpoint(self._settings.metrics_port, self._settings.metrics_host)
            log.info("supervising %d workers on port %d", self._count, self._settings.grpc_port)
            while not self._stopping:
                self._watch()
                time.sleep(0.2)
            return self._shutdown()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _watch(self) -> None:
        from prometheus_client import multiprocess

        for index, process in list(self._workers.items()):
            if process.is_alive() or self._stopping:
                continue
            multiprocess.mark_process_dead(process.pid)
            clear_slot(self._readiness_slots, index)
            self._restarts += 1
            if self._restarts > RESTART_LIMIT:
                log.error("worker %d exited with %s; too many restarts, stopping", index, process.exitcode)
                self._stopping = True
                return
            log.error("worker %d exited with %s; restarting it", index, process.exitcode)
            self._start(index)

    def _shutdown(self) -> int:
        log.info("stopping %d workers (grace %.1fs)", len(self._workers), self._settings.grace_period_seconds)
        for process in self._workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.grace_period_seconds + 5
        for process in self._workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %s did not stop in time; killing it", process.name)
                process.kill()
                process.join()
        codes = [process.exitcode for process in self._workers.values()]
        log.info("workers stopped with exit codes %s", codes)
        return 0 if all(code == 0 for code in codes) else 1
