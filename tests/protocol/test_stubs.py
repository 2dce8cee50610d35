"""The checked-in stubs match proto/, and Tau's stubs live beside tritonclient's in one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server.protocol.generate import STUB_DIR, generate_stubs
from tests.server.onnx_builders import add_sub_model
from tests.server_process import REPO_ROOT, running_server


def test_checked_in_stubs_match_what_proto_generates() -> None:
    generated = generate_stubs()
    assert generated, "protoc produced nothing"
    for name, source in generated.items():
        checked_in = (STUB_DIR / name).read_text()
        assert checked_in == source, f"{name} is stale: run `python -m server.protocol.generate`"


def test_field_numbers_match_the_v2_and_triton_specs() -> None:
    from server.protocol import grpc_service_pb2 as pb

    def numbers(message: type) -> dict[str, int]:
        return {field.name: field.number for field in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(pb.ModelInferRequest) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    assert numbers(pb.InferParameter) == {
        "bool_param": 1,
        "int64_param": 2,
        "string_param": 3,
        "double_param": 4,
        "uint64_param": 5,
    }
    assert numbers(pb.ModelInferResponse)["raw_output_contents"] == 6
    assert pb.DESCRIPTOR.package == "inference"
    assert "GRPCInferenceService" in pb.DESCRIPTOR.services_by_name


BOTH_CLIENTS_SCRIPT = """
import sys
import numpy as np
order = sys.argv[2]
if order == "tau-first":
    from clients import TauClient
    import tritonclient.grpc as triton
else:
    import tritonclient.grpc as triton
    from clients import TauClient
a = np.ones((2, 16), np.float32)
b = np.full((2, 16), 3.0, np.float32)
with TauClient(sys.argv[1]) as tau:
    ours = tau.infer("add_sub", {"INPUT0": a, "INPUT1": b})["OUTPUT0"]
client = triton.InferenceServerClient(sys.argv[1])
inputs = [triton.InferInput("INPUT0", [2, 16], "FP32"), triton.InferInput("INPUT1", [2, 16], "FP32")]
inputs[0].set_data_from_numpy(a)
inputs[1].set_data_from_numpy(b)
theirs = client.infer("add_sub", inputs).as_numpy("OUTPUT0")
assert np.array_equal(ours, a + b) and np.array_equal(theirs, a + b)
print("both clients ok")
"""


def test_tau_and_tritonclient_call_the_server_from_one_process(tmp_path: Path) -> None:
    add_sub_model(tmp_path / "repo" / "add_sub" / "1" / "model.onnx")
    with running_server(tmp_path / "repo", tmp_path / "server.log") as server:
        for order in ("tau-first", "triton-first"):
            # A fresh interpreter each time: import order is what used to break ("duplicate symbol").
            result = subprocess.run(
                [sys.executable, "-W", "error", "-c", BOTH_CLIENTS_SCRIPT, server.address, order],
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            assert "both clients ok" in result.stdout
