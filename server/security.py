"""Transport security and authentication: TLS / mutual TLS credentials, and the bearer-token interceptor."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from server.settings import Settings

log = logging.getLogger(__name__)

# Probes and tooling must reach these without a token when auth_open_health is set.
OPEN_SERVICE_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")


def load_tokens(settings: Settings) -> tuple[bytes, ...]:
    """Accepted tokens from the settings and the token file (one per line; blank lines and # comments skipped)."""
    tokens = [token.strip() for token in settings.auth_tokens if token.strip()]
    if settings.auth_token_file:
        for line in Path(settings.auth_token_file).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                tokens.append(line.strip())
    return tuple(token.encode() for token in tokens)


def _token_matches(presented: bytes, accepted: tuple[bytes, ...]) -> bool:
    # Compare against every token, in constant time each, so timing says nothing about which came close.
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(presented, token)
    return matched


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def refuse(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token (metadata 'authorization')"
        )

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with `authorization: Bearer <token>` naming an accepted token."""

    def __init__(self, tokens: tuple[bytes, ...], open_health: bool) -> None:
        self._tokens = tokens
        self._open_health = open_health

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if self._open_health and method.startswith(OPEN_SERVICE_PREFIXES):
            return await continuation(handler_call_details)
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                if text.startswith("Bearer "):
                    presented = text.removeprefix("Bearer ").strip().encode()
        handler = await continuation(handler_call_details)
        if handler is None or _token_matches(presented, self._tokens):
            return handler
        return _refusal(handler)


class _CertificateReloader:
    """Hands gRPC a new certificate configuration whenever the PEM files change on disk."""

    def __init__(self, settings: Settings) -> None:
        self._paths = [
            Path(p) for p in (settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file) if p
        ]
        self._settings = settings
        self._stamp = self._current_stamp()

    def _current_stamp(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self._paths:
            stat = path.stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        settings = self._settings
        key_pair = (Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())
        client_ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
        return grpc.ssl_server_certificate_configuration([key_pair], root_certificates=client_ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC on each new handshake: None keeps the current certificates."""
        try:
            stamp = self._current_stamp()
            if stamp == self._stamp:
                return None
            configuration = self.configuration()
        except OSError as error:
            log.error("TLS certificate reload failed, keeping the current certificates: %s", error)
            return None
        self._stamp = stamp
        log.info("TLS certificates reloaded")
        return configuration


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (and mutual TLS when a client CA is set) credentials, or None for plaintext."""
    if not settings.tls_cert_file:
        return None
    reloader = _CertificateReloader(settings)
    return grpc.dynamic_ssl_server_credentials(
        reloader.configuration(), reloader, require_client_authentication=bool(settings.tls_client_ca_file)
    )
