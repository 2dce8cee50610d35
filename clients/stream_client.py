"""Concurrent inferences multiplexed over one ModelStreamInfer stream.

A unary call costs the server about twice what one message on an open stream does
(docs/performance.md, "Over a stream"), so a client with many requests in flight can send
them all on one stream: each request gets a fresh id, and the answer that carries the id
resolves the caller waiting for it. Refusals come back on the stream with their status code
and are retried like unary calls (UNAVAILABLE only, within the call's budget). When the stream
itself breaks (server restart, lost connection) every waiting call fails with that status and
the next call opens a new stream.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from clients.client_base import STREAM_METHOD
from clients.infer_codec import ParameterValue, decode_infer_response, encode_infer_request
from clients.retry import CallAttempts
from server.protocol import grpc_service_pb2 as pb
from server.stream_infer import STATUS_PARAMETER


class StreamRefusal(grpc.RpcError):
    """A refusal answered on the stream, shaped as the RpcError the retry logic reads."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self._code = code
        self._message = message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message


def _status(name: str) -> grpc.StatusCode:
    return grpc.StatusCode[name] if name in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN


class InferenceStream:
    """One open ModelStreamInfer call shared by every `infer` of one client; use it from one event loop."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: Sequence[tuple[str, str]],
        attempts: Callable[[float | None], CallAttempts],
    ) -> None:
        self._channel = channel
        self._metadata = tuple(metadata)
        self._attempts = attempts
        self._ids = itertools.count()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[pb.ModelInferResponse]] = {}
        # grpc.aio allows one write in progress per call: concurrent callers take turns.
        self._writing = asyncio.Lock()

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None,
        version: str,
        request_id: str,
        timeout_seconds: float | None,
        parameters: Mapping[str, ParameterValue] | None,
        classify: Mapping[str, int] | None,
    ) -> dict[str, np.ndarray]:
        attempts = self._attempts(timeout_seconds)
        while True:
            timeout = attempts.start_attempt()
            # Unique per stream, so each answer finds its caller; the caller's own id stays readable in logs.
            stream_id = f"{request_id}#{next(self._ids)}" if request_id else str(next(self._ids))
            request = encode_infer_request(model, inputs, outputs, version, stream_id, parameters, classify)
            try:
                response = await self._exchange(stream_id, request, timeout)
            except grpc.RpcError as error:
                await asyncio.sleep(attempts.backoff_after(error))
                continue
            return decode_infer_response(response)

    async def _exchange(self, stream_id: str, request: bytes, timeout: float | None) -> pb.ModelInferResponse:
        call = self._open()
        answer = asyncio.get_running_loop().create_future()
        self._waiting[stream_id] = answer
        try:
            return await asyncio.wait_for(self._send_and_wait(call, request, answer), timeout)
        except TimeoutError:
            raise StreamRefusal(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:.3f}s") from None
        except grpc.aio.AioRpcError as error:
            raise StreamRefusal(error.code(), error.details() or "") from error
        except asyncio.InvalidStateError:
            raise StreamRefusal(grpc.StatusCode.UNAVAILABLE, "the stream closed before the request was sent") from None
        finally:
            self._waiting.pop(stream_id, None)

    async def _send_and_wait(
        self, call: Any, request: bytes, answer: asyncio.Future[pb.ModelInferResponse]
    ) -> pb.ModelInferResponse:
        async with self._writing:
            await call.write(request)
        return await answer

    def _open(self) -> Any:
        if self._call is None:
            method = self._channel.stream_stream(
                STREAM_METHOD, request_serializer=None, response_deserializer=pb.ModelStreamInferResponse.FromString
            )
            self._call = method(metadata=self._metadata)
            self._reader = asyncio.get_running_loop().create_task(self._read(self._call))
        return self._call

    async def _read(self, call: Any) -> None:
        """Hand each answer to its caller; when the stream ends, fail whoever still waits."""
        failure = StreamRefusal(grpc.StatusCode.UNAVAILABLE, "the stream to the server ended")
        try:
            async for response in call:
                answer = self._waiting.get(response.infer_response.id)
                if answer is None or answer.done():
                    continue  # its caller gave up (timeout, cancellation)
                if response.error_message:
                    status = response.infer_response.parameters[STATUS_PARAMETER].string_param
                    answer.set_exception(StreamRefusal(_status(status), response.error_message))
                else:
                    answer.set_result(response.infer_response)
        except grpc.aio.AioRpcError as error:
            failure = StreamRefusal(error.code(), error.details() or "")
        finally:
            if self._call is call:
                self._call = None
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(failure)

    async def close(self) -> None:
        if self._call is not None:
            call, self._call = self._call, None
            call.cancel()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
