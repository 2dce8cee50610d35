"""A Triton repository served as it is: config.pbtxt read in protobuf text format, label files included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from server.config import ConfigError, parse_model_config
from server.config_files import load_model_config
from server.repository_poller import model_fingerprint
from server.triton_config import from_triton_json
from tests.server.onnx_builders import add_sub_model, identity_model
from tests.server_process import running_server

TRITON_CONFIG = """
name: "scores"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }
]
output [
  { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ], label_filename: "labels.txt" }
]
version_policy: { specific: { versions: [ 1 ] } }
instance_group [ { count: 2, kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 4 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { max_queue_size: 16, default_timeout_microseconds: 5000000 }
}
"""


def triton_model(root: Path, name: str = "scores", config: str = TRITON_CONFIG) -> Path:
    model_dir = root / name
    identity_model(model_dir / "1" / "model.onnx", "FP32")
    (model_dir / "config.pbtxt").write_text(config)
    (model_dir / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    return model_dir


def test_every_supported_field_of_a_config_pbtxt_is_read(tmp_path: Path) -> None:
    config = load_model_config(triton_model(tmp_path))
    assert config.max_batch_size == 8
    assert [(spec.name, spec.datatype, spec.shape) for spec in config.inputs or ()] == [("INPUT0", "FP32", (4,))]
    assert config.labels == ("cat", "dog", "bird", "fish")
    assert (config.version_policy.kind, config.version_policy.versions) == ("specific", (1,))
    assert config.instance_count == 2
    batching = config.dynamic_batching
    assert batching.enabled and batching.preferred_batch_sizes == (4,)
    assert (batching.max_queue_delay_microseconds, batching.max_queue_size) == (100, 16)
    assert batching.default_timeout_microseconds == 5_000_000


def test_an_explicit_zero_max_batch_size_means_no_batch_dimension(tmp_path: Path) -> None:
    text = 'max_batch_size: 0\ninput [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1, 4 ] } ]'
    assert load_model_config(triton_model(tmp_path, config=text)).max_batch_size == 0
    inferred = triton_model(tmp_path, "inferred", config='platform: "onnxruntime_onnx"')
    assert load_model_config(inferred).max_batch_size is None  # left to the graph, as Triton's auto-complete


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("sequence_batching { }", "sequence_batching"),
        ("max_batch_size: eight", "max_batch_size"),
        ('backend: "python"', "backend"),
        ('output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [4], label_filename: "../secret" } ]', "inside"),
        ('output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [4], label_filename: "missing.txt" } ]', "missing"),
    ],
)
def test_an_unsupported_or_broken_config_pbtxt_is_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as refusal:
        load_model_config(triton_model(tmp_path, config=text))
    assert "config.pbtxt" in str(refusal.value)


def test_config_json_wins_over_config_pbtxt(tmp_path: Path) -> None:
    model_dir = triton_model(tmp_path)
    (model_dir / "config.json").write_text('{"max_batch_size": 2}')
    assert load_model_config(model_dir).max_batch_size == 2


def test_poll_mode_watches_config_pbtxt(tmp_path: Path) -> None:
    model_dir = triton_model(tmp_path)
    before = model_fingerprint(model_dir)
    (model_dir / "config.pbtxt").write_text(TRITON_CONFIG.replace("max_queue_size: 16", "max_queue_size: 32"))
    assert model_fingerprint(model_dir) != before


def test_a_triton_repository_is_served_as_it_is(tmp_path: Path) -> None:
    root = tmp_path / "repository"
    triton_model(root)
    triton_model(root, "broken", config="sequence_batching { }")
    add_sub_model(root / "add_sub" / "1" / "model.onnx")
    with running_server(root, tmp_path / "server.log") as server:
        client = triton.InferenceServerClient(server.address)
        config = client.get_model_config("scores").config
        assert (config.max_batch_size, list(config.dynamic_batching.preferred_batch_size)) == (8, [4])
        assert json.loads(config.parameters["labels"].string_value) == ["cat", "dog", "bird", "fish"]
        # The answer, fed back as a config (Triton's JSON form), loads with the same labels.
        answer = client.get_model_config("scores", as_json=True)["config"]
        assert parse_model_config(from_triton_json(answer), "scores").labels == ("cat", "dog", "bird", "fish")
        assert config.instance_group[0].count == 2
        tensor = triton.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([[0.1, 0.2, 0.6, 0.1]], np.float32))
        outputs = [triton.InferRequestedOutput("OUTPUT0", class_count=1)]
        assert client.infer("scores", [tensor], outputs=outputs).as_numpy("OUTPUT0").tolist() == [[b"0.600000:2:bird"]]
        # The broken one is reported with its reason; the others serve.
        index = {model["name"]: model for model in client.get_model_repository_index(as_json=True)["models"]}
        assert index["broken"]["state"] == "UNAVAILABLE" and "sequence_batching" in index["broken"]["reason"]
        assert client.is_model_ready("add_sub")


ONNX_RUNTIME_BACKEND_CONFIG = """
max_batch_size: 8
optimization {
  graph { level: 1 }
  execution_accelerators {
    gpu_execution_accelerator: [ {
      name: "tensorrt"
      parameters { key: "precision_mode" value: "FP16" }
      parameters { key: "trt_engine_cache_enable" value: "1" }
      parameters { key: "trt_engine_cache_path" value: "/cache/trt" }
    } ]
  }
}
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
parameters { key: "inter_op_thread_count" value: { string_value: "3" } }
parameters { key: "execution_mode" value: { string_value: "1" } }
parameters { key: "enable_mem_arena" value: { string_value: "0" } }
parameters { key: "cudnn_conv_algo_search" value: { string_value: "1" } }
parameters { key: "gpu_mem_limit" value: { string_value: "4294967296" } }
"""


def test_the_onnx_runtime_backend_settings_map_to_taus(tmp_path: Path) -> None:
    config = load_model_config(triton_model(tmp_path, config=ONNX_RUNTIME_BACKEND_CONFIG))
    assert config.execution_providers == ("tensorrt", "cuda", "cpu")
    assert (config.gpu.tensorrt_fp16, config.gpu.tensorrt_engine_cache_path) == (True, "/cache/trt")
    assert (config.gpu.cudnn_conv_algo_search, config.gpu.gpu_mem_limit_bytes) == ("HEURISTIC", 4294967296)
    assert config.intra_op_threads == 2
    runtime = config.onnxruntime
    assert (runtime.graph_optimization_level, runtime.inter_op_threads) == ("extended", 3)
    assert (runtime.execution_mode, runtime.enable_cpu_mem_arena) == ("parallel", False)
    # max_batch_size over 1 and no scheduler block: Triton's auto-complete adds the dynamic batcher.
    assert config.dynamic_batching.enabled


def test_without_a_scheduler_block_a_max_batch_size_of_one_runs_requests_alone(tmp_path: Path) -> None:
    assert not load_model_config(triton_model(tmp_path, config="max_batch_size: 1")).dynamic_batching.enabled


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("optimization { graph { level: 5 } }", "optimization.graph.level"),
        (
            'optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ] } }',
            "openvino",
        ),
        (
            'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
            'parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ] } }',
            "max_workspace_size_bytes",
        ),
        (
            'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
            'parameters { key: "precision_mode" value: "INT8" } } ] } }',
            "precision_mode",
        ),
        ('parameters { key: "enable_mem_pattern" value: { string_value: "1" } }', "enable_mem_pattern"),
        ('parameters { key: "intra_op_thread_count" value: { string_value: "many" } }', "intra_op_thread_count"),
    ],
)
def test_backend_settings_tau_cannot_honour_are_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_model_config(triton_model(tmp_path, config=text))


def test_model_warmup_samples_become_taus_warmup(tmp_path: Path) -> None:
    text = """
max_batch_size: 8
model_warmup [
  { name: "one", batch_size: 1,
    inputs { key: "INPUT0" value: { data_type: TYPE_FP32, dims: [4], random_data: true } } },
  { name: "eight", batch_size: 8, count: 2,
    inputs { key: "INPUT0" value: { data_type: TYPE_FP32, dims: [4], random_data: true } } }
]
"""
    warmup = load_model_config(triton_model(tmp_path, config=text)).warmup
    assert (warmup.batch_sizes, warmup.data) == ((1, 8, 8), "random")


@pytest.mark.parametrize(
    ("sample_inputs", "named"),
    [
        (
            'inputs { key: "INPUT0" value: { data_type: TYPE_FP32, dims: [4], input_data_file: "x" } }',
            "input_data_file",
        ),
        (
            'inputs { key: "INPUT0" value: { data_type: TYPE_FP32, dims: [4], zero_data: true } } '
            'inputs { key: "INPUT1" value: { data_type: TYPE_FP32, dims: [4], random_data: true } }',
            "one kind of data",
        ),
    ],
)
def test_warmup_tau_cannot_reproduce_is_refused(tmp_path: Path, sample_inputs: str, named: str) -> None:
    text = f'max_batch_size: 8\nmodel_warmup [ {{ name: "w", batch_size: 1, {sample_inputs} }} ]'
    with pytest.raises(ConfigError, match=named):
        load_model_config(triton_model(tmp_path, config=text))


def test_a_warmed_up_triton_model_serves(tmp_path: Path) -> None:
    text = (
        TRITON_CONFIG
        + 'model_warmup [ { name: "w", batch_size: 4, inputs { key: "INPUT0" value: '
        + ("{ data_type: TYPE_FP32, dims: [4], zero_data: true } } } ]")
    )
    triton_model(tmp_path / "repository", config=text)
    with running_server(tmp_path / "repository", tmp_path / "server.log") as server:
        assert triton.InferenceServerClient(server.address).is_model_ready("scores")
        assert "warmed up" in server.log()


def test_an_instance_group_on_one_gpu_picks_that_device(tmp_path: Path) -> None:
    text = "instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 1 ] } ]"
    config = load_model_config(triton_model(tmp_path, config=text))
    assert (config.instance_count, config.gpu_device_id, config.require_gpu) == (2, 1, True)
    assert config.execution_providers == ("cuda", "cpu")


def test_instances_spread_over_several_gpus_are_refused_by_name(tmp_path: Path) -> None:
    text = "instance_group [ { count: 1, kind: KIND_GPU, gpus: [ 0, 1 ] } ]"
    with pytest.raises(ConfigError, match=r"instance_group.gpus: .*\[0, 1\]"):
        load_model_config(triton_model(tmp_path, config=text))
