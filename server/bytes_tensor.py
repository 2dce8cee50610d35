"""The V2 protocol's raw form of a BYTES tensor: each element as a 4-byte little-endian length, then its bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np


def serialize_bytes_tensor(elements: Iterable[bytes]) -> bytes:
    """The V2 raw form of a BYTES tensor: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def deserialize_bytes_tensor(data: bytes | memoryview, shape: Sequence[int]) -> np.ndarray:
    """The inverse of serialize_bytes_tensor: an object array of bytes in `shape`."""
    elements: list[bytes] = []
    position = 0
    while position < len(data):
        if position + 4 > len(data):
            raise ValueError(f"BYTES tensor: a length prefix is cut off at byte {position}")
        (length,) = struct.unpack_from("<I", data, position)
        position += 4
        if position + length > len(data):
            raise ValueError(f"BYTES tensor: element of {length} bytes runs past the end at byte {position}")
        elements.append(bytes(data[position : position + length]))
        position += length
    expected = int(np.prod(shape)) if len(shape) else 1
    if len(elements) != expected:
        raise ValueError(f"BYTES tensor: {len(elements)} elements, expected {expected} for shape {list(shape)}")
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(tuple(shape))
