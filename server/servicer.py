"""The GRPCInferenceService servicer: decodes, validates, delegates, and maps errors to status codes.

It knows the wire messages and the repository; it does not know ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from server.config import ConfigError, ModelConfig
from server.datatypes import triton_type_name
from server.errors import ControlModeError, InvalidRequestError, LoadFailedError, RequestError
from server.metrics import UNKNOWN_MODEL, record_request
from server.model_loader import LoadedModel
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from server.protocol import model_config_pb2 as mc
from server.readiness_board import ReadinessBoard
from server.repository import ModelRepository
from server.runtime import ModelLoadError
from server.settings import Settings
from server.statistics import Duration
from server.stream_infer import answer_stream
from server.tensor_codec import decode_request, encode_response
from server.triton_config import from_triton_json, looks_like_triton
from server.triton_onnxruntime import LABELS_PARAMETER

log = logging.getLogger(__name__)

SERVER_NAME = "tau"
SERVER_VERSION = "0.1.0"
# Only what is really implemented: tritonclient and KServe tooling read this list.
SERVER_EXTENSIONS = (
    "classification",
    "model_configuration",
    "model_repository",
    "parameters",
    "schedule_policy",
    "statistics",
)


async def _abort(context: grpc.aio.ServicerContext, error: RequestError) -> None:
    await context.abort(error.status, str(error))


def model_config_message(model: LoadedModel) -> mc.ModelConfig:
    """Triton's ModelConfig for the fields Tau supports."""
    config: ModelConfig = model.config
    assert config.inputs is not None and config.outputs is not None
    message = mc.ModelConfig(
        name=config.name,
        platform=config.platform,
        backend="onnxruntime",
        max_batch_size=config.max_batch_size or 0,
        default_model_filename="model.onnx",
    )
    policy = config.version_policy
    if policy.kind == "all":
        message.version_policy.all.SetInParent()
    elif policy.kind == "specific":
        message.version_policy.specific.versions.extend(policy.versions)
    else:
        message.version_policy.latest.num_versions = policy.num_versions
    for spec in config.inputs:
        message.input.add(name=spec.name, data_type=triton_type_name(spec.datatype), dims=spec.shape)
    for spec in config.outputs:
        message.output.add(name=spec.name, data_type=triton_type_name(spec.datatype), dims=spec.shape)
    on_gpu = model.session.active_provider != "CPUExecutionProvider"
    message.instance_group.add(
        name=f"{config.name}_0",
        count=config.instance_count,
        kind=mc.ModelInstanceGroup.KIND_GPU if on_gpu else mc.ModelInstanceGroup.KIND_CPU,
        gpus=[config.gpu_device_id] if on_gpu else [],
    )
    batching = config.dynamic_batching
    if batching.enabled and config.max_batch_size:
        message.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
        message.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
        message.dynamic_batching.priority_levels = batching.priority_levels
        message.dynamic_batching.default_priority_level = batching.default_priority_level
    queue_policy = message.dynamic_batching.default_queue_policy
    queue_policy.max_queue_size = batching.max_queue_size
    queue_policy.default_timeout_microseconds = batching.default_timeout_microseconds
    queue_policy.allow_timeout_override = True
    message.parameters["execution_provider"].string_value = model.session.active_provider
    message.parameters["requested_execution_providers"].string_value = ",".join(config.execution_providers)
    if config.labels:
        # Triton names a label file; clients of Tau (tau-score) get the class names themselves.
        message.parameters[LABELS_PARAMETER].string_value = json.dumps(list(config.labels))
    return message


def _timeout_seconds(
    timeout_microseconds: int | None, config: ModelConfig, context: grpc.aio.ServicerContext
) -> float | None:
    """The tightest of the request's `timeout`, the model's default timeout, and the gRPC deadline."""
    if timeout_microseconds is None and config.dynamic_batching.default_timeout_microseconds:
        timeout_microseconds = config.dynamic_batching.default_timeout_microseconds
    limits = [timeout_microseconds / 1e6] if timeout_microseconds else []
    remaining = context.time_remaining()
    if remaining is not None:
        limits.append(remaining)
    return min(limits) if limits else None


