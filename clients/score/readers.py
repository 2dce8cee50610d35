"""One reader per input format, each streaming fixed-size chunks so memory stays flat for any file size.

.npy and .npz arrays are read a chunk of rows at a time with plain reads (not a
memory map: mapped pages count towards the process's RSS until unmapped, so a full
scan of a memory-mapped file looks like loading it). CSV streams through
pyarrow.csv.open_csv, Parquet through ParquetFile.iter_batches (memory then scales
with the file's row-group size). Image folders are in clients.score.images.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable, Iterable, Iterator, Set
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from clients.score.chunks import Chunk, ChunkReader, row_shape
from clients.score.images import ImageFolderReader
from clients.score.options import ScoreOptions, ScoringError, UsageError
from clients.score.signature import ModelSignature
from server.config import TensorSpec


def file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cast_for_model(array: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """The array in the model's dtype; refuses casts that lose the kind of number (float to int)."""
    if array.dtype != dtype and not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise UsageError(f"{what}: dtype {array.dtype} cannot become the model's {dtype} without losing values")
    return array.astype(dtype, copy=False)


class NpyRows:
    """Rows of one .npy array, read on demand from a file object (a file, or a member of an .npz)."""

    def __init__(self, file: IO[bytes], what: str) -> None:
        self._file = file
        self.what = what
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise UsageError(f"{what}: .npy format version {version} is not supported (1.0 or 2.0)")
        if not shape:
            raise UsageError(f"{what}: a 0-d array has no rows")
        if fortran_order and len(shape) > 1:
            raise UsageError(f"{what}: Fortran-ordered arrays cannot be read by rows; save np.ascontiguousarray(a)")
        if dtype.hasobject:
            raise UsageError(f"{what}: object arrays are not supported")
        self.rows: int = shape[0]
        self.row_shape: tuple[int, ...] = tuple(shape[1:])
        self.dtype: np.dtype = dtype
        self._row_bytes = dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self._data_offset = file.tell()

    def read(self, first: int, count: int) -> np.ndarray:
        array = np.empty((count, *self.row_shape), self.dtype)
        self._file.seek(self._data_offset + first * self._row_bytes)
        view = array.data.cast("B")
        filled = 0
        while filled < len(view):
            got = self._file.readinto(view[filled:])  # type: ignore[attr-defined]
            if not got:
                raise ScoringError(f"{self.what}: the file ends before row {first + count}")
            filled += got
        return array


def _label_values(values: np.ndarray) -> np.ndarray:
    """Labels as float (NaN: missing) or str ('': missing), whatever they were stored as."""
    if values.dtype.kind in "USO":
        return values.astype(str)
    return values.astype(np.float64)


