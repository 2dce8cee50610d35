"""The asyncio V2 gRPC client (grpc.aio): the same calls as TauClient, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from clients.channel import call_metadata, open_aio_channel
from clients.client_base import INFER_METHOD, ClientBase
from clients.infer_codec import ParameterValue, decode_infer_response_bytes, encode_infer_request
from clients.stream_client import InferenceStream
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from server.protocol import model_config_pb2 as mc


class AsyncTauClient(ClientBase):
    """One grpc.aio channel to one server, reused for every call; use it from one event loop.

    The channel opens on the first call, inside the running loop that grpc.aio binds it to.
    Every call may raise InferenceError (status code, server message, attempt count).
    """

    def __init__(self, url: str, timeout_seconds: float | None = 30.0, stream: bool = False, **options: Any) -> None:
        """See ClientBase for the options: retry, ssl, TLS files, gzip, headers, channel_options, on_retry.

        With `stream=True`, `infer` calls share one ModelStreamInfer stream instead of one unary call
        each: about half the server's cost per request when many are in flight (docs/performance.md)."""
        super().__init__(url, timeout_seconds, **options)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.GRPCInferenceServiceStub | None = None
        self._model_infer: Any = None
        self._use_stream = stream
        self._stream: InferenceStream | None = None

    async def __aenter__(self) -> AsyncTauClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def _open_stream(self) -> InferenceStream:
        if self._stream is None:
            self._rpc("ModelInfer")  # opens the channel
            assert self._channel is not None
            metadata = call_metadata(self.settings, None) or ()
            self._stream = InferenceStream(
                self._channel, metadata, lambda timeout: self._attempts("ModelStreamInfer", timeout)
            )
        return self._stream

    def _rpc(self, method: str) -> Any:
        if self._channel is None:
            self._channel = open_aio_channel(self.settings)
            self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
            self._model_infer = self._channel.unary_unary(INFER_METHOD)
        return self._model_infer if method == "ModelInfer" else getattr(self._stub, method)

    async def _call(
        self,
        method: str,
        request: Any,
        timeout_seconds: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        rpc = self._rpc(method)
        metadata = call_metadata(self.settings, headers)
        attempts = self._attempts(method, timeout_seconds)
        while True:
            timeout = attempts.start_attempt()
            try:
                return await rpc(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as error:
                await asyncio.sleep(attempts.backoff_after(error))

    async def is_server_live(self, timeout_seconds: float | None = None) -> bool:
        return bool((await self._call("ServerLive", pb.ServerLiveRequest(), timeout_seconds)).live)

    async def is_server_ready(self, timeout_seconds: float | None = None) -> bool:
        return bool((await self._call("ServerReady", pb.ServerReadyRequest(), timeout_seconds)).ready)

    async def is_model_ready(self, model: str, version: str = "", timeout_seconds: float | None = None) -> bool:
        request = pb.ModelReadyRequest(name=model, version=version)
        return bool((await self._call("ModelReady", request, timeout_seconds)).ready)

    async def server_metadata(self, timeout_seconds: float | None = None) -> pb.ServerMetadataResponse:
        return await self._call("ServerMetadata", pb.ServerMetadataRequest(), timeout_seconds)

    async def model_metadata(
        self, model: str, version: str = "", timeout_seconds: float | None = None
    ) -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(name=model, version=version)
        return await self._call("ModelMetadata", request, timeout_seconds)

    async def model_config(self, model: str, version: str = "", timeout_seconds: float | None = None) -> mc.ModelConfig:
        request = pb.ModelConfigRequest(name=model, version=version)
        return (await self._call("ModelConfig", request, timeout_seconds)).config

    async def repository_index(
        self, ready_only: bool = False, timeout_seconds: float | None = None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        response = await self._call("RepositoryIndex", pb.RepositoryIndexRequest(ready=ready_only), timeout_seconds)
        return list(response.models)

    async def model_statistics(
        self, model: str = "", version: str = "", timeout_seconds: float | None = None
    ) -> list[pb.ModelStatistics]:
        request = pb.ModelStatisticsRequest(name=model, version=version)
        return list((await self._call("ModelStatistics", request, timeout_seconds)).model_stats)

    async def load_model(self, model: str, config_json: str = "", timeout_seconds: float | None = None) -> None:
        request = pb.RepositoryModelLoadRequest(model_name=model)
        if config_json:
            request.parameters["config"].string_param = config_json
        await self._call("RepositoryModelLoad", request, timeout_seconds)

    async def unload_model(self, model: str, timeout_seconds: float | None = None) -> None:
        request = pb.RepositoryModelUnloadRequest(model_name=model)
        await self._call("RepositoryModelUnload", request, timeout_seconds)

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        version: str = "",
        request_id: str = "",
        timeout_seconds: float | None = None,
        headers: Mapping[str, str] | None = None,
        parameters: Mapping[str, ParameterValue] | None = None,
        classify: Mapping[str, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """As TauClient.infer: the outputs as read-only numpy arrays; the budget covers every retry."""
        if self._use_stream:
            if headers:
                raise ValueError("headers: a shared stream sends the client's headers once; set them on the client")
            return await self._open_stream().infer(
                model, inputs, outputs, version, request_id, timeout_seconds, parameters, classify
            )
        request = encode_infer_request(model, inputs, outputs, version, request_id, parameters, classify)
        return decode_infer_response_bytes(await self._call("ModelInfer", request, timeout_seconds, headers))
