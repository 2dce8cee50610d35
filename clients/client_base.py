"""What the sync and asyncio clients share: their settings, and the calls' names and messages."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clients.channel import ChannelSettings, settings_from
from clients.retry import CallAttempts, RetryCallback, RetryPolicy

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
DEFAULT_TIMEOUT_SECONDS = 30.0


class ClientBase:
    """Connection, retry and deadline settings; one channel per client, opened by the subclass."""

    def __init__(
        self,
        url: str,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
        *,
        retry: RetryPolicy | None = None,
        ssl: bool = False,
        root_certificates: str | Path | None = None,
        private_key: str | Path | None = None,
        certificate_chain: str | Path | None = None,
        gzip: bool = False,
        headers: Mapping[str, str] | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        on_retry: RetryCallback | None = None,
    ) -> None:
        """`timeout_seconds` is each call's total deadline budget, across retries (None: no deadline).

        `retry` defaults to RetryPolicy(): up to 5 attempts on UNAVAILABLE. `ssl` with the
        optional PEM paths selects TLS (client key and chain: mutual TLS). `headers` go
        with every call (an auth token, say); `gzip` compresses every message. `on_retry`
        is called with a RetryEvent before each retry.
        """
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.retry = retry or RetryPolicy()
        self.settings: ChannelSettings = settings_from(
            url, ssl, root_certificates, private_key, certificate_chain, gzip, headers, channel_options
        )
        self._on_retry = on_retry
        # One generator per client: seeding a new one per call costs more than the call's encoding.
        self._rng = random.Random()

    def _attempts(self, method: str, timeout_seconds: float | None) -> CallAttempts:
        budget = timeout_seconds if timeout_seconds is not None else self.timeout_seconds
        return CallAttempts(method, self.retry, budget, self._on_retry, self._rng)