class ArrayReader:
    """.npy (one input) or .npz (one array per input, by name; the label array by --label-column)."""

    def __init__(self, path: Path, signature: ModelSignature, options: ScoreOptions) -> None:
        self._path = path
        self._chunk_rows = options.chunk_rows
        self._signature = signature
        self._zip: zipfile.ZipFile | None = None
        self._files: list[IO[bytes]] = []
        if path.suffix.lower() == ".npy":
            if len(signature.inputs) != 1:
                raise UsageError(
                    f"a .npy input feeds one input; model '{signature.name}' has "
                    f"{[spec.name for spec in signature.inputs]}: use an .npz with one array per input"
                )
            if options.label_column:
                raise UsageError("--label-column needs a CSV, Parquet or .npz input")
            self._inputs = {signature.inputs[0].name: self._open(path.open("rb"), str(path))}
            self._labels = None
        else:
            self._zip = zipfile.ZipFile(path)
            self._inputs = {spec.name: self._member(spec.name) for spec in signature.inputs}
            self._labels = self._member(options.label_column) if options.label_column else None
        streams = [*self._inputs.values(), *([self._labels] if self._labels else [])]
        counts = {stream.what: stream.rows for stream in streams}
        if len(set(counts.values())) > 1:
            raise UsageError(f"{path}: arrays have different row counts {counts}")
        self.total_rows: int | None = next(iter(counts.values()))
        self.chunk_count: int | None = -(-self.total_rows // options.chunk_rows)
        self._shapes = {spec.name: self._shape(spec) for spec in signature.inputs}

    def _open(self, file: IO[bytes], what: str) -> NpyRows:
        self._files.append(file)
        return NpyRows(file, what)

    def _member(self, name: str) -> NpyRows:
        assert self._zip is not None
        member = f"{name}.npy"
        if member not in self._zip.namelist():
            arrays = [entry.removesuffix(".npy") for entry in self._zip.namelist()]
            raise UsageError(f"{self._path}: no array '{name}' (has {arrays})")
        return self._open(self._zip.open(member), f"{self._path}[{name}]")

    def _shape(self, spec: TensorSpec) -> tuple[int, ...]:
        stream = self._inputs[spec.name]
        elements = int(np.prod(stream.row_shape, dtype=np.int64))
        try:
            return row_shape(spec.shape, elements, stream.what)
        except ValueError as error:
            raise UsageError(str(error)) from error

    def identity(self) -> dict[str, Any]:
        return file_identity(self._path)

    def chunks(self, skip: Set[int]) -> Iterator[Chunk]:
        assert self.total_rows is not None
        for chunk_id, first in enumerate(range(0, self.total_rows, self._chunk_rows)):
            if chunk_id in skip:
                continue
            count = min(self._chunk_rows, self.total_rows - first)
            inputs = {}
            for spec in self._signature.inputs:
                stream = self._inputs[spec.name]
                array = stream.read(first, count).reshape(count, *self._shapes[spec.name])
                inputs[spec.name] = cast_for_model(array, self._signature.dtype(spec), stream.what)
            labels = _label_values(self._labels.read(first, count)) if self._labels else None
            yield Chunk(chunk_id, first, count, inputs, labels)

    def close(self) -> None:
        for file in self._files:
            file.close()
        if self._zip is not None:
            self._zip.close()


def _exact_chunks(batches: Iterable[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of exactly chunk_rows rows (the last may be shorter), whatever sizes the batches come in."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        while batch.num_rows:
            take = min(chunk_rows - pending_rows, batch.num_rows)
            pending.append(batch.slice(0, take))
            pending_rows += take
            batch = batch.slice(take)
            if pending_rows == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield pa.Table.from_batches(pending)


def _arrow_label_values(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type):
        return np.asarray(column.cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False), dtype=str)
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


class TabularReader:
    """CSV or Parquet: the feature columns, in order, make the model's single input; nulls fail their row."""

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        open_batches: Callable[[list[str]], Iterable[pa.RecordBatch]],
        total_rows: int | None,
        signature: ModelSignature,
        options: ScoreOptions,
    ) -> None:
        if len(signature.inputs) != 1:
            raise UsageError(
                f"CSV and Parquet feed one input; model '{signature.name}' has "
                f"{[spec.name for spec in signature.inputs]}: use an .npz with one array per input"
            )
        self._path = path
        self._spec = signature.inputs[0]
        self._dtype = signature.dtype(self._spec)
        self._chunk_rows = options.chunk_rows
        self._label_column = options.label_column
        names = list(schema.names)
        if self._label_column and self._label_column not in names:
            raise UsageError(f"--label-column {self._label_column!r}: {path} has columns {names}")
        self._columns = list(options.columns) or [name for name in names if name != self._label_column]
        missing = [name for name in self._columns if name not in names]
        if missing:
            raise UsageError(f"--columns {missing}: {path} has columns {names}")
        for name in self._columns:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
                raise UsageError(f"column {name!r} is {kind}; feature columns must be numbers")
            if not np.can_cast(np.dtype(kind.to_pandas_dtype()), self._dtype, casting="same_kind"):
                raise UsageError(f"column {name!r} is {kind}, which cannot become the model's {self._dtype} intact")
        try:
            self._row_shape = row_shape(self._spec.shape, len(self._columns), f"{path} ({len(self._columns)} columns)")
        except ValueError as error:
            raise UsageError(f"{error}; choose columns with --columns") from error
        self._open_batches = open_batches
        self.total_rows = total_rows
        self.chunk_count: int | None = None if total_rows is None else -(-total_rows // options.chunk_rows)

    def identity(self) -> dict[str, Any]:
        return file_identity(self._path)

    def chunks(self, skip: Set[int]) -> Iterator[Chunk]:
        wanted = self._columns + ([self._label_column] if self._label_column else [])
        chunk_count = rows = 0
        try:
            for chunk_id, table in enumerate(_exact_chunks(self._open_batches(wanted), self._chunk_rows)):
                chunk_count, rows = chunk_id + 1, rows + table.num_rows
                if chunk_id not in skip:
                    yield self._chunk(chunk_id, table)
        except pa.ArrowInvalid as error:
            raise ScoringError(f"{self._path}: {error}") from error
        self.chunk_count, self.total_rows = chunk_count, rows

    def _chunk(self, chunk_id: int, table: pa.Table) -> Chunk:
        rows = table.num_rows
        features = np.empty((rows, len(self._columns)), self._dtype)
        row_errors: dict[int, str] = {}
        for index, name in enumerate(self._columns):
            column = table.column(name)
            if column.null_count:
                for row in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)):
                    row_errors.setdefault(int(row), f"null value in column {name!r}")
                column = column.fill_null(0)
            features[:, index] = column.to_numpy()
        labels = _arrow_label_values(table.column(self._label_column)) if self._label_column else None
        inputs = {self._spec.name: features.reshape(rows, *self._row_shape)}
        return Chunk(chunk_id, chunk_id * self._chunk_rows, rows, inputs, labels, row_errors=row_errors)

    def close(self) -> None:
        pass


