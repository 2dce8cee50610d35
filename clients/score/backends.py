"""Where a request's rows are scored: a Tau server over gRPC, or ONNX Runtime in this process.

Both answer the same question the same way: outputs for a batch of rows, or
RowsRejected when the model refused this batch's data (so its rows are worth
trying one by one). Anything else (server gone, model missing) stops the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import grpc
import numpy as np

from clients.aio_client import AsyncTauClient
from clients.errors import InferenceError
from clients.retry import RetryEvent, RetryPolicy
from clients.score.options import ScoreOptions, ScoringError
from clients.score.signature import ModelSignature, local_model_file, signature_from_config, signature_from_server
from server.cpus import available_cpus

# Codes that mean "this batch's data", not "this server": INTERNAL is what a model raising on
# its inputs answers (the batch fails, the server lives).
ROW_LEVEL_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.OUT_OF_RANGE})


class RowsRejected(Exception):
    """The model refused a batch for its data; the message says why."""


class ScoringBackend(Protocol):
    description: str
    retries: int

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    async def close(self) -> None: ...


class ServerBackend:
    """Scores through AsyncTauClient: retries UNAVAILABLE (a full queue) within each request's budget."""

    def __init__(self, options: ScoreOptions) -> None:
        self._model = options.model
        self._version = options.model_version
        self._outputs: list[str] = []
        self._client = AsyncTauClient(
            options.url,
            options.request_timeout_seconds,
            stream=options.stream,
            retry=RetryPolicy(max_attempts=options.max_attempts),
            ssl=options.ssl,
            root_certificates=options.root_certificates,
            private_key=options.private_key,
            certificate_chain=options.certificate_chain,
            gzip=options.gzip,
            headers=dict(options.headers),
            on_retry=self._count_retry,
        )
        self._options = options
        self.description = f"server {options.url}" + (" over one ModelStreamInfer stream" if options.stream else "")
        self.retries = 0

    def _count_retry(self, event: RetryEvent) -> None:
        self.retries += 1

    async def fetch_signature(self) -> ModelSignature:
        signature = await signature_from_server(self._client, self._options)
        self._outputs = signature.output_names
        return signature

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return await self._client.infer(self._model, inputs, self._outputs, self._version)
        except InferenceError as error:
            if error.code in ROW_LEVEL_CODES:
                raise RowsRejected(f"{error.code.name}: {error.message}") from error
            raise

    async def close(self) -> None:
        await self._client.close()


class LocalBackend:
    """Scores with ONNX Runtime in this process: the same session code and config the server uses."""

    def __init__(self, options: ScoreOptions) -> None:
        from server.runtime import ModelLoadError, OnnxSession  # ONNX Runtime only when scoring locally

        path, config = local_model_file(options)
        if not config.intra_op_threads:
            # The server keeps half the CPUs for its gRPC threads; here nothing else needs them.
            config = dataclasses.replace(config, intra_op_threads=available_cpus())
        try:
            self._session = OnnxSession(path, config)
        except ModelLoadError as error:
            raise ScoringError(str(error)) from error
        self.signature = signature_from_config(self._session.config, options)
        self._outputs = self.signature.output_names
        # One run at a time: ONNX Runtime already spreads each run over every core.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tau-score-ort")
        self.description = f"in-process ONNX Runtime ({path})"
        self.retries = 0

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._session.run, inputs, self._outputs)
        except Exception as error:  # ONNX Runtime's errors are untyped; a failing run is about its data
            raise RowsRejected(f"ONNX Runtime: {error}") from error

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


async def open_backend(options: ScoreOptions) -> tuple[ScoringBackend, ModelSignature]:
    """The backend the options ask for, and the model signature it reports."""
    if options.local:
        local = LocalBackend(options)
        return local, local.signature
    server = ServerBackend(options)
    try:
        return server, await server.fetch_signature()
    except BaseException:
        await server.close()
        raise
