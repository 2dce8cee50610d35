"""Tau's Python client: numpy in, numpy out, over the V2 gRPC protocol."""

from clients.grpc_client import InferenceError, TauClient

__all__ = ["InferenceError", "TauClient"]
