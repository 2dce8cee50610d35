"""tau-score reads every input format, writes Parquet or .npy in input order, and --local matches the server."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clients import TauClient
from tests.clients.score.scoring import error_rows, output_matrix, read_table, run_score
from tests.server_process import REPO_ROOT, ServerProcess

ROWS = 3000
MLP_LABELS = ["low", "medium", "high"]


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((ROWS, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def classes() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 3, ROWS)


def _expected(server: ServerProcess, model: str, name: str, rows: np.ndarray, output: str) -> np.ndarray:
    with TauClient(server.address) as client:
        pieces = [client.infer(model, {name: rows[i : i + 64]})[output] for i in range(0, len(rows), 64)]
    return np.concatenate(pieces)


@pytest.fixture(scope="module")
def probabilities(client_server: ServerProcess, features: np.ndarray) -> np.ndarray:
    return _expected(client_server, "mlp", "features", features, "probabilities")


def test_npy_input_scores_every_row_in_input_order(
    client_server: ServerProcess, features: np.ndarray, probabilities: np.ndarray, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", features)
    out = tmp_path / "out.parquet"
    assert run_score("--url", client_server.address, "--model", "mlp", "--input", tmp_path / "in.npy",
                     "--output", out, "--chunk-rows", "700", "--quiet") == 0  # fmt: skip
    table = read_table(out)
    assert table.column_names == ["row", "probabilities_0", "probabilities_1", "probabilities_2"]
    np.testing.assert_array_equal(table.column("row").to_numpy(), np.arange(ROWS))
    np.testing.assert_allclose(output_matrix(table, "probabilities"), probabilities, rtol=1e-6, atol=1e-7)
    assert not (tmp_path / "out.parquet.parts").exists() and error_rows(out) == {}


def test_npz_feeds_each_model_input_by_name(server: ServerProcess, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((500, 16)).astype(np.float32), rng.standard_normal((500, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", INPUT0=a, INPUT1=b)
    out = tmp_path / "out.parquet"
    assert run_score("--url", server.address, "--model", "add_sub", "--input", tmp_path / "in.npz",
                     "--output", out, "--chunk-rows", "128", "--quiet") == 0  # fmt: skip
    table = read_table(out)
    np.testing.assert_array_equal(output_matrix(table, "OUTPUT0"), a + b)
    np.testing.assert_array_equal(output_matrix(table, "OUTPUT1"), a - b)
    # A .npy output holds one output, chosen with --outputs.
    npy_out = tmp_path / "out.npy"
    assert run_score("--url", server.address, "--model", "add_sub", "--input", tmp_path / "in.npz",
                     "--output", npy_out, "--outputs", "OUTPUT1", "--quiet") == 0  # fmt: skip
    np.testing.assert_array_equal(np.load(npy_out), a - b)


def test_csv_with_named_labels_reports_metrics_and_top_k(
    client_server: ServerProcess,
    client_repository: Path,
    features: np.ndarray,
    classes: np.ndarray,
    probabilities: np.ndarray,
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["species", *(f"f{i}" for i in range(16))])
        for label, row in zip(classes, features, strict=True):
            writer.writerow([MLP_LABELS[label], *(repr(float(value)) for value in row)])
    out = tmp_path / "out.parquet"
    assert run_score("--url", client_server.address, "--model", "mlp", "--input", path, "--output", out,
                     "--label-column", "species", "--repository", client_repository, "--top-k", "2",
                     "--chunk-rows", "1000", "--quiet") == 0  # fmt: skip
    table = read_table(out)
    np.testing.assert_allclose(output_matrix(table, "probabilities"), probabilities, rtol=1e-6, atol=1e-7)
    best = probabilities.argmax(axis=1)
    assert table.column("top1_label").to_pylist() == [MLP_LABELS[i] for i in best]
    assert table.column("label").to_pylist() == [MLP_LABELS[i] for i in classes]
    metrics = json.loads((tmp_path / "out.parquet.metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(float((best == classes).mean()))
    assert metrics["rows"] == ROWS and list(metrics["per_class"]) == MLP_LABELS


def test_parquet_columns_are_chosen_and_ordered_by_columns_flag(
    client_server: ServerProcess, features: np.ndarray, classes: np.ndarray, tmp_path: Path
) -> None:
    columns = {f"f{i}": features[:, i] for i in range(16)}
    table = pa.table({"id": np.arange(ROWS), **columns, "label": classes})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=450)
    reversed_names = ",".join(f"f{i}" for i in reversed(range(16)))
    out = tmp_path / "out.parquet"
    assert run_score("--url", client_server.address, "--model", "mlp", "--input", tmp_path / "in.parquet",
                     "--output", out, "--columns", reversed_names, "--label-column", "label",
                     "--chunk-rows", "1000", "--quiet") == 0  # fmt: skip
    expected = _expected(client_server, "mlp", "features", np.ascontiguousarray(features[:, ::-1]), "probabilities")
    np.testing.assert_allclose(output_matrix(read_table(out), "probabilities"), expected, rtol=1e-6, atol=1e-7)
    assert json.loads((tmp_path / "out.parquet.metrics.json").read_text())["rows"] == ROWS


def _image_pixels(path: Path, mean: float, std: float) -> np.ndarray:
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    return ((np.asarray(rgb, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)


def test_image_folder_feeds_the_cnn_and_unreadable_files_fail_their_row(
    client_server: ServerProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(4)
    for i in range(11):
        mode, size = ("L", (40, 36)) if i % 4 == 0 else ("RGB", (32 + i, 30))
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        target = folder / "more" if i > 7 else folder
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(target / f"img_{i:02d}.png")
    (folder / "img_05b.png").write_bytes(b"not a png")
    out = tmp_path / "out.parquet"
    assert run_score("--url", client_server.address, "--model", "cnn", "--input", folder, "--output", out,
                     "--mean", "0.5", "--std", "0.25", "--chunk-rows", "4", "--quiet") == 3  # fmt: skip
    table = read_table(out)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.png"))
    assert table.column("file").to_pylist() == [name for name in files if name != "img_05b.png"]
    broken_row = files.index("img_05b.png")
    assert list(error_rows(out)) == [broken_row] and "cannot read image" in error_rows(out)[broken_row]
    pixels = np.stack([_image_pixels(folder / name, 0.5, 0.25) for name in table.column("file").to_pylist()])
    expected = _expected(client_server, "cnn", "pixels", pixels, "logits")
    np.testing.assert_allclose(output_matrix(table, "logits"), expected, rtol=1e-5, atol=1e-5)


def test_local_scoring_equals_the_servers(
    client_server: ServerProcess, client_repository: Path, features: np.ndarray, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", features)
    common = ["--model", "mlp", "--input", tmp_path / "in.npy", "--chunk-rows", "1000", "--quiet"]
    assert run_score("--url", client_server.address, "--output", tmp_path / "server.parquet", *common) == 0
    assert run_score("--local", "--repository", client_repository, "--output", tmp_path / "local.parquet", *common) == 0
    assert read_table(tmp_path / "local.parquet").equals(read_table(tmp_path / "server.parquet"))


def test_local_scoring_from_a_bare_model_file(features: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", features[:100])
    model_file = REPO_ROOT / "models" / "mlp" / "1" / "model.onnx"
    assert run_score("--local", "--model-file", model_file, "--model", "mlp", "--input", tmp_path / "in.npy",
                     "--output", tmp_path / "out.npy", "--quiet") == 0  # fmt: skip
    assert np.load(tmp_path / "out.npy").shape == (100, 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "no_such_model"], "no_such_model"),
        (["--model", "mlp", "--columns", "f0,f1"], "2 values per row, the model expects 16"),
        (["--model", "mlp", "--local"], "--local needs --repository"),
        (["--model", "mlp", "--top-k", "2", "--output-npy"], "only a .parquet output"),
        (["--model", "mlp", "--chunk-rows", "0"], "--chunk-rows: expected at least 1"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    client_server: ServerProcess,
    features: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    pq.write_table(pa.table({f"f{i}": features[:10, i] for i in range(16)}), tmp_path / "in.parquet")
    output = tmp_path / ("out.npy" if "--output-npy" in extra else "out.parquet")
    extra = [arg for arg in extra if arg != "--output-npy"]
    code = run_score("--url", client_server.address, "--input", tmp_path / "in.parquet", "--output", output,
                     "--quiet", *extra)  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err


def test_unreachable_server_exits_1(features: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.server_process import free_port

    np.save(tmp_path / "in.npy", features[:10])
    code = run_score("--url", f"127.0.0.1:{free_port()}", "--model", "mlp", "--input", tmp_path / "in.npy",
                     "--output", tmp_path / "out.parquet", "--max-attempts", "2", "--quiet")  # fmt: skip
    assert code == 1 and "UNAVAILABLE" in capsys.readouterr().err


def test_labels_from_sub_folders_score_an_image_folder_against_its_classes(
    client_server: ServerProcess, tmp_path: Path
) -> None:
    # One folder per class, as image datasets are laid out; a stray image at the top has no label.
    folder = tmp_path / "images"
    rng = np.random.default_rng(5)
    for class_name, count in (("class_3", 4), ("class_7", 3), (".", 1)):
        (folder / class_name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / class_name / f"img_{i}.png")
    out = tmp_path / "out.parquet"
    # The class names come from the server's ModelConfig answer: no --repository needed.
    assert run_score("--url", client_server.address, "--model", "cnn", "--input", folder, "--output", out,
                     "--labels-from-folders", "--chunk-rows", "3", "--quiet") == 0  # fmt: skip
    table = read_table(out)
    files = table.column("file").to_pylist()
    assert table.column("label").to_pylist() == [name.split("/")[0] if "/" in name else "" for name in files]
    metrics = json.loads(out.with_name(out.name + ".metrics.json").read_text())
    assert (metrics["rows"], metrics["unlabelled_rows"]) == (7, 1)
    predicted = output_matrix(table, "logits").argmax(axis=1)
    truth = [int(label.removeprefix("class_")) if label else -1 for label in table.column("label").to_pylist()]
    correct = sum(1 for p, t in zip(predicted, truth, strict=True) if t == p)
    assert metrics["accuracy"] == pytest.approx(correct / 7)
    support = {name: stats["support"] for name, stats in metrics["per_class"].items() if stats["support"]}
    assert support == {"class_3": 4, "class_7": 3}


def test_labels_from_folders_needs_an_image_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.zeros((2, 16), np.float32))
    code = run_score("--local", "--repository", REPO_ROOT / "models", "--model", "mlp", "--input",
                     tmp_path / "in.npy", "--output", tmp_path / "out.parquet", "--labels-from-folders")  # fmt: skip
    assert code == 2


def test_scoring_over_a_stream_gives_the_same_table(
    client_server: ServerProcess, features: np.ndarray, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", features)
    common = ["--url", client_server.address, "--model", "mlp", "--input", tmp_path / "in.npy", "--quiet"]
    common += ["--request-rows", "64", "--chunk-rows", "1000"]
    assert run_score(*common, "--output", tmp_path / "unary.parquet") == 0
    assert run_score(*common, "--output", tmp_path / "stream.parquet", "--stream") == 0
    assert read_table(tmp_path / "stream.parquet").equals(read_table(tmp_path / "unary.parquet"))
