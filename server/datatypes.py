"""The V2 tensor datatypes and how each maps to numpy, ONNX and Triton's config enum."""

from __future__ import annotations

import numpy as np

# V2 datatype name -> numpy dtype (little-endian, as the protocol's raw bytes are).
NUMPY_BY_DATATYPE: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

DATATYPE_BY_NUMPY: dict[np.dtype, str] = {dtype: name for name, dtype in NUMPY_BY_DATATYPE.items()}

# ONNX Runtime's type strings (NodeArg.type) -> V2 datatype.
DATATYPE_BY_ONNX_TYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}

# Which InferTensorContents field carries each datatype when sent typed (not raw).
CONTENTS_FIELD_BY_DATATYPE: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def triton_type_name(datatype: str) -> str:
    """V2 datatype to Triton's model-config enum name: FP32 -> TYPE_FP32."""
    return f"TYPE_{datatype}"
