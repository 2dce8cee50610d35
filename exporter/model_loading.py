"""Turn what the command line names (a factory reference, a weights file, a TorchScript file) into a module."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch

from exporter.errors import ModelReferenceError, WeightsMismatchError


def build_from_reference(reference: str) -> torch.nn.Module:
    """Call the factory named by `package.module:factory` (no arguments) and return its module."""
    module_name, sep, attribute_path = reference.partition(":")
    if not sep or not module_name or not attribute_path:
        raise ModelReferenceError(f"model reference {reference!r} is not of the form 'package.module:factory'")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as error:  # an import can fail with anything its module raises
        raise ModelReferenceError(f"cannot import module {module_name!r} named in {reference!r}: {error}") from error
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ModelReferenceError(
                f"module {module_name!r} has no attribute {attribute_path!r} (from {reference!r})"
            ) from None
    if not callable(target):
        raise ModelReferenceError(f"{reference!r} is not callable; expected a factory returning an nn.Module")
    try:
        model = target()
    except Exception as error:
        raise ModelReferenceError(f"factory {reference!r} raised {type(error).__name__}: {error}") from error
    if not isinstance(model, torch.nn.Module):
        raise ModelReferenceError(f"factory {reference!r} returned {type(model).__name__}; expected a torch.nn.Module")
    return model


def load_weights(module: torch.nn.Module, weights_path: Path) -> None:
    """Load a state_dict file into `module`, naming every key and size that does not fit."""
    try:
        # weights_only: a weights file is data; never let it run code on load.
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsMismatchError(f"cannot load weights from {weights_path}: {error}") from error
    if not isinstance(state_dict, Mapping) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise WeightsMismatchError(
            f"weights file {weights_path} does not hold a state_dict (a mapping of names to tensors); "
            f"got {type(state_dict).__name__}"
        )
    problems = _state_dict_mismatches(module.state_dict(), state_dict)
    if problems:
        raise WeightsMismatchError(
            f"weights {weights_path} do not fit the {type(module).__name__} module: " + "; ".join(problems)
        )
    module.load_state_dict(state_dict, strict=True)


def _state_dict_mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between the module's own state_dict and a loaded one."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for key in sorted(set(expected) & set(given)):
        if expected[key].shape != given[key].shape:
            problems.append(
                f"size mismatch for {key!r}: module expects {list(expected[key].shape)}, "
                f"weights have {list(given[key].shape)}"
            )
    return problems


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load a TorchScript archive saved with torch.jit.save."""
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise ModelReferenceError(f"cannot load TorchScript module from {path}: {error}") from error
