"""The benchmark's correctness check: a sampled response must match what ONNX Runtime computes in-process.

A server that answers fast but wrong must not pass a benchmark, so every
load run checks a sample of its responses against the expected outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.grpc_client import decode_infer_response
from server.protocol import grpc_service_pb2 as pb

WRONG_ANSWER = "WRONG_ANSWER"
# The batcher runs rows inside bigger batches than the reference did, so kernels may sum in another order.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ExpectedOutputs:
    """What every response to one pre-built request must hold; `exact` demands identical bytes."""

    arrays: dict[str, np.ndarray]
    exact: bool


@dataclass(frozen=True)
class Verdict:
    """`code` is "OK" or WRONG_ANSWER; `detail` says what differed."""

    code: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def _array_mismatch(name: str, actual: np.ndarray, expected: np.ndarray, exact: bool) -> str | None:
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return (
            f"output '{name}': expected {expected.dtype}{list(expected.shape)}, got {actual.dtype}{list(actual.shape)}"
        )
    if exact:
        # Bytes, not ==: NaN must equal NaN, and an identity must not change a single bit.
        if actual.tobytes() != expected.tobytes():
            return f"output '{name}': not bit-identical to the input"
        return None
    if not np.allclose(actual, expected, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE, equal_nan=True):
        worst = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
        return (
            f"output '{name}': max abs difference {worst:.3g} is over rtol {RELATIVE_TOLERANCE:g}, "
            f"atol {ABSOLUTE_TOLERANCE:g}"
        )
    return None


def compare_outputs(actual: dict[str, np.ndarray], expected: ExpectedOutputs) -> Verdict:
    """Every expected output present and equal (within tolerance unless exact)."""
    missing = sorted(set(expected.arrays) - set(actual))
    if missing:
        return Verdict(WRONG_ANSWER, f"outputs {missing} missing; got {sorted(actual)}")
    for name, want in expected.arrays.items():
        mismatch = _array_mismatch(name, actual[name], want, expected.exact)
        if mismatch:
            return Verdict(WRONG_ANSWER, mismatch)
    return Verdict("OK")


def verify_response(raw_response: bytes, expected: ExpectedOutputs) -> Verdict:
    """Decode a serialized ModelInferResponse and compare it; an undecodable one is a wrong answer too."""
    try:
        actual = decode_infer_response(pb.ModelInferResponse.FromString(raw_response))
    except Exception as error:  # a malformed response is the server's fault, not the bench's
        return Verdict(WRONG_ANSWER, f"response could not be decoded: {error}")
    return compare_outputs(actual, expected)
