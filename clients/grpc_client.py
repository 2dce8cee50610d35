"""The synchronous V2 gRPC client: numpy in, numpy out, retries within a deadline budget, TLS, headers."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from clients.channel import call_metadata, open_channel
from clients.client_base import INFER_METHOD, ClientBase
from clients.errors import InferenceError
from clients.infer_codec import (
    ParameterValue,
    build_infer_request,
    decode_infer_response,
    decode_infer_response_bytes,
    encode_infer_request,
)
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from server.protocol import model_config_pb2 as mc

# Kept importable from here: callers (and clients.bench) use these names.
__all__ = ["InferenceError", "TauClient", "build_infer_request", "decode_infer_response"]


class TauClient(ClientBase):
    """One channel to one server, opened once and reused for every call; safe to share between threads.

    Every call may raise InferenceError (status code, server message, attempt count).
    """

    def __init__(self, url: str, timeout_seconds: float | None = 30.0, **options: Any) -> None:
        """See ClientBase for the options: retry, ssl, TLS files, gzip, headers, channel_options, on_retry."""
        super().__init__(url, timeout_seconds, **options)
        self._channel = open_channel(self.settings)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        # Bytes in, bytes out: infer_codec writes and reads the tensor bytes itself.
        self._model_infer = self._channel.unary_unary(INFER_METHOD)

    def __enter__(self) -> TauClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(
        self,
        method: str,
        request: Any,
        timeout_seconds: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        rpc = self._model_infer if method == "ModelInfer" else getattr(self._stub, method)
        metadata = call_metadata(self.settings, headers)
        attempts = self._attempts(method, timeout_seconds)
        while True:
            timeout = attempts.start_attempt()
            try:
                return rpc(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as error:
                time.sleep(attempts.backoff_after(error))

    def is_server_live(self, timeout_seconds: float | None = None) -> bool:
        return bool(self._call("ServerLive", pb.ServerLiveRequest(), timeout_seconds).live)

    def is_server_ready(self, timeout_seconds: float | None = None) -> bool:
        return bool(self._call("ServerReady", pb.ServerReadyRequest(), timeout_seconds).ready)

    def is_model_ready(self, model: str, version: str = "", timeout_seconds: float | None = None) -> bool:
        request = pb.ModelReadyRequest(name=model, version=version)
        return bool(self._call("ModelReady", request, timeout_seconds).ready)

    def server_metadata(self, timeout_seconds: float | None = None) -> pb.ServerMetadataResponse:
        return self._call("ServerMetadata", pb.ServerMetadataRequest(), timeout_seconds)

    def model_metadata(
        self, model: str, version: str = "", timeout_seconds: float | None = None
    ) -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(name=model, version=version)
        return self._call("ModelMetadata", request, timeout_seconds)

    def model_config(self, model: str, version: str = "", timeout_seconds: float | None = None) -> mc.ModelConfig:
        """Triton's ModelConfig message for the model."""
        request = pb.ModelConfigRequest(name=model, version=version)
        return self._call("ModelConfig", request, timeout_seconds).config

    def repository_index(
        self, ready_only: bool = False, timeout_seconds: float | None = None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        """Every model folder and version the server knows, with its state (READY, UNAVAILABLE, ...)."""
        response = self._call("RepositoryIndex", pb.RepositoryIndexRequest(ready=ready_only), timeout_seconds)
        return list(response.models)

    def model_statistics(
        self, model: str = "", version: str = "", timeout_seconds: float | None = None
    ) -> list[pb.ModelStatistics]:
        """Triton's per-model inference statistics; every loaded model when `model` is empty."""
        request = pb.ModelStatisticsRequest(name=model, version=version)
        return list(self._call("ModelStatistics", request, timeout_seconds).model_stats)

    def load_model(self, model: str, config_json: str = "", timeout_seconds: float | None = None) -> None:
        """Load or reload `model` (explicit model control mode), optionally with a config override."""
        request = pb.RepositoryModelLoadRequest(model_name=model)
        if config_json:
            request.parameters["config"].string_param = config_json
        self._call("RepositoryModelLoad", request, timeout_seconds)

    def unload_model(self, model: str, timeout_seconds: float | None = None) -> None:
        self._call("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=model), timeout_seconds)

    def infer(
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
        """Run `model` on `inputs`; returns the requested outputs (all when None) as read-only numpy arrays.

        `timeout_seconds` is the whole call's budget, retries included; `headers` add
        to the client's; `parameters` are the request's V2 parameters (e.g. priority);
        `classify` maps outputs to a number of top classes to get instead of their values
        (b"<value>:<index>[:<label>]" each, highest first).
        """
        request = encode_infer_request(model, inputs, outputs, version, request_id, parameters, classify)
        return decode_infer_response_bytes(self._call("ModelInfer", request, timeout_seconds, headers))
