"""Retries: UNAVAILABLE (full queue, server down or restarting) is retried with backoff, nothing else is,
and no call outlives its deadline budget."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from clients import NO_RETRIES, InferenceError, RetryEvent, RetryPolicy, TauClient
from clients.retry import CallAttempts
from tests.server.onnx_builders import identity_model
from tests.server_process import ServerProcess, free_port

PATIENT = RetryPolicy(max_attempts=50, initial_backoff_seconds=0.02, max_backoff_seconds=0.3)
ROW = np.ones((1, 4), np.float32)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    policy = RetryPolicy(initial_backoff_seconds=0.1, max_backoff_seconds=0.5, backoff_multiplier=2.0)
    rng = random.Random(0)
    for retry, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (10, 0.5)):
        draws = [policy.backoff_seconds(retry, rng) for _ in range(2000)]
        assert 0.0 <= min(draws) and max(draws) <= ceiling
        assert min(draws) < 0.1 * ceiling and max(draws) > 0.9 * ceiling  # spread over the whole range


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED]
)
def test_non_retryable_codes_raise_after_one_attempt(code: grpc.StatusCode) -> None:
    attempts = CallAttempts("ModelInfer", PATIENT, None)
    attempts.start_attempt()
    with pytest.raises(InferenceError) as raised:
        attempts.backoff_after(FakeRpcError(code, "no"))
    assert raised.value.code == code and raised.value.attempts == 1 and raised.value.message == "no"


def test_unavailable_is_retried_until_max_attempts() -> None:
    events: list[RetryEvent] = []
    attempts = CallAttempts("ModelInfer", RetryPolicy(max_attempts=3), None, events.append)
    for _ in range(2):
        attempts.start_attempt()
        assert attempts.backoff_after(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "queue is full")) >= 0
    attempts.start_attempt()
    with pytest.raises(InferenceError) as raised:
        attempts.backoff_after(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "queue is full"))
    assert raised.value.attempts == 3 and raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert [event.attempt for event in events] == [1, 2] and events[0].message == "queue is full"


def test_each_attempt_gets_what_is_left_of_the_budget() -> None:
    attempts = CallAttempts("ModelInfer", PATIENT, 1.0)
    first = attempts.start_attempt()
    time.sleep(0.2)
    second = attempts.start_attempt()
    assert first is not None and second is not None
    assert 0.9 < first <= 1.0 and second <= first - 0.2


def test_client_retries_a_full_queue_until_every_request_succeeds(client_server: ServerProcess) -> None:
    rows = np.ones((1, 1024), np.float32)
    with TauClient(client_server.address, retry=NO_RETRIES) as impatient:
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(lambda _: _try_infer(impatient, rows), range(6)))
    refused = [outcome for outcome in outcomes if isinstance(outcome, InferenceError)]
    assert refused, "the server never refused: the test would prove nothing"
    assert all(error.code == grpc.StatusCode.UNAVAILABLE and "queue is full" in error.message for error in refused)
    assert all(error.attempts == 1 for error in refused)

    events: list[RetryEvent] = []
    with TauClient(client_server.address, retry=PATIENT, on_retry=events.append) as patient:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: patient.infer("slow_queue1", {"INPUT0": rows}), range(6)))
    assert all(result["OUTPUT0"].shape == (1, 1024) for result in results)
    assert any("queue is full" in event.message for event in events)


def _try_infer(client: TauClient, rows: np.ndarray) -> object:
    try:
        return client.infer("slow_queue1", {"INPUT0": rows})
    except InferenceError as error:
        return error


def test_invalid_argument_is_not_retried(client_server: ServerProcess) -> None:
    events: list[RetryEvent] = []
    with TauClient(client_server.address, retry=PATIENT, on_retry=events.append) as client:
        with pytest.raises(InferenceError) as refused:
            client.infer("identity", {"INPUT0": np.ones((1, 4), np.int32)})
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and refused.value.attempts == 1
    assert "expected datatype FP32, got INT32" in refused.value.message
    assert events == []


def test_unknown_model_is_not_retried(client_server: ServerProcess) -> None:
    with TauClient(client_server.address, retry=PATIENT) as client:
        with pytest.raises(InferenceError) as missing:
            client.infer("no_such_model", {"INPUT0": ROW})
    assert missing.value.code == grpc.StatusCode.NOT_FOUND and missing.value.attempts == 1


def test_a_slow_call_stops_at_its_deadline_budget(client_server: ServerProcess) -> None:
    with TauClient(client_server.address, retry=PATIENT) as client:
        started = time.monotonic()
        with pytest.raises(InferenceError) as late:
            client.infer("slow_queue1", {"INPUT0": np.ones((64, 1024), np.float32)}, timeout_seconds=0.05)
    assert time.monotonic() - started < 0.05 + 0.5
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and late.value.attempts == 1


def test_retries_against_a_missing_server_stop_at_the_budget() -> None:
    with TauClient(f"127.0.0.1:{free_port()}", retry=PATIENT) as client:
        started = time.monotonic()
        with pytest.raises(InferenceError) as gave_up:
            client.infer("identity", {"INPUT0": ROW}, timeout_seconds=1.0)
    assert time.monotonic() - started < 1.0 + 0.5
    assert gave_up.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and gave_up.value.attempts > 1
    assert "deadline budget of 1.0s spent" in gave_up.value.message and "UNAVAILABLE" in gave_up.value.message


@pytest.fixture(scope="module")
def identity_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("identity_only")
    identity_model(root / "identity" / "1" / "model.onnx", "FP32")
    return root


@contextmanager
def server_on_port(repository: Path, log_path: Path, port: int, delay_seconds: float = 0.0) -> Iterator[None]:
    """A server on a port chosen in advance, started `delay_seconds` from now in the background."""
    started: list[ServerProcess] = []

    def start() -> None:
        time.sleep(delay_seconds)
        # The later --grpc-port wins over the free port ServerProcess picked for itself.
        started.append(ServerProcess(repository, log_path, ["--grpc-port", str(port)]))

    starter = threading.Thread(target=start)
    starter.start()
    try:
        yield
    finally:
        starter.join()
        for server in started:
            server.stop()


def test_client_started_before_the_server_succeeds_within_its_budget(identity_repository: Path, tmp_path: Path) -> None:
    port = free_port()
    events: list[RetryEvent] = []
    with TauClient(f"127.0.0.1:{port}", retry=PATIENT, on_retry=events.append) as client:
        with server_on_port(identity_repository, tmp_path / "server.log", port, delay_seconds=1.0):
            outputs = client.infer("identity", {"INPUT0": ROW}, timeout_seconds=30.0)
    np.testing.assert_array_equal(outputs["OUTPUT0"], ROW)
    assert events and all(event.code == grpc.StatusCode.UNAVAILABLE for event in events)


def test_client_rides_out_a_server_restart_on_the_same_port(identity_repository: Path, tmp_path: Path) -> None:
    port = free_port()
    with TauClient(f"127.0.0.1:{port}", retry=PATIENT) as client:
        with server_on_port(identity_repository, tmp_path / "first.log", port):
            client.infer("identity", {"INPUT0": ROW}, timeout_seconds=30.0)
        # The first server is stopped now; the second comes up half a second later.
        with server_on_port(identity_repository, tmp_path / "second.log", port, delay_seconds=0.5):
            outputs = client.infer("identity", {"INPUT0": 2 * ROW}, timeout_seconds=30.0)
    np.testing.assert_array_equal(outputs["OUTPUT0"], 2 * ROW)
