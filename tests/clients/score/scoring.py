"""Helpers for the tau-score tests: run the CLI in this process, read what it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clients.score.cli import main


def run_score(*args: str | Path) -> int:
    return main([str(arg) for arg in args])


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)


def output_matrix(table: pa.Table, output: str) -> np.ndarray:
    """The `<output>_<i>` columns back as one (rows, elements) array."""
    names = sorted(
        (name for name in table.column_names if name.startswith(f"{output}_") and name[len(output) + 1 :].isdigit()),
        key=lambda name: int(name[len(output) + 1 :]),
    )
    return np.stack([table.column(name).to_numpy() for name in names], axis=1)


def error_rows(output: Path) -> dict[int, str]:
    path = output.with_name(output.name + ".errors.csv")
    if not path.exists():
        return {}
    with path.open(newline="") as file:
        return {int(row["row"]): row["reason"] for row in csv.DictReader(file)}
