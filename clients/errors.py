"""The one exception Tau's clients raise for a call that did not succeed."""

from __future__ import annotations

import grpc


class InferenceError(Exception):
    """A call the server refused or that failed.

    `code` is the gRPC status, `message` the server's words (or, when the deadline
    budget ran out between retries, what was last heard), `attempts` how many
    times the call was sent.
    """

    def __init__(self, code: grpc.StatusCode, message: str, attempts: int = 1) -> None:
        suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{code.name}: {message}{suffix}")
        self.code = code
        self.message = message
        self.attempts = attempts
