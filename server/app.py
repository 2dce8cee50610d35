"""The server's story: start up (load models, open ports), serve, shut down gracefully on a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.cpus import share_cpus_among
from server.grpc_handlers import inference_service_handler
from server.metrics import flush_buffered_metrics
from server.protocol import grpc_service_pb2 as pb
from server.protocol.pool import POOL
from server.readiness_board import ReadinessBoard
from server.repository import ModelRepository
from server.repository_poller import RepositoryPoller
from server.runtime import check_single_onnxruntime
from server.security import BearerTokenInterceptor, load_tokens, server_credentials
from server.servicer import InferenceServicer
from server.settings import Settings

log = logging.getLogger(__name__)

# How often a worker re-reads the other workers' readiness for its health service.
BOARD_POLL_SECONDS = 0.25
INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def _grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
    ]


def _interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    tokens = load_tokens(settings)
    if not tokens:
        return []
    log.info("bearer-token authentication on (%d tokens)", len(tokens))
    return [BearerTokenInterceptor(tokens, open_health=settings.auth_open_health)]


async def _flush_metrics_every_second() -> None:
    """Worker processes are scraped through the supervisor, which cannot ask them to flush."""
    while True:
        await asyncio.sleep(1.0)
        flush_buffered_metrics()


class TauServer:
    """One gRPC server over one model repository."""

    def __init__(
        self, settings: Settings, metrics_enabled: bool | None = None, board: ReadinessBoard | None = None
    ) -> None:
        self.settings = settings
        self._board = board
        share_cpus_among(settings.worker_count)
        if metrics_enabled is None:
            metrics_enabled = settings.metrics_port != 0
        self._metrics_enabled = metrics_enabled
        self.repository = ModelRepository(settings.model_repository, metrics_enabled, on_change=self._state_changed)
        self.servicer = InferenceServicer(self.repository, settings, metrics_enabled, board)
        self._background: set[asyncio.Task[None]] = set()
        self.health = health.aio.HealthServicer()
        self._published_serving: bool | None = None
        self._server: grpc.aio.Server | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        check_single_onnxruntime()
        await self._load_initial_models()
        server = grpc.aio.server(options=_grpc_options(self.settings), interceptors=_interceptors(self.settings))
        server.add_generic_rpc_handlers((inference_service_handler(self.servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server, pool=POOL
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.bound_port = server.add_insecure_port(address)
        else:
            self.bound_port = server.add_secure_port(address, credentials)
            log.info("TLS on%s", " with client certificates required" if self.settings.tls_client_ca_file else "")
        await server.start()
        self._server = server
        await self._publish_health()
        if self._metrics_enabled:
            self._spawn(_flush_metrics_every_second())
        if self._board is not None:
            self._spawn(self._follow_other_workers())
        if self.settings.model_control_mode == "poll":
            poller = RepositoryPoller(self.repository, self.settings.repository_poll_secs)
            self._spawn(poller.run())
        log.info("serving %s on %s:%d", self.settings.model_repository, self.settings.grpc_host, self.bound_port)

    async def _load_initial_models(self) -> None:
        if not self.settings.model_repository.is_dir():
            raise FileNotFoundError(f"model repository {self.settings.model_repository} is not a directory")
        names = self.repository.folder_names()
        if self.settings.model_control_mode == "explicit" and "*" not in self.settings.load_model:
            missing = [name for name in self.settings.load_model if name not in names]
            if missing:
                log.error("--load-model names models that are not in the repository: %s", missing)
            names = [name for name in names if name in self.settings.load_model]
        await self.repository.load_models(names)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _state_changed(self) -> None:
        """A model changed state: readiness and health follow at once."""
        if self._server is not None:
            self._spawn(self._publish_health())

    async def _publish_health(self) -> None:
        if self._board is not None:
            self._board.publish(self.servicer.own_readiness())
        ready = self.servicer.server_ready()
        if ready == self._published_serving:
            return
        self._published_serving = ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)
        await self.health.set(INFERENCE_SERVICE, status)

    async def _follow_other_workers(self) -> None:
        """Other workers change state without telling this one: health follows them within a poll."""
        assert self._board is not None
        while True:
            await asyncio.sleep(BOARD_POLL_SECONDS)
            was_serving = self._published_serving
            await self._publish_health()
            if was_serving and not self._published_serving:
                log.warning("not ready: worker(s) %s not ready", self._board.not_ready())

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, release the models."""
        self.servicer.accepting = False
        for task in list(self._background):
            task.cancel()
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(self.settings.grace_period_seconds)
        await self.repository.close()
        flush_buffered_metrics()
        log.info("stopped")


async def serve(settings: Settings, metrics_enabled: bool | None = None, board: ReadinessBoard | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully.

    The signal handlers go in before anything loads, so a signal during start-up (as PID 1 in a
    container there is no default handler to fall back on) stops the server at once.
    """
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    tau = TauServer(settings, metrics_enabled, board)
    starting = asyncio.ensure_future(tau.start())
    stopping = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("signal received during start-up: stopping")
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    else:
        starting.result()  # a start-up failure propagates
        await stopping
        log.info("signal received: finishing in-flight calls (grace %.1fs)", settings.grace_period_seconds)
    stopping.cancel()
    await tau.stop()
