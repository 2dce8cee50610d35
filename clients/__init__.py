"""Tau's Python clients: numpy in, numpy out, over the V2 gRPC protocol (sync and asyncio).

Batch scoring of whole files lives in `clients.score` (`tau-score`).
"""

from clients.aio_client import AsyncTauClient
from clients.errors import InferenceError
from clients.grpc_client import TauClient
from clients.retry import NO_RETRIES, RetryEvent, RetryPolicy

__all__ = ["NO_RETRIES", "AsyncTauClient", "InferenceError", "RetryEvent", "RetryPolicy", "TauClient"]
