"""ModelStreamInfer: many inference requests on one bidirectional stream, each answered as it finishes.

Requests on a stream run concurrently, so they batch with each other and with other clients'
(one request at a time would make a stream no faster than unary calls); answers come back in
the order they finish, each carrying its request's `id`, as Triton's do. A refused request gets
a response with `error_message` (and its status code in the parameter `grpc_status`), and the
stream goes on. At most STREAM_IN_FLIGHT requests of one stream are in the server at once:
beyond that the server stops reading the stream, and HTTP/2 flow control holds the client back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from server.errors import RequestError
from server.grpc_handlers import MalformedRequest
from server.protocol import grpc_service_pb2 as pb

STREAM_IN_FLIGHT = 256
STATUS_PARAMETER = "grpc_status"

Answer = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelInferResponse]]


def _refusal(request: pb.ModelInferRequest | None, status: str, message: str) -> pb.ModelStreamInferResponse:
    response = pb.ModelStreamInferResponse(error_message=message)
    if request is not None:
        response.infer_response.id = request.id
        response.infer_response.model_name = request.model_name
        response.infer_response.model_version = request.model_version
    response.infer_response.parameters[STATUS_PARAMETER].string_param = status
    return response


async def answer_stream(requests: AsyncIterator[Any], answer: Answer) -> AsyncIterator[pb.ModelStreamInferResponse]:
    """Read `requests`, answer each with `answer` concurrently, yield the responses as they are ready."""
    ready: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
    slots = asyncio.Semaphore(STREAM_IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()

    async def answer_one(request: pb.ModelInferRequest) -> None:
        try:
            ready.put_nowait(pb.ModelStreamInferResponse(infer_response=await answer(request)))
        except RequestError as error:
            ready.put_nowait(_refusal(request, error.status.name, str(error)))
        finally:
            slots.release()

    async def read_all() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                if isinstance(request, MalformedRequest):
                    message = f"request is not a valid {request.message_type} message: {request.error}"
                    ready.put_nowait(_refusal(None, "INVALID_ARGUMENT", message))
                    slots.release()
                    continue
                task = asyncio.get_running_loop().create_task(answer_one(request))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            ready.put_nowait(None)

    reader = asyncio.get_running_loop().create_task(read_all())
    try:
        while (response := await ready.get()) is not None:
            yield response
        await reader  # a failure to read the stream (not a refused request) ends the call with its error
    finally:
        # The client went away or the deadline passed: nothing more of this stream runs.
        reader.cancel()
        for task in list(running):
            task.cancel()
