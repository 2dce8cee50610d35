"""Batching through the real server: statistics via tritonclient, back-pressure and timeouts on the wire."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.server.onnx_builders import add_sub_model, slow_model
from tests.server.slow_calls import call_slow
from tests.server_process import ServerProcess, running_server


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("batching")
    add_sub_model(root / "add_sub" / "1" / "model.onnx")
    (root / "add_sub" / "config.json").write_text(
        json.dumps({"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 20_000}})
    )
    slow_model(root / "slow" / "1" / "model.onnx")
    (root / "slow" / "config.json").write_text(
        json.dumps({"max_batch_size": 64, "dynamic_batching": {"enabled": False, "max_queue_size": 2}})
    )
    with running_server(root, tmp_path_factory.mktemp("logs") / "batching.log") as process:
        yield process


def _add_sub_call(client: triton.InferenceServerClient, seed: int, rows: int) -> bool:
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal((rows, 16)).astype(np.float32) for _ in range(2))
    inputs = [triton.InferInput("INPUT0", [rows, 16], "FP32"), triton.InferInput("INPUT1", [rows, 16], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add_sub", inputs)
    return np.array_equal(result.as_numpy("OUTPUT0"), a + b) and np.array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_concurrent_requests_are_batched_and_statistics_say_so(batching_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(batching_server.address)
    rows = [1 + seed % 3 for seed in range(40)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda seed: _add_sub_call(client, seed, rows[seed]), range(40)))
    assert all(answers)
    stats = client.get_inference_statistics("add_sub", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) == sum(rows)
    assert int(stats["execution_count"]) < 40  # some requests shared a batch
    batch_sizes = [int(entry["batch_size"]) for entry in stats["batch_stats"]]
    assert max(batch_sizes) <= 8
    assert int(stats["inference_stats"]["success"]["count"]) == 40
    assert int(stats["inference_stats"]["queue"]["count"]) == 40


def test_full_queue_answers_unavailable_and_admitted_requests_succeed(batching_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(batching_server.address)

    def call(_: int) -> str:
        return call_slow(client, refusal_must_say="queue is full")

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(8)))
    assert "StatusCode.UNAVAILABLE" in outcomes
    assert outcomes.count("OK") >= 3  # one running + a queue of two, at least
    assert set(outcomes) == {"OK", "StatusCode.UNAVAILABLE"}


def test_timeout_the_queue_cannot_meet_is_refused_at_once_with_unavailable(batching_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(batching_server.address)

    def call(timeout_microseconds: int | None) -> str:
        return call_slow(client, timeout_microseconds=timeout_microseconds, with_message=True)

    assert call(None) == "OK"  # the server now knows what a request of this model costs
    with ThreadPoolExecutor(max_workers=3) as pool:
        blockers = [pool.submit(call, None)]
        time.sleep(0.05)
        blockers.append(pool.submit(call, None))  # queued behind the first
        time.sleep(0.05)
        started = time.monotonic()
        late = pool.submit(call, 1_000).result()  # 1 ms cannot be met behind a queued request
        refused_after = time.monotonic() - started
        assert [blocker.result() for blocker in blockers] == ["OK", "OK"]
    assert late.startswith("StatusCode.UNAVAILABLE")
    assert "queue is full for this deadline" in late
    assert refused_after < 0.15  # refused at admission, not after waiting


def test_batch_over_max_batch_size_names_the_limit(batching_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(batching_server.address)
    with pytest.raises(InferenceServerException) as refused:
        _add_sub_call(client, 0, 9)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "batch size 9 is over the model's max_batch_size of 8" in refused.value.message()


def test_model_config_reports_the_batching_settings(batching_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(batching_server.address)
    config = client.get_model_config("add_sub", as_json=True)["config"]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "20000"
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 1024
