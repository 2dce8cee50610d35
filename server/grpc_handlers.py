"""Wires the servicer's methods to gRPC, parsing requests so that garbage gets INVALID_ARGUMENT, not INTERNAL.

The generated `add_..._to_server` lets protobuf raise inside gRPC when a
message does not parse, which clients see as INTERNAL. Here a request that
does not parse reaches the method as a MalformedRequest and is refused by
name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from server.protocol import grpc_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


@dataclass(frozen=True)
class MalformedRequest:
    """Bytes that were not a valid request message."""

    message_type: str
    error: str


def _tolerant_parser(message_class: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as error:
            return MalformedRequest(message_class.DESCRIPTOR.name, str(error))

    return parse


def _refusing_malformed(
    behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, MalformedRequest):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is not a valid {request.message_type} message: {request.error}",
            )
        return await behaviour(request, context)

    return handle


def inference_service_handler(servicer: object) -> grpc.GenericRpcHandler:
    """Every GRPCInferenceService method of `servicer`, with tolerant request parsing."""
    handlers = {}
    for method in SERVICE.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        if method.client_streaming:
            # Each message of a stream is parsed on its own: a malformed one is refused on the stream.
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                getattr(servicer, method.name),
                request_deserializer=_tolerant_parser(request_class),
                response_serializer=response_class.SerializeToString,
            )
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _refusing_malformed(getattr(servicer, method.name)),
            request_deserializer=_tolerant_parser(request_class),
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)
