"""AsyncTauClient answers every call as TauClient does, retries the same way, and lives beside tritonclient."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc
import numpy as np
import pytest

from clients import AsyncTauClient, InferenceError, RetryEvent, RetryPolicy, TauClient
from tests.server_process import REPO_ROOT, ServerProcess


@pytest.mark.asyncio
async def test_async_calls_match_the_sync_clients(server: ServerProcess) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), np.float32)
    with TauClient(server.address) as sync:
        expected = sync.infer("add_sub", {"INPUT0": a, "INPUT1": b})
        expected_metadata = sync.model_metadata("add_sub")
        expected_config = sync.model_config("identity_fp32")
        expected_index = sync.repository_index()
        expected_ready = sync.is_server_ready()  # False: the corrupt model fails strict readiness
    async with AsyncTauClient(server.address) as client:
        assert await client.is_server_live() and await client.is_server_ready() == expected_ready
        assert await client.is_model_ready("add_sub") and not await client.is_model_ready("corrupt")
        assert (await client.server_metadata()).name == "tau"
        assert await client.model_metadata("add_sub") == expected_metadata
        assert await client.model_config("identity_fp32") == expected_config
        assert await client.repository_index() == expected_index
        outputs = await client.infer("add_sub", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT1", "OUTPUT0"])
        stats = await client.model_statistics("add_sub")
    assert set(outputs) == {"OUTPUT0", "OUTPUT1"}
    for name in expected:
        np.testing.assert_array_equal(outputs[name], expected[name])
    assert stats[0].name == "add_sub" and stats[0].inference_count >= 4


@pytest.mark.asyncio
async def test_async_errors_carry_status_message_and_attempts(server: ServerProcess) -> None:
    async with AsyncTauClient(server.address) as client:
        with pytest.raises(InferenceError) as refused:
            await client.infer(
                "add_sub", {"INPUT0": np.ones((1, 16), np.int32), "INPUT1": np.ones((1, 16), np.float32)}
            )
        with pytest.raises(InferenceError) as late:
            await client.infer("slow", {"INPUT0": np.ones((64, 1024), np.float32)}, timeout_seconds=0.01)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and refused.value.attempts == 1
    assert "expected datatype FP32, got INT32" in refused.value.message
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.asyncio
async def test_async_client_retries_a_full_queue(client_server: ServerProcess) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=50, initial_backoff_seconds=0.02, max_backoff_seconds=0.3)
    rows = np.ones((1, 1024), np.float32)
    async with AsyncTauClient(client_server.address, retry=policy, on_retry=events.append) as client:
        results = await asyncio.gather(*(client.infer("slow_queue1", {"INPUT0": rows}) for _ in range(6)))
    assert all(result["OUTPUT0"].shape == (1, 1024) for result in results)
    assert any("queue is full" in event.message for event in events)


BOTH_ASYNC_CLIENTS_SCRIPT = """
import asyncio, sys
import numpy as np
order = sys.argv[2]
if order == "tau-first":
    from clients import AsyncTauClient
    import tritonclient.grpc.aio as triton
else:
    import tritonclient.grpc.aio as triton
    from clients import AsyncTauClient

async def main():
    a = np.ones((2, 16), np.float32)
    b = np.full((2, 16), 3.0, np.float32)
    async with AsyncTauClient(sys.argv[1]) as tau:
        ours = (await tau.infer("add_sub", {"INPUT0": a, "INPUT1": b}))["OUTPUT0"]
    client = triton.InferenceServerClient(sys.argv[1])
    inputs = [triton.InferInput("INPUT0", [2, 16], "FP32"), triton.InferInput("INPUT1", [2, 16], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    theirs = (await client.infer("add_sub", inputs)).as_numpy("OUTPUT0")
    await client.close()
    assert np.array_equal(ours, a + b) and np.array_equal(theirs, a + b)
    print("both async clients ok")

asyncio.run(main())
"""


@pytest.mark.parametrize("order", ["tau-first", "triton-first"])
def test_async_tau_and_tritonclient_share_one_process(server: ServerProcess, order: str) -> None:
    # A fresh interpreter each time: import order is what used to break ("duplicate symbol").
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", BOTH_ASYNC_CLIENTS_SCRIPT, server.address, order],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "both async clients ok" in result.stdout