def _parquet_reader(path: Path, signature: ModelSignature, options: ScoreOptions) -> TabularReader:
    parquet = pq.ParquetFile(path)

    def batches(columns: list[str]) -> Iterable[pa.RecordBatch]:
        return parquet.iter_batches(batch_size=options.chunk_rows, columns=columns)

    return TabularReader(path, parquet.schema_arrow, batches, parquet.metadata.num_rows, signature, options)


def _csv_reader(path: Path, signature: ModelSignature, options: ScoreOptions) -> TabularReader:
    with path.open(newline="") as file:
        header = next(csv.reader(file), [])
    # Fix every column's type up front: inferring from the first block breaks on a later
    # block (an integer column that turns float further down).
    kind = signature.dtype(signature.inputs[0]).kind if signature.inputs else "f"
    feature_type = {"f": pa.float64(), "b": pa.bool_()}.get(kind, pa.int64())
    types = {name: pa.string() if name == options.label_column else feature_type for name in header}
    schema = pa.schema([(name, types[name]) for name in header])

    def batches(columns: list[str]) -> Iterable[pa.RecordBatch]:
        convert = pa_csv.ConvertOptions(column_types=types, include_columns=columns)
        return pa_csv.open_csv(path, convert_options=convert)

    return TabularReader(path, schema, batches, None, signature, options)


def open_reader(signature: ModelSignature, options: ScoreOptions) -> ChunkReader:
    """The reader for the input's format: .npy, .npz, .csv, .parquet, or a folder of images."""
    path = options.input
    if path.is_dir():
        return ImageFolderReader(path, signature, options)
    if options.labels_from_folders:
        raise UsageError(f"--labels-from-folders needs a folder of images as --input, got {path}")
    if not path.is_file():
        raise UsageError(f"--input {path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return ArrayReader(path, signature, options)
    if suffix == ".csv":
        return _csv_reader(path, signature, options)
    if suffix in (".parquet", ".pq"):
        return _parquet_reader(path, signature, options)
    raise UsageError(f"--input {path}: expected .npy, .npz, .csv, .parquet or a folder of images")
