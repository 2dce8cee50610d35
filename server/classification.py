"""Triton's classification extension: an output returned as its top classes instead of its values.

A request asks for it per output with the parameter `classification` (tritonclient's
`InferRequestedOutput(name, class_count=N)`). The output then comes back as a BYTES tensor of
shape [batch, N] (or [N] for a model without a batch dimension) whose elements read
"<value>:<index>" or "<value>:<index>:<label>", highest value first; the index counts the
output's elements of one batch row in row-major order, and the label is the model's `labels`
entry at that index. As in Triton, N above the number of elements returns all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLASSIFICATION_PARAMETER = "classification"


def _format_value(value: np.generic) -> str:
    # Triton prints with std::to_string: six decimals for floating point, plain digits for integers.
    if isinstance(value, np.floating):
        return f"{float(value):f}"
    return str(int(value))


def top_classes(output: np.ndarray, count: int, labels: Sequence[str], batched: bool) -> np.ndarray:
    """The `count` highest elements of each batch row as "<value>:<index>[:<label>]" byte strings."""
    rows = output.reshape(output.shape[0], -1) if batched else output.reshape(1, -1)
    width = rows.shape[1]
    kept = min(count, width)
    # Highest first; among equal values the lower index first (stable sort of the mirrored row).
    order = (width - 1 - np.argsort(rows[:, ::-1], axis=1, kind="stable")[:, ::-1])[:, :kept]
    classes = np.empty((rows.shape[0], kept), dtype=object)
    for row_index, (row, indexes) in enumerate(zip(rows, order, strict=True)):
        for position, index in enumerate(indexes):
            text = f"{_format_value(row[index])}:{index}"
            if index < len(labels):
                text += f":{labels[index]}"
            classes[row_index, position] = text.encode()
    return classes if batched else classes[0]
