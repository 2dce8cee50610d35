"""How a client's one channel is opened: plain or TLS, gzip or not, with options fit for large tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from server.settings import MAX_GRPC_MESSAGE_BYTES

# gRPC's own reconnect backoff starts at 1 s and grows to 2 min; while it waits, every
# call fails at once. Keeping it short lets our retries reach a restarted server quickly.
RECONNECT_BACKOFF_INITIAL_MS = 100
RECONNECT_BACKOFF_MAX_MS = 1000


@dataclass(frozen=True)
class ChannelSettings:
    """Where and how to connect. TLS file paths are read when the channel opens."""

    url: str
    ssl: bool = False
    root_certificates: Path | None = None  # PEM CA bundle; None: the system's roots
    private_key: Path | None = None  # PEM client key, for mutual TLS (with certificate_chain)
    certificate_chain: Path | None = None  # PEM client certificate chain
    gzip: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # sent with every call, e.g. ("authorization", "Bearer ...")
    extra_options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        uses_tls_files = self.root_certificates or self.private_key or self.certificate_chain
        if uses_tls_files and not self.ssl:
            raise ValueError("root_certificates, private_key and certificate_chain need ssl=True")
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ValueError("mutual TLS needs both private_key and certificate_chain, got only one")


def settings_from(
    url: str,
    ssl: bool = False,
    root_certificates: str | Path | None = None,
    private_key: str | Path | None = None,
    certificate_chain: str | Path | None = None,
    gzip: bool = False,
    headers: Mapping[str, str] | None = None,
    channel_options: Sequence[tuple[str, Any]] = (),
) -> ChannelSettings:
    """ChannelSettings from the clients' keyword arguments."""

    def as_path(value: str | Path | None) -> Path | None:
        return None if value is None else Path(value)

    return ChannelSettings(
        url=url,
        ssl=ssl,
        root_certificates=as_path(root_certificates),
        private_key=as_path(private_key),
        certificate_chain=as_path(certificate_chain),
        gzip=gzip,
        headers=tuple((key.lower(), value) for key, value in (headers or {}).items()),
        extra_options=tuple(channel_options),
    )


def channel_credentials(settings: ChannelSettings) -> grpc.ChannelCredentials:
    """TLS credentials from the PEM files the settings name."""

    def read(path: Path | None) -> bytes | None:
        return None if path is None else path.read_bytes()

    return grpc.ssl_channel_credentials(
        root_certificates=read(settings.root_certificates),
        private_key=read(settings.private_key),
        certificate_chain=read(settings.certificate_chain),
    )


def channel_options(settings: ChannelSettings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        # gRPC's 4 MiB default is far below a batch of images.
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_INITIAL_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    return options + list(settings.extra_options)


def _compression(settings: ChannelSettings) -> grpc.Compression | None:
    return grpc.Compression.Gzip if settings.gzip else None


def open_channel(settings: ChannelSettings) -> grpc.Channel:
    options = channel_options(settings)
    if settings.ssl:
        credentials = channel_credentials(settings)
        return grpc.secure_channel(settings.url, credentials, options, _compression(settings))
    return grpc.insecure_channel(settings.url, options, _compression(settings))


def open_aio_channel(settings: ChannelSettings) -> grpc.aio.Channel:
    options = channel_options(settings)
    if settings.ssl:
        credentials = channel_credentials(settings)
        return grpc.aio.secure_channel(settings.url, credentials, options, _compression(settings))
    return grpc.aio.insecure_channel(settings.url, options, _compression(settings))


def call_metadata(settings: ChannelSettings, headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    """The client's headers with the call's own on top (gRPC wants lower-case keys)."""
    if not headers:
        return settings.headers or None
    merged = dict(settings.headers)
    merged.update((key.lower(), value) for key, value in headers.items())
    return tuple(merged.items())
