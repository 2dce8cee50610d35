"""Errors a request can meet on its way, each one tied to the gRPC status it is answered with."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """A request Tau refuses; `status` is the gRPC code the client gets, with this message."""

    status = grpc.StatusCode.INTERNAL


class InvalidRequestError(RequestError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFoundError(RequestError):
    status = grpc.StatusCode.NOT_FOUND


class ModelNotReadyError(RequestError):
    status = grpc.StatusCode.UNAVAILABLE


class QueueFullError(RequestError):
    """Back-pressure: Triton answers UNAVAILABLE so that clients retry."""

    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(RequestError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class ExecutionError(RequestError):
    """The model raised while running a batch; only that batch's requests fail."""

    status = grpc.StatusCode.INTERNAL
