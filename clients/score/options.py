"""Every tau-score knob in one typed object, checked once; the CLI and score_file() both build it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTPUT_FORMAT_BY_SUFFIX = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
TASKS = ("classification", "regression")


class UsageError(ValueError):
    """Arguments that cannot work together, or an input that does not fit the model (exit code 2)."""


class ScoringError(RuntimeError):
    """A failure that stops the whole run; completed chunks stay checkpointed (exit code 1)."""


@dataclass(frozen=True)
class ScoreOptions:
    """What to score, where the model runs, and how hard to push it."""

    input: Path
    output: Path
    model: str
    model_version: str = ""  # empty: the server's (or the repository's) newest
    # Where the model runs: a server, or (local=True) ONNX Runtime in this process.
    url: str = "localhost:8001"
    local: bool = False
    repository: Path | None = None  # model repository: --local, --compare-local, labels
    model_file: Path | None = None  # a bare model.onnx, instead of a repository
    # What to read and write.
    outputs: tuple[str, ...] = ()  # empty: every model output
    columns: tuple[str, ...] = ()  # CSV/Parquet feature columns; empty: all but the label column
    label_column: str | None = None  # CSV/Parquet column, or .npz array, holding the true labels
    labels_file: Path | None = None  # class names, one per line (else the repository's config.json)
    labels_from_folders: bool = False  # image folder: each image's label is its sub-folder's name
    task: str = "classification"
    top_k: int = 0
    reject_nan: bool = False
    image_mean: tuple[float, ...] = ()  # per channel, applied after /255; empty: 0
    image_std: tuple[float, ...] = ()  # per channel; empty: 1
    # Throughput.
    chunk_rows: int = 8192
    request_rows: int = 256
    concurrency: int = 8
    stream: bool = False  # requests share one ModelStreamInfer stream instead of one unary call each
    request_timeout_seconds: float = 60.0  # one request's budget, retries included
    max_attempts: int = 5
    restart: bool = False
    quiet: bool = False
    # Connection (server mode).
    ssl: bool = False
    root_certificates: Path | None = None
    private_key: Path | None = None
    certificate_chain: Path | None = None
    headers: tuple[tuple[str, str], ...] = ()
    gzip: bool = False

    def __post_init__(self) -> None:
        if self.output.suffix.lower() not in OUTPUT_FORMAT_BY_SUFFIX:
            raise UsageError(f"--output {self.output}: expected a .parquet or .npy file")
        for name in ("chunk_rows", "request_rows", "concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(self, name)}")
        if self.labels_from_folders and self.label_column:
            raise UsageError("--labels-from-folders and --label-column: choose one source of true labels")
        if self.top_k < 0:
            raise UsageError(f"--top-k: expected 0 or more, got {self.top_k}")
        if self.top_k and self.output_format == "npy":
            raise UsageError("--top-k adds label columns, which only a .parquet output can hold")
        if self.task not in TASKS:
            raise UsageError(f"--task: expected one of {TASKS}, got {self.task!r}")
        if self.local and self.repository is None and self.model_file is None:
            raise UsageError("--local needs --repository DIR or --model-file model.onnx")
        if self.request_timeout_seconds <= 0:
            raise UsageError(f"--timeout-seconds: expected a positive number, got {self.request_timeout_seconds}")
        for name in ("image_mean", "image_std"):
            if any(value != value for value in getattr(self, name)):
                raise UsageError(f"--{name.removeprefix('image_')}: NaN is not a usable value")
        if any(value == 0 for value in self.image_std):
            raise UsageError("--std: values must be non-zero")

    @property
    def evaluates(self) -> bool:
        """True labels come with the input, so the run is scored against them."""
        return bool(self.label_column) or self.labels_from_folders

    @property
    def output_format(self) -> str:
        return OUTPUT_FORMAT_BY_SUFFIX[self.output.suffix.lower()]

    @property
    def parts_dir(self) -> Path:
        """Where finished chunks and the checkpoint wait until the final output is assembled."""
        return self.output.with_name(self.output.name + ".parts")

    @property
    def errors_path(self) -> Path:
        return self.output.with_name(self.output.name + ".errors.csv")

    @property
    def metrics_path(self) -> Path:
        return self.output.with_name(self.output.name + ".metrics.json")
