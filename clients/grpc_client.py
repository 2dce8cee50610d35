"""A small synchronous V2 gRPC client: numpy in, numpy out, deadlines, exceptions that carry the status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

import grpc
import numpy as np

from server.datatypes import DATATYPE_BY_NUMPY, NUMPY_BY_DATATYPE
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc
from server.settings import MAX_GRPC_MESSAGE_BYTES


class InferenceError(Exception):
    """A call the server refused or that failed; `code` is the gRPC status, `message` the server's words."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _datatype_of(name: str, array: np.ndarray) -> str:
    datatype = DATATYPE_BY_NUMPY.get(array.dtype.newbyteorder("<"))
    if datatype is None:
        raise TypeError(f"input '{name}': dtype {array.dtype} has no V2 datatype")
    return datatype


def build_infer_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
    version: str = "",
    request_id: str = "",
) -> pb.ModelInferRequest:
    """A ModelInferRequest with every input in raw_input_contents (little-endian, row-major)."""
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype=_datatype_of(name, array), shape=array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def decode_infer_response(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Output name -> numpy array, read from raw_output_contents without copying."""
    arrays: dict[str, np.ndarray] = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        dtype = NUMPY_BY_DATATYPE[tensor.datatype]
        arrays[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.shape))
    return arrays


class TauClient:
    """One channel to one server, reused for every call; safe to share between threads."""

    def __init__(self, url: str, timeout_seconds: float | None = 30.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._channel = grpc.insecure_channel(
            url,
            options=[
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
            ],
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def __enter__(self) -> TauClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: object, timeout_seconds: float | None) -> object:
        try:
            return getattr(self._stub, method)(
                request, timeout=timeout_seconds if timeout_seconds is not None else self.timeout_seconds
            )
        except grpc.RpcError as error:
            raise InferenceError(error.code(), error.details() or "") from error

    def is_server_live(self) -> bool:
        return bool(self._call("ServerLive", pb.ServerLiveRequest(), None).live)  # type: ignore[attr-defined]

    def is_server_ready(self) -> bool:
        return bool(self._call("ServerReady", pb.ServerReadyRequest(), None).ready)  # type: ignore[attr-defined]

    def is_model_ready(self, model: str, version: str = "") -> bool:
        response = self._call("ModelReady", pb.ModelReadyRequest(name=model, version=version), None)
        return bool(response.ready)  # type: ignore[attr-defined]

    def model_metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(name=model, version=version)
        return self._call("ModelMetadata", request, None)  # type: ignore[return-value]

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        version: str = "",
        request_id: str = "",
        timeout_seconds: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run `model` on `inputs`; returns the requested outputs (all when None) as numpy arrays."""
        request = build_infer_request(model, inputs, outputs, version, request_id)
        response = self._call("ModelInfer", request, timeout_seconds)
        return decode_infer_response(response)  # type: ignore[arg-type]