def _duration(duration: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def model_statistics_message(model: LoadedModel) -> pb.ModelStatistics:
    """Triton's ModelStatistics, as tritonclient's get_inference_statistics reads it."""
    stats = model.statistics
    message = pb.ModelStatistics(
        name=model.name,
        version=model.version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
    )
    for batch_size, per_size in sorted(stats.batches.items()):
        message.batch_stats.add(
            batch_size=batch_size,
            compute_input=_duration(per_size.compute_input),
            compute_infer=_duration(per_size.compute_infer),
            compute_output=_duration(per_size.compute_output),
        )
    return message


def _load_override(request: pb.RepositoryModelLoadRequest) -> dict[str, Any] | None:
    """The config override tritonclient's load_model(config=...) sends, in Tau's or Triton's JSON form."""
    for key in request.parameters:
        if key.startswith("file:"):
            raise InvalidRequestError(
                f"parameter '{key}': file overrides are not supported; put files in the repository"
            )
    if "config" not in request.parameters:
        return None
    text = request.parameters["config"].string_param
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidRequestError(f"parameter 'config': not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise InvalidRequestError("parameter 'config': expected a JSON object")
    try:
        return from_triton_json(raw) if looks_like_triton(raw) else raw
    except ConfigError as error:
        raise InvalidRequestError(f"parameter 'config': {error}") from error


# Client mistakes are the client's business (DEBUG); the server's own refusals are worth an INFO line.
_CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def _log_refusal(request: pb.ModelInferRequest, error: RequestError) -> None:
    level = logging.DEBUG if error.status in _CLIENT_ERRORS else logging.INFO
    if log.isEnabledFor(level):
        # Ids and names are bounded in the log; tensor contents never appear.
        log.log(
            level,
            "ModelInfer refused: %s",
            str(error)[:500],
            extra={
                "request_id": request.id[:128],
                "model": request.model_name[:128],
                "code": error.status.name,
            },
        )


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """V2 / Open Inference Protocol over gRPC, backed by a ModelRepository."""

    def __init__(
        self,
        repository: ModelRepository,
        settings: Settings,
        metrics_enabled: bool = True,
        board: ReadinessBoard | None = None,
    ) -> None:
        self._repository = repository
        self._settings = settings
        self._metrics_enabled = metrics_enabled
        self._max_elements = settings.max_elements_per_input
        self._board = board  # set in worker mode: readiness covers every worker
        self.accepting = True

    def server_ready(self) -> bool:
        """This process is ready and, with several workers, so is every other."""
        return self.own_readiness() and (self._board is None or self._board.others_ready())

    def own_readiness(self) -> bool:
        if not self.accepting:
            return False
        if self._settings.required_models:
            return self._repository.all_ready(self._settings.required_models)
        return self._repository.all_ready() if self._settings.strict_readiness else True

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.server_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        try:
            self._repository.get(request.name, request.version)
        except RequestError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=SERVER_EXTENSIONS)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            model = self._repository.get(request.name, request.version)
        except RequestError as error:
            await _abort(context, error)
            raise
        config = model.config
        assert config.inputs is not None and config.outputs is not None
        batch_dim = [-1] if config.max_batch_size else []
        response = pb.ModelMetadataResponse(
            name=model.name, versions=self._repository.ready_versions(model.name), platform=config.platform
        )
        for spec in config.inputs:
            response.inputs.add(name=spec.name, datatype=spec.datatype, shape=batch_dim + list(spec.shape))
        for spec in config.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=batch_dim + list(spec.shape))
        return response

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        try:
            model = self._repository.get(request.name, request.version)
        except RequestError as error:
            await _abort(context, error)
            raise
        return pb.ModelConfigResponse(config=model_config_message(model))

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        for status in self._repository.index():
            if request.ready and status.state != "READY":
                continue
            response.models.add(
                name=status.name, version=status.version, state=status.state.value, reason=status.reason
            )
        return response

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        try:
            return await self.answer(request, context)
        except RequestError as error:
            await _abort(context, error)
            raise

    async def ModelStreamInfer(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # grpc.aio recognises a streaming handler by its being an async generator function.
        async for response in answer_stream(requests, lambda request: self.answer(request, context)):
            yield response

    async def answer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        """One inference; a refusal raises RequestError, after it is logged and counted."""
        started = time.perf_counter()
        model: LoadedModel | None = None
        code = "OK"
        try:
            if not request.model_name:
                raise InvalidRequestError("model_name: required")
            model = self._repository.get(request.model_name, request.model_version)
            return await self._infer(model, request, context)
        except RequestError as error:
            code = error.status.name
            _log_refusal(request, error)
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            if self._metrics_enabled:
                self._record(request, model, code, time.perf_counter() - started)

    async def _infer(
        self, model: LoadedModel, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        decoded = decode_request(request, model.config, self._max_elements, self._settings.max_inputs_per_request)
        outputs = await model.batcher.infer(
            decoded.inputs,
            decoded.output_names,
            rows=decoded.batch_size,
            priority=decoded.priority,
            timeout_seconds=_timeout_seconds(decoded.timeout_microseconds, model.config, context),
        )
        return encode_response(request, model.name, model.version, outputs, decoded.classifications, model.config)

    def _record(self, request: pb.ModelInferRequest, model: LoadedModel | None, code: str, seconds: float) -> None:
        if model is None:
            # A name the repository knows (a model that failed to load) is a bounded label; any other is not.
            known = request.model_name in self._repository.model_names()
            record_request(request.model_name if known else UNKNOWN_MODEL, request.model_version, code)
            return
        metrics = model.statistics.metrics
        if metrics is None:
            return
        if code == "OK":
            metrics.requests_ok.inc()  # resolved once: no label lookup on the common path
        else:
            record_request(model.name, model.version, code)
        metrics.request_duration.observe(seconds)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        try:
            if request.name:
                models = [self._repository.get(request.name, request.version)]
            else:
                models = [status.model for status in self._repository.index() if status.model is not None]
        except RequestError as error:
            await _abort(context, error)
            raise
        return pb.ModelStatisticsResponse(model_stats=[model_statistics_message(model) for model in models])

    def _check_control_mode(self) -> None:
        if self._settings.model_control_mode != "explicit":
            raise ControlModeError(
                f"model load/unload is not allowed in model control mode '{self._settings.model_control_mode}'; "
                "start the server with --model-control-mode explicit"
            )

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        try:
            self._check_control_mode()
            override = _load_override(request)
            try:
                await self._repository.load(request.model_name, override)
            except ModelLoadError as error:
                raise LoadFailedError(str(error)) from error
        except RequestError as error:
            await _abort(context, error)
            raise
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            self._check_control_mode()
            fail_queued = request.parameters["fail_queued"].bool_param if "fail_queued" in request.parameters else False
            await self._repository.unload(request.model_name, fail_queued=fail_queued)
        except RequestError as error:
            await _abort(context, error)
            raise
        return pb.RepositoryModelUnloadResponse()
