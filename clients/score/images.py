"""A folder of image files as rows for an image model: decoded with Pillow, resized, normalised.

Row i is the i-th image file in sorted order of its path relative to the folder
(sub-folders included). Each image becomes RGB (or greyscale for a one-channel
model), is resized to the model's height x width (bilinear), scaled to [0, 1] by
/255, then normalised per channel as (x - mean) / std when --mean/--std are given.
Layout follows the model's input shape: [C, H, W] (channels first) or [H, W, C].
A UINT8 model gets the raw 0..255 pixels instead. A file Pillow cannot read fails
its row; it does not stop the run. With --labels-from-folders an image's true label
is the name of the first sub-folder it sits in (`dog/001.png` is a dog), as in the
usual one-folder-per-class layout; images directly in the folder are unlabelled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Set
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from clients.score.chunks import Chunk
from clients.score.options import ScoreOptions, UsageError
from clients.score.signature import ModelSignature

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def image_files(folder: Path) -> list[Path]:
    return sorted(
        (path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()),
        key=lambda path: path.relative_to(folder).as_posix(),
    )


class ImageLayout:
    """Where channels go and how big an image must be, from the model input's shape."""

    def __init__(self, shape: tuple[int, ...], datatype: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        if len(shape) == 3 and shape[0] in (1, 3) and shape[1] > 0 and shape[2] > 0:
            self.channels_first, (self.channels, self.height, self.width) = True, shape
        elif len(shape) == 3 and shape[2] in (1, 3) and shape[0] > 0 and shape[1] > 0:
            self.channels_first, (self.height, self.width, self.channels) = False, shape
        else:
            raise UsageError(
                f"an image folder needs a model input of [C, H, W] or [H, W, C] with C 1 or 3, got {shape}"
            )
        self.raw_pixels = datatype == "UINT8"
        if not datatype.startswith("FP") and not self.raw_pixels:
            raise UsageError(f"an image folder needs a floating-point or UINT8 model input, got {datatype}")
        for name, values in (("--mean", mean), ("--std", std)):
            if values and len(values) not in (1, self.channels):
                raise UsageError(f"{name}: expected 1 or {self.channels} values, got {len(values)}")
        self.mean = np.asarray(mean or (0.0,), np.float32)
        self.std = np.asarray(std or (1.0,), np.float32)

    def pixels(self, path: Path) -> np.ndarray:
        """One image as the model wants it; raises OSError or UnidentifiedImageError when it cannot be read."""
        with Image.open(path) as image:
            converted = image.convert("RGB" if self.channels == 3 else "L")
            if converted.size != (self.width, self.height):
                converted = converted.resize((self.width, self.height), Image.Resampling.BILINEAR)
            values = np.asarray(converted)
        if values.ndim == 2:
            values = values[:, :, np.newaxis]
        if not self.raw_pixels:
            values = (values.astype(np.float32) / 255.0 - self.mean) / self.std
        return values.transpose(2, 0, 1) if self.channels_first else values


class ImageFolderReader:
    """The images under a folder, a chunk of files at a time."""

    def __init__(self, folder: Path, signature: ModelSignature, options: ScoreOptions) -> None:
        if len(signature.inputs) != 1:
            raise UsageError(f"an image folder feeds one input; model '{signature.name}' has {len(signature.inputs)}")
        if options.label_column:
            raise UsageError("--label-column needs a CSV, Parquet or .npz input, not an image folder")
        self._folder = folder
        self._spec = signature.inputs[0]
        self._dtype = signature.dtype(self._spec)
        self._layout = ImageLayout(self._spec.shape, self._spec.datatype, options.image_mean, options.image_std)
        self._chunk_rows = options.chunk_rows
        self._labels_from_folders = options.labels_from_folders
        self._files = image_files(folder)
        if not self._files:
            raise UsageError(f"--input {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.total_rows: int | None = len(self._files)
        self.chunk_count: int | None = -(-len(self._files) // options.chunk_rows)

    def identity(self) -> dict[str, Any]:
        names = "\n".join(path.relative_to(self._folder).as_posix() for path in self._files)
        stats = [path.stat() for path in self._files]
        return {
            "path": str(self._folder.resolve()),
            "files": len(self._files),
            "size": sum(stat.st_size for stat in stats),
            "mtime_ns": max(stat.st_mtime_ns for stat in stats),
            "names_sha256": hashlib.sha256(names.encode()).hexdigest(),
        }

    def chunks(self, skip: Set[int]) -> Iterator[Chunk]:
        for chunk_id, first in enumerate(range(0, len(self._files), self._chunk_rows)):
            if chunk_id in skip:
                continue
            files = self._files[first : first + self._chunk_rows]
            shape = (len(files), *self._spec.shape)
            pixels = np.zeros(shape, self._dtype)
            row_errors: dict[int, str] = {}
            for row, path in enumerate(files):
                try:
                    pixels[row] = self._layout.pixels(path)
                except (OSError, UnidentifiedImageError, ValueError) as error:
                    row_errors[row] = f"cannot read image: {error}"
            relative = [path.relative_to(self._folder) for path in files]
            names = np.asarray([path.as_posix() for path in relative], dtype=str)
            labels = (
                np.asarray([path.parts[0] if len(path.parts) > 1 else "" for path in relative], dtype=str)
                if self._labels_from_folders
                else None
            )
            yield Chunk(chunk_id, first, len(files), {self._spec.name: pixels}, labels, names, row_errors)

    def close(self) -> None:
        pass
