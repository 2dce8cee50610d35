"""One tritonclient request to a test repository's `slow` model, reduced to its outcome."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def call_slow(
    client: triton.InferenceServerClient,
    rows: int = 64,
    timeout_microseconds: int | None = None,
    refusal_must_say: str = "",
    with_message: bool = False,
) -> str:
    """ "OK", or the refusal's status ("StatusCode.UNAVAILABLE"), with its message when `with_message`."""
    tensor = triton.InferInput("INPUT0", [rows, 1024], "FP32")
    tensor.set_data_from_numpy(np.ones((rows, 1024), np.float32))
    try:
        client.infer("slow", [tensor], timeout=timeout_microseconds, client_timeout=60)
    except InferenceServerException as error:
        assert refusal_must_say in error.message(), error.message()
        return f"{error.status()} {error.message()}" if with_message else str(error.status())
    return "OK"
