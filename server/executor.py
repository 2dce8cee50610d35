"""Runs a model's executions off the event loop, at most `instance_count` at once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from server.runtime import OnnxSession


class ModelExecutor:
    """One thread per instance: ONNX Runtime releases the GIL, so instances really run in parallel."""

    def __init__(self, session: OnnxSession, instance_count: int, thread_name: str) -> None:
        self._session = session
        self._threads = ThreadPoolExecutor(max_workers=instance_count, thread_name_prefix=thread_name)

    async def run(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._session.run, inputs, output_names)

    def close(self) -> None:
        """Finish what is running, then release the threads."""
        self._threads.shutdown(wait=True)
