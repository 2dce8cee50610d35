"""PyTorch dtypes as KServe V2 datatype names, the vocabulary of config.json."""

from __future__ import annotations

import torch

from exporter.errors import ExportArgumentError

DATATYPE_BY_TORCH_DTYPE: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.uint16: "UINT16",
    torch.uint32: "UINT32",
    torch.uint64: "UINT64",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.float32: "FP32",
    torch.float64: "FP64",
}


def v2_datatype(dtype: torch.dtype, *, tensor_name: str) -> str:
    """V2 datatype for a torch dtype, e.g. torch.float32 -> "FP32"; raises for dtypes V2 cannot carry."""
    try:
        return DATATYPE_BY_TORCH_DTYPE[dtype]
    except KeyError:
        supported = ", ".join(str(d).removeprefix("torch.") for d in DATATYPE_BY_TORCH_DTYPE)
        raise ExportArgumentError(
            f"tensor {tensor_name!r} has dtype {str(dtype).removeprefix('torch.')}, "
            f"which the serving protocol cannot carry; expected one of: {supported}"
        ) from None
