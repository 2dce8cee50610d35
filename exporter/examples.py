"""The two bundled example models, trained briefly on synthetic data so they are real, deterministic models.

- `mlp`: 16 tabular features -> probabilities of "low", "medium", "high" (a bucketed linear score).
- `cnn`: a 3x32x32 image -> logits of 10 classes (each class a fixed smooth colour pattern plus noise).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from exporter.export import ExportResult, export_model

SEED = 0
EXAMPLE_VERSION = 1

MLP_FEATURES = 16
MLP_LABELS = ["low", "medium", "high"]
CNN_IMAGE_SHAPE = (3, 32, 32)
CNN_LABELS = [f"class_{index}" for index in range(10)]


class TabularMLP(nn.Module):
    """Feature vector -> class probabilities; `logits` is the same network without the softmax head."""

    def __init__(self, features: int = MLP_FEATURES, classes: int = len(MLP_LABELS)) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(features, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, classes),
        )
        self.head = nn.Softmax(dim=1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features))


class SmallCNN(nn.Module):
    """Image -> class logits: two conv blocks, global average pooling, one linear layer."""

    def __init__(self, classes: int = len(CNN_LABELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32, classes))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixels))


def build_mlp() -> TabularMLP:
    """Untrained MLP architecture; a factory for `tau-export --model exporter.examples:build_mlp`."""
    return TabularMLP()


def build_cnn() -> SmallCNN:
    """Untrained CNN architecture; a factory for `tau-export --model exporter.examples:build_cnn`."""
    return SmallCNN()


def train_mlp(steps: int = 300) -> TabularMLP:
    """MLP trained to bucket a fixed random linear score of the features into low / medium / high."""
    generator = torch.Generator().manual_seed(SEED)
    weights = torch.randn(MLP_FEATURES, generator=generator)
    # Thresholds at the score's tertiles keep the three classes balanced.
    scores = torch.randn(4096, MLP_FEATURES, generator=generator) @ weights
    thresholds = torch.quantile(scores, torch.tensor([1 / 3, 2 / 3]))
    with torch.random.fork_rng():  # seed init and dropout without disturbing the caller's RNG
        torch.manual_seed(SEED)
        model = build_mlp()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            features = torch.randn(128, MLP_FEATURES, generator=generator)
            labels = torch.bucketize(features @ weights, thresholds)
            loss = functional.cross_entropy(model.logits(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def train_cnn(steps: int = 60) -> SmallCNN:
    """CNN trained to tell apart 10 fixed smooth colour patterns seen through Gaussian noise."""
    generator = torch.Generator().manual_seed(SEED)
    coarse = torch.randn(len(CNN_LABELS), CNN_IMAGE_SHAPE[0], 4, 4, generator=generator)
    templates = functional.interpolate(coarse, size=CNN_IMAGE_SHAPE[1:], mode="bilinear", align_corners=False)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = build_cnn()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            labels = torch.randint(0, len(CNN_LABELS), (64,), generator=generator)
            pixels = templates[labels] + 0.5 * torch.randn(64, *CNN_IMAGE_SHAPE, generator=generator)
            loss = functional.cross_entropy(model(pixels), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


# Big enough for batch scoring and the 256-rows-per-request benchmark; parity is proven up to it.
EXAMPLE_MAX_BATCH_SIZE = 256
EXAMPLE_PARITY_BATCH_SIZES = (1, 7, 64, 256)


def export_examples(repository: Path) -> list[ExportResult]:
    """Train both examples and publish them as version 1, replacing any earlier version 1."""
    mlp = export_model(
        train_mlp(),
        repository=repository,
        name="mlp",
        input_shape=(MLP_FEATURES,),
        version=EXAMPLE_VERSION,
        overwrite=True,
        max_batch_size=EXAMPLE_MAX_BATCH_SIZE,
        parity_batch_sizes=EXAMPLE_PARITY_BATCH_SIZES,
        input_names=("features",),
        output_names=("probabilities",),
        labels=MLP_LABELS,
    )
    cnn = export_model(
        train_cnn(),
        repository=repository,
        name="cnn",
        input_shape=CNN_IMAGE_SHAPE,
        version=EXAMPLE_VERSION,
        overwrite=True,
        max_batch_size=EXAMPLE_MAX_BATCH_SIZE,
        parity_batch_sizes=EXAMPLE_PARITY_BATCH_SIZES,
        input_names=("pixels",),
        output_names=("logits",),
        labels=CNN_LABELS,
    )
    return [mlp, cnn]
