"""Readiness shared by the workers of one server: each worker writes its own slot and reads all of them.

With `--workers N` a health check or ServerReady call reaches one worker, chosen by the kernel.
So that the answer covers the whole server, the supervisor allocates one shared byte per worker;
a worker is ready only while every worker has said it is, and the supervisor clears the slot of a
worker that died until its replacement has loaded its models.
"""

from __future__ import annotations

from multiprocessing.context import SpawnContext
from typing import Any


def allocate_slots(context: SpawnContext, count: int) -> Any:
    """Shared memory for `count` workers, all not ready; passed to each worker process at its start."""
    return context.RawArray("b", count)


class ReadinessBoard:
    """One worker's view of the shared slots."""

    def __init__(self, slots: Any, index: int) -> None:
        self._slots = slots
        self._index = index

    def publish(self, ready: bool) -> None:
        self._slots[self._index] = 1 if ready else 0

    def others_ready(self) -> bool:
        return all(slot for position, slot in enumerate(self._slots) if position != self._index)

    def not_ready(self) -> list[int]:
        """Indexes of the workers that are not ready (for the log)."""
        return [position for position, slot in enumerate(self._slots) if not slot]


def clear_slot(slots: Any, index: int) -> None:
    """The supervisor's side: worker `index` died; it is not ready until its replacement says so."""
    slots[index] = 0
