"""When a failed call is sent again: exponential backoff with full jitter, within one deadline budget.

Only UNAVAILABLE is retried: it is what a full queue, a restarting server and a
lost connection all answer, and inference is safe to repeat. INVALID_ARGUMENT,
NOT_FOUND and DEADLINE_EXCEEDED (and every other code) would only fail again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from clients.errors import InferenceError

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. `max_attempts=1` turns retries off."""

    max_attempts: int = 5
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 2.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: expected at least 1, got {self.max_attempts}")
        if self.initial_backoff_seconds < 0 or self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError(
                "backoff: expected 0 <= initial_backoff_seconds <= max_backoff_seconds, got "
                f"{self.initial_backoff_seconds} and {self.max_backoff_seconds}"
            )
        if self.backoff_multiplier < 1:
            raise ValueError(f"backoff_multiplier: expected at least 1, got {self.backoff_multiplier}")

    def backoff_seconds(self, retry_number: int, rng: random.Random) -> float:
        """Sleep before retry `retry_number` (1-based): uniform in [0, capped exponential] ("full jitter").

        Full jitter spreads clients that failed together (a full queue fails many at once)
        so they do not all come back at the same instant.
        """
        ceiling = self.initial_backoff_seconds * self.backoff_multiplier ** (retry_number - 1)
        return rng.uniform(0.0, min(self.max_backoff_seconds, ceiling))


NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt that will be retried: for logs and counters (see `on_retry`)."""

    method: str
    attempt: int
    code: grpc.StatusCode
    message: str
    backoff_seconds: float


RetryCallback = Callable[[RetryEvent], None]


class CallAttempts:
    """One call's attempts: the timeout each may use and whether (and when) to try again.

    The deadline budget covers every attempt and every backoff: each attempt's gRPC
    timeout is what is left of it, so a call never outlives the budget it was given.
    """

    def __init__(
        self,
        method: str,
        policy: RetryPolicy,
        budget_seconds: float | None,
        on_retry: RetryCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.method = method
        self.attempts = 0
        self._policy = policy
        self._budget_seconds = budget_seconds
        self._deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        self._on_retry = on_retry
        self._rng = rng or random.Random()

    def start_attempt(self) -> float | None:
        """Count an attempt; returns its gRPC timeout (None: no deadline)."""
        self.attempts += 1
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def backoff_after(self, error: grpc.RpcError) -> float:
        """Seconds to wait before the next attempt; raises InferenceError when there is to be none."""
        code = error.code()
        message = error.details() or ""
        if code not in RETRYABLE_CODES or self.attempts >= self._policy.max_attempts:
            raise InferenceError(code, message, self.attempts) from error
        backoff = self._policy.backoff_seconds(self.attempts, self._rng)
        if self._deadline is not None and time.monotonic() + backoff >= self._deadline:
            raise InferenceError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"deadline budget of {self._budget_seconds}s spent after {self.attempts} attempts; "
                f"last error {code.name}: {message}",
                self.attempts,
            ) from error
        if self._on_retry is not None:
            self._on_retry(RetryEvent(self.method, self.attempts, code, message, backoff))
        return backoff
