"""tau-bench against the real server and real ONNX Runtime: all scenarios run, answers are checked, ratios reported."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from clients import bench, bench_options
from clients.bench import check_active_provider
from clients.bench_check import WRONG_ANSWER, ExpectedOutputs, compare_outputs, verify_response
from clients.bench_load import split_concurrency
from clients.bench_model import IDENTITY_OUTPUT_NAME, make_inputs, read_inputs, reference_session, write_identity_model
from clients.bench_server import (
    BatchCounters,
    ServerStartError,
    batches_between,
    listening_sockets,
    process_tree,
)
from clients.grpc_client import build_infer_request
from server.protocol import grpc_service_pb2 as pb
from tests.server.onnx_builders import add_sub_model
from tests.server_process import running_server

SCENARIOS = {"ceiling", "batching", "no-batching"}
CONCURRENCY = [1, 4]
# Short runs: the suite must stay quick on two cores; the numbers only need to be non-zero.
QUICK = ["--duration", "0.5", "--warmup", "0.2", "--reference-seconds", "0.2"]


@pytest.fixture(scope="module")
def two_input_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """add_sub has two inputs: the bench must fill both, and mirror the first in the identity ceiling."""
    return add_sub_model(tmp_path_factory.mktemp("model") / "add_sub.onnx")


@pytest.fixture(scope="module")
def bench_run(two_input_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    concurrency = ",".join(map(str, CONCURRENCY))
    code = bench.main(["--model-file", str(two_input_model), *QUICK, "--concurrency", concurrency, "--json", str(out)])
    return code, json.loads(out.read_text())


def test_bench_exits_zero_when_every_answer_is_right(bench_run: tuple[int, dict[str, Any]]) -> None:
    code, report = bench_run
    assert code == 0
    assert report["ok"] is True


def test_every_scenario_runs_at_every_concurrency_with_traffic(bench_run: tuple[int, dict[str, Any]]) -> None:
    _, report = bench_run
    runs = {(run["scenario"], run["concurrency"]): run for run in report["runs"]}
    assert set(runs) == {(scenario, c) for scenario in SCENARIOS for c in CONCURRENCY}
    for run in runs.values():
        assert run["requests_per_s"] > 0
        assert run["rows_per_s"] > 0
        assert 0 < run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]


def test_no_run_has_errors_and_answers_were_checked(bench_run: tuple[int, dict[str, Any]]) -> None:
    _, report = bench_run
    for run in report["runs"]:
        assert run["errors"] == {}
        assert run["checked_responses"] >= run["concurrency"]  # at least each coroutine's first response


def test_server_batch_sizes_are_read_from_every_worker(bench_run: tuple[int, dict[str, Any]]) -> None:
    _, report = bench_run
    for run in report["runs"]:
        assert run["average_batch"] >= 1
        if run["scenario"] == "no-batching":
            assert set(run["batch_histogram"]) == {"1"}
        # The counters span warmup and window, so every worker's rows together cover at least the window's.
        rows_run = sum(int(size) * count for size, count in run["batch_histogram"].items())
        assert rows_run >= run["requests"] * run["rows_per_request"]


def test_server_cpu_client_cpu_and_memory_are_measured(bench_run: tuple[int, dict[str, Any]]) -> None:
    _, report = bench_run
    for run in report["runs"]:
        assert run["server_cpu_percent"] > 0
        assert run["client_cpu_percent"] > 0
    assert report["server_rss_mib"]["before"] > 0
    assert report["server_rss_mib"]["after"] > 0


def test_ratios_against_ceiling_batching_and_in_process_are_reported(bench_run: tuple[int, dict[str, Any]]) -> None:
    _, report = bench_run
    names = {(ratio["name"], ratio["concurrency"]) for ratio in report["ratios"]}
    for concurrency in CONCURRENCY:
        assert ("batching ÷ ceiling (req/s)", concurrency) in names
        assert ("batching ÷ no-batching (rows/s)", concurrency) in names
        assert ("batching ÷ in-process ORT (rows/s)", concurrency) in names
    assert all(ratio["value"] > 0 for ratio in report["ratios"])
    assert report["in_process"]["single_request"]["batch"] == 1
    assert {budget["scenario"] for budget in report["latency_budgets"]} == {"batching", "no-batching"}


def test_wrong_answers_from_the_server_fail_the_run(
    two_input_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: when the server's answers differ from what they must be, the bench exits 1."""
    real_expected_outputs = bench.expected_outputs

    def off_by_one(*args: Any) -> ExpectedOutputs:
        right = real_expected_outputs(*args)
        return ExpectedOutputs({name: array + 1 for name, array in right.arrays.items()}, exact=False)

    monkeypatch.setattr(bench, "expected_outputs", off_by_one)
    out = tmp_path / "bench.json"
    quick = ["--duration", "0.2", "--warmup", "0.1", "--reference-seconds", "0.1"]
    code = bench.main(["--model-file", str(two_input_model), *quick, "--concurrency", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 1
    errors = {run["scenario"]: run["errors"] for run in report["runs"]}
    assert errors["ceiling"] == {}
    assert errors["batching"][WRONG_ANSWER] >= 1
    assert errors["no-batching"][WRONG_ANSWER] >= 1


def test_an_output_off_by_a_little_more_than_tolerance_is_a_wrong_answer() -> None:
    expected = ExpectedOutputs({"y": np.array([[1.0, 2.0]], np.float32)}, exact=False)
    assert compare_outputs({"y": np.array([[1.0, 2.0]], np.float32)}, expected).ok
    assert compare_outputs({"y": np.array([[1.0, 2.0 + 5e-6]], np.float32)}, expected).ok
    verdict = compare_outputs({"y": np.array([[1.0, 2.001]], np.float32)}, expected)
    assert verdict.code == WRONG_ANSWER
    assert "'y'" in verdict.detail


def test_a_missing_output_or_wrong_shape_is_a_wrong_answer() -> None:
    expected = ExpectedOutputs({"y": np.zeros((1, 3), np.float32)}, exact=False)
    assert compare_outputs({}, expected).code == WRONG_ANSWER
    assert compare_outputs({"y": np.zeros((3,), np.float32)}, expected).code == WRONG_ANSWER
    assert compare_outputs({"y": np.zeros((1, 3), np.float64)}, expected).code == WRONG_ANSWER


def test_identity_answers_must_be_bit_exact() -> None:
    expected = ExpectedOutputs({"y": np.array([1.0], np.float32)}, exact=True)
    assert compare_outputs({"y": np.array([1.0], np.float32)}, expected).ok
    assert compare_outputs({"y": np.array([np.nextafter(np.float32(1), np.float32(2))])}, expected).code == (
        WRONG_ANSWER
    )


def test_a_serialized_response_is_decoded_before_comparing() -> None:
    response = pb.ModelInferResponse(model_name="m")
    response.outputs.add(name="y", datatype="FP32", shape=[1, 2])
    response.raw_output_contents.append(np.array([[1.0, 2.0]], np.float32).tobytes())
    right = ExpectedOutputs({"y": np.array([[1.0, 2.0]], np.float32)}, exact=True)
    wrong = ExpectedOutputs({"y": np.array([[1.0, 3.0]], np.float32)}, exact=True)
    assert verify_response(response.SerializeToString(), right).ok
    assert verify_response(response.SerializeToString(), wrong).code == WRONG_ANSWER
    assert verify_response(b"\xff not a response", right).code == WRONG_ANSWER


def test_identity_twin_mirrors_the_first_input(two_input_model: Path, tmp_path: Path) -> None:
    specs = read_inputs(reference_session(two_input_model))
    identity_file = write_identity_model(specs[0], tmp_path / "identity.onnx")
    session = reference_session(identity_file)
    assert [(node.name, node.type) for node in session.get_inputs()] == [("INPUT0", "tensor(float)")]
    inputs = make_inputs(specs[:1], rows=3, seed=0)
    (echoed,) = session.run([IDENTITY_OUTPUT_NAME], inputs)
    assert echoed.tobytes() == inputs["INPUT0"].tobytes()
    assert build_infer_request("identity", inputs).inputs[0].shape == [3, 16]


def test_concurrency_is_split_evenly_across_client_processes() -> None:
    assert split_concurrency(10, 3) == [4, 3, 3]
    assert split_concurrency(1, 2) == [1, 0]
    assert sum(split_concurrency(32, 4)) == 32


def test_connections_to_the_same_worker_count_once() -> None:
    worker_a_before, worker_a_after = BatchCounters(10, 10, ((1, 10),)), BatchCounters(30, 20, ((1, 10), (2, 10)))
    worker_b_before, worker_b_after = BatchCounters(5, 5, ((1, 5),)), BatchCounters(9, 9, ((1, 9),))
    before = [worker_a_before, worker_b_before, worker_a_before, None]
    after = [worker_a_after, worker_b_after, worker_a_after, None]
    assert batches_between(before, after) == BatchCounters(24, 14, ((1, 4), (2, 10)))
    assert batches_between([None], [None]) is None


def test_process_tree_includes_children_and_listening_sockets_are_counted(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_sockets(listener.getsockname()[1]) == 1
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            assert child.pid in process_tree(os.getpid())
        finally:
            child.kill()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA present")
def test_asking_for_cuda_without_it_stops_the_bench_with_a_clear_error(
    two_input_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench.main(["--model-file", str(two_input_model), *QUICK, "--execution-providers", "cuda"])
    assert code == 2
    assert "CUDAExecutionProvider" in capsys.readouterr().err


def test_a_served_model_that_fell_back_to_another_provider_is_an_error(tmp_path: Path) -> None:
    # The server drops a provider this ONNX Runtime lacks and loads on the next one; the bench must
    # then refuse to report numbers as if they were the requested provider's.
    add_sub_model(tmp_path / "repo" / "add_sub" / "1" / "model.onnx")
    config = {"execution_providers": ["cuda", "cpu"]}
    (tmp_path / "repo" / "add_sub" / "config.json").write_text(json.dumps(config))
    with running_server(tmp_path / "repo", tmp_path / "log") as server:
        check_active_provider(server.address, ["add_sub"], "cpu")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            with pytest.raises(ServerStartError, match="runs on CPUExecutionProvider, not on CUDAExecutionProvider"):
                check_active_provider(server.address, ["add_sub"], "cuda")


def test_config_override_reaches_every_served_model(two_input_model: Path, tmp_path: Path) -> None:
    # A max_batch_size below the rows per request: the server must refuse every request by name.
    out = tmp_path / "bench.json"
    argv = ["--model-file", str(two_input_model), *QUICK, "--concurrency", "1", "--rows", "4"]
    argv += ["--scenarios", "batching", "--config-override", '{"max_batch_size": 2}', "--json", str(out)]
    assert bench.main(argv) == 1
    report = json.loads(out.read_text())
    assert report["settings"]["config_override"] == {"max_batch_size": 2}
    assert [run["scenario"] for run in report["runs"]] == ["batching"]
    assert set(report["runs"][0]["errors"]) == {"INVALID_ARGUMENT"}


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--execution-providers", "gpu"), ("--config-override", "[1]"), ("--config-override", "{"), ("--scenarios", "x")],
)
def test_bad_bench_flags_are_refused_by_name(two_input_model: Path, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_options.parse_arguments(["--model-file", str(two_input_model), flag, value])
    assert exit_info.value.code == 2


def test_stream_mode_runs_every_scenario_over_model_stream_infer(two_input_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--model-file", str(two_input_model), *QUICK, "--concurrency", "1,4", "--stream", "--json", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["transport"] == "ModelStreamInfer"
    assert {run["scenario"] for run in report["runs"]} == SCENARIOS
    for run in report["runs"]:
        assert run["requests"] > 0 and run["errors"] == {} and run["checked_responses"] > 0


def test_stream_mode_counts_refusals_by_status(two_input_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--model-file", str(two_input_model), *QUICK, "--concurrency", "1", "--rows", "4", "--stream"]
    argv += ["--scenarios", "batching", "--config-override", '{"max_batch_size": 2}', "--json", str(out)]
    assert bench.main(argv) == 1
    assert set(json.loads(out.read_text())["runs"][0]["errors"]) == {"INVALID_ARGUMENT"}
