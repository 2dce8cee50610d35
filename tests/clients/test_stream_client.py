"""AsyncTauClient(stream=True): concurrent infer calls share one ModelStreamInfer stream, with unary's semantics."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from clients import AsyncTauClient, InferenceError, RetryEvent, RetryPolicy, TauClient
from tests.server_process import ServerProcess


@pytest.mark.asyncio
async def test_concurrent_calls_on_one_stream_each_get_their_own_answer(client_server: ServerProcess) -> None:
    rows = [np.random.default_rng(seed).standard_normal((1, 16)).astype(np.float32) for seed in range(48)]
    with TauClient(client_server.address) as unary:
        expected = [unary.infer("mlp", {"features": row})["probabilities"] for row in rows]
    async with AsyncTauClient(client_server.address, stream=True) as client:
        answers = await asyncio.gather(*(client.infer("mlp", {"features": row}) for row in rows))
        # A second round reuses the open stream.
        again = await client.infer("mlp", {"features": rows[0]}, request_id="tagged")
    for answer, want in zip(answers, expected, strict=True):
        np.testing.assert_allclose(answer["probabilities"], want, rtol=1e-6)
    np.testing.assert_allclose(again["probabilities"], expected[0], rtol=1e-6)


@pytest.mark.asyncio
async def test_a_refusal_on_the_stream_raises_for_its_caller_only(client_server: ServerProcess) -> None:
    good = np.ones((1, 16), np.float32)
    async with AsyncTauClient(client_server.address, stream=True) as client:
        outcomes = await asyncio.gather(
            client.infer("mlp", {"features": good}),
            client.infer("mlp", {"features": np.ones((1, 16), np.int32)}),
            client.infer("mlp", {"features": good}),
            return_exceptions=True,
        )
        with pytest.raises(InferenceError) as late:
            await client.infer("slow_queue1", {"INPUT0": np.ones((64, 1024), np.float32)}, timeout_seconds=0.01)
    refused = outcomes[1]
    assert isinstance(refused, InferenceError)
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and refused.attempts == 1
    assert "expected datatype FP32, got INT32" in refused.message
    assert all(isinstance(outcome, dict) for outcome in (outcomes[0], outcomes[2]))
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.asyncio
async def test_a_full_queue_answered_on_the_stream_is_retried(client_server: ServerProcess) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=50, initial_backoff_seconds=0.02, max_backoff_seconds=0.3)
    rows = np.ones((1, 1024), np.float32)
    async with AsyncTauClient(client_server.address, stream=True, retry=policy, on_retry=events.append) as client:
        results = await asyncio.gather(*(client.infer("slow_queue1", {"INPUT0": rows}) for _ in range(6)))
    assert all(result["OUTPUT0"].shape == (1, 1024) for result in results)
    assert any("queue is full" in event.message and event.method == "ModelStreamInfer" for event in events)


@pytest.mark.asyncio
async def test_per_call_headers_are_refused_on_a_shared_stream(client_server: ServerProcess) -> None:
    async with AsyncTauClient(client_server.address, stream=True) as client:
        with pytest.raises(ValueError, match="headers"):
            await client.infer("mlp", {"features": np.ones((1, 16), np.float32)}, headers={"x-tag": "1"})


@pytest.mark.asyncio
async def test_a_stream_to_a_server_that_went_away_fails_with_unavailable(tmp_path: object) -> None:
    async with AsyncTauClient("127.0.0.1:1", stream=True, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(InferenceError) as failed:
            await client.infer("mlp", {"features": np.ones((1, 16), np.float32)}, timeout_seconds=5)
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
