"""The ONNX Runtime layer: provider options, no silent GPU fallback, I/O binding, session settings.

No GPU here: the CUDA/TensorRT option building and the fallback rules are tested on the CPU build
of ONNX Runtime (which has no CUDA provider, the very situation a silent fallback hides); the one
test that needs a GPU skips without one.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from server.config import GpuConfig, ModelConfig, OnnxRuntimeConfig, parse_model_config
from server.runtime import ModelLoadError, OnnxSession, provider_options, session_options
from tests.server.onnx_builders import add_sub_model

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_sub_model(tmp_path_factory.mktemp("runtime") / "model.onnx")


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal((3, 16)).astype(np.float32) for name in ("INPUT0", "INPUT1")}


def test_gpu_provider_options_carry_the_config() -> None:
    config = parse_model_config(
        {
            "execution_providers": ["tensorrt", "cuda", "cpu"],
            "gpu_device_id": 1,
            "gpu": {
                "cudnn_conv_algo_search": "HEURISTIC",
                "gpu_mem_limit_bytes": 2**30,
                "tensorrt_fp16": True,
                "tensorrt_engine_cache_path": "/cache/trt",
            },
        },
        "m",
    )
    assert provider_options(config) == [
        (
            "TensorrtExecutionProvider",
            {
                "device_id": 1,
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": "/cache/trt",
            },
        ),
        ("CUDAExecutionProvider", {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC", "gpu_mem_limit": 2**30}),
        "CPUExecutionProvider",
    ]


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the fallback cannot be observed")
def test_require_gpu_marks_the_model_unloadable_instead_of_falling_back(model_path: Path) -> None:
    config = ModelConfig(name="m", execution_providers=("cuda", "cpu"), require_gpu=True)
    with pytest.raises(
        ModelLoadError,
        match=r"require_gpu is set but no GPU execution provider is available",
    ):
        OnnxSession(model_path, config)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the fallback cannot be observed")
def test_fallback_without_require_gpu_is_reported_not_silent(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="server.runtime"):
        session = OnnxSession(model_path, ModelConfig(name="m", execution_providers=("cuda", "cpu")))
    assert session.active_provider == "CPUExecutionProvider"
    assert session.device == "cpu"
    assert "this ONNX Runtime build has no ['CUDAExecutionProvider']" in caplog.text
    assert "requested ['CUDAExecutionProvider'] but ONNX Runtime activated only ['CPUExecutionProvider']" in caplog.text


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a GPU")
def test_cuda_provider_is_active_on_a_gpu_machine(model_path: Path) -> None:
    session = OnnxSession(model_path, ModelConfig(name="m", execution_providers=("cuda",), require_gpu=True))
    assert session.active_provider == "CUDAExecutionProvider"


def test_io_binding_gives_the_same_outputs_as_a_plain_run(model_path: Path) -> None:
    plain = OnnxSession(model_path, ModelConfig(name="m"))
    bound = OnnxSession(model_path, ModelConfig(name="m", gpu=GpuConfig(io_binding=True)))
    data = inputs()
    expected = plain.run(data, ["OUTPUT0", "OUTPUT1"])
    got = bound.run(data, ["OUTPUT1", "OUTPUT0"])
    np.testing.assert_array_equal(got["OUTPUT0"], expected["OUTPUT0"])
    np.testing.assert_array_equal(got["OUTPUT1"], expected["OUTPUT1"])


def test_session_settings_reach_onnx_runtime(model_path: Path, tmp_path: Path) -> None:
    saved = tmp_path / "optimized.onnx"
    settings = OnnxRuntimeConfig(
        inter_op_threads=2,
        graph_optimization_level="basic",
        optimized_model_path=str(saved),
        enable_cpu_mem_arena=False,
        execution_mode="parallel",
    )
    config = ModelConfig(name="m", intra_op_threads=1, onnxruntime=settings)
    options = session_options(config)
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.enable_cpu_mem_arena is False
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    session = OnnxSession(model_path, config)
    assert saved.is_file()
    np.testing.assert_array_equal(session.run(inputs(), ["OUTPUT0"])["OUTPUT0"], sum(inputs().values()))


def test_spinning_is_off_by_default_and_can_be_turned_on() -> None:
    assert session_options(ModelConfig(name="m")).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = ModelConfig(name="m", onnxruntime=replace(OnnxRuntimeConfig(), allow_spinning=True))
    assert session_options(spinning).get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_unknown_runtime_settings_are_refused_by_name() -> None:
    from server.config import ConfigError

    with pytest.raises(ConfigError, match=r"onnxruntime.graph_optimization_level: expected one of"):
        parse_model_config({"onnxruntime": {"graph_optimization_level": "max"}}, "m")
    with pytest.raises(ConfigError, match=r"gpu: unknown keys \['fp16'\]"):
        parse_model_config({"gpu": {"fp16": True}}, "m")
