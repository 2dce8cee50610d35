"""Small modules the exporter tests export, importable as `tests.exporter.fixtures_module:<factory>`."""

from __future__ import annotations

import torch
from torch import nn

TINY_FEATURES = 16
TINY_CLASSES = 3


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = nn.Linear(TINY_FEATURES, hidden)
        self.out = nn.Linear(hidden, TINY_CLASSES)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(features)))


class EigenvalueNet(nn.Module):
    """Uses torch.linalg.eig, which torch.onnx in torch 2.13 has no ONNX translation for."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        matrices = features.reshape(-1, 4, 4)
        return torch.linalg.eig(matrices).eigenvalues.real


class BatchOfTwoNet(nn.Module):
    """Hard-codes the batch size, so its exported graph cannot take other batch sizes."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.reshape(2, TINY_FEATURES) * 2.0


def build_tiny() -> TinyNet:
    return TinyNet()


def build_wider() -> TinyNet:
    """Same layer names as build_tiny, different sizes: its weights do not fit build_tiny."""
    return TinyNet(hidden=12)


def build_eigenvalues() -> EigenvalueNet:
    return EigenvalueNet()


def build_batch_of_two() -> BatchOfTwoNet:
    return BatchOfTwoNet()


def build_broken() -> nn.Module:
    raise RuntimeError("factory failed on purpose")
