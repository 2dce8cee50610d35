"""How the exporter feeds a model seeded random inputs and reads back the tensors it returns."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from exporter.errors import ExportArgumentError

# Integer inputs are usually indices (token ids, categories); small values stay in range for most.
_INTEGER_INPUT_HIGH = 10


def random_inputs(
    *,
    batch_size: int,
    input_shape: Sequence[int],
    dtype: torch.dtype,
    count: int,
    seed: int,
) -> tuple[torch.Tensor, ...]:
    """`count` tensors of shape [batch_size, *input_shape], reproducible from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, *input_shape)
    tensors: list[torch.Tensor] = []
    for _ in range(count):
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, shape, generator=generator).bool())
        else:
            tensors.append(torch.randint(0, _INTEGER_INPUT_HIGH, shape, generator=generator).to(dtype))
    return tuple(tensors)


def output_tensors(result: object, output_names: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """A model's return value as one tensor per output name; a tensor or tuple/list of tensors."""
    outputs = tuple(result) if isinstance(result, tuple | list) else (result,)
    if not all(isinstance(output, torch.Tensor) for output in outputs):
        kinds = ", ".join(type(output).__name__ for output in outputs)
        raise ExportArgumentError(f"the model must return a tensor or a tuple of tensors; it returned ({kinds})")
    if len(outputs) != len(output_names):
        raise ExportArgumentError(
            f"the model returns {len(outputs)} tensor(s) but {len(output_names)} output name(s) were given: "
            f"{list(output_names)}"
        )
    return outputs  # type: ignore[return-value]  # checked element types above
