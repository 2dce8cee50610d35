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


class ControlModeError(RequestError):
    """Load/unload asked of a server whose model control mode does not allow it."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class LoadFailedError(RequestError):
    """A load request whose model (or one of its versions) failed to load; what served before still serves."""

    status = grpc.StatusCode.FAILED_PRECONDITION
