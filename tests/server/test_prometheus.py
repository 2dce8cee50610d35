"""A real Prometheus scrapes a real server; PromQL over our histograms gives the request count and a sane p99."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton

from tests.k8s.prometheus_install import ensure_prometheus
from tests.server.onnx_builders import add_sub_model
from tests.server_process import ServerProcess, free_port, running_server

REQUESTS = 50


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = ensure_prometheus()
    if found is None:
        pytest.skip("Prometheus is not installed and `apt-get install prometheus` failed here")
    return found[0]


@pytest.fixture(scope="module")
def scraped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    root = tmp_path_factory.mktemp("scraped")
    add_sub_model(root / "add_sub" / "1" / "model.onnx")
    metrics_port = free_port()
    log = tmp_path_factory.mktemp("logs") / "scraped.log"
    with running_server(root, log, ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]) as server:
        yield server, metrics_port


@pytest.fixture(scope="module")
def prometheus_url(
    prometheus_binary: str, scraped_server: tuple[ServerProcess, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    _, metrics_port = scraped_server
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: tau\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    port = free_port()
    prometheus_log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=prometheus_log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _get(f"{url}/-/ready") is not None, "Prometheus ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        prometheus_log.close()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def _query(base: str, promql: str) -> list[dict[str, object]]:
    body = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert body is not None, f"query failed: {promql}"
    return json.loads(body)["data"]["result"]


def _scalar(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def _wait_until(condition: object, what: str, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise TimeoutError(f"gave up waiting for: {what}")


def test_prometheus_scrapes_request_count_and_latency_histogram(
    prometheus_url: str, scraped_server: tuple[ServerProcess, int]
) -> None:
    server, _ = scraped_server
    client = triton.InferenceServerClient(server.address)
    data = np.ones((2, 16), np.float32)
    for _ in range(REQUESTS):
        inputs = [triton.InferInput("INPUT0", [2, 16], "FP32"), triton.InferInput("INPUT1", [2, 16], "FP32")]
        inputs[0].set_data_from_numpy(data)
        inputs[1].set_data_from_numpy(data)
        client.infer("add_sub", inputs)

    count_query = 'sum(tau_request_duration_seconds_count{job="tau",model="add_sub"})'
    _wait_until(lambda: _scalar(prometheus_url, count_query) == REQUESTS, f"{count_query} == {REQUESTS}")
    assert _scalar(prometheus_url, 'up{job="tau"}') == 1
    assert _scalar(prometheus_url, 'sum(tau_requests_total{model="add_sub",code="OK"})') == REQUESTS
    assert _scalar(prometheus_url, 'sum(tau_inferences_total{model="add_sub"})') == 2 * REQUESTS
    p99 = _scalar(
        prometheus_url,
        'histogram_quantile(0.99, sum by (le) (tau_request_duration_seconds_bucket{model="add_sub"}))',
    )
    assert p99 is not None and 0 < p99 < 1.0, p99
    provider = _query(prometheus_url, "tau_model_execution_provider_info")
    assert provider[0]["metric"]["provider"] == "CPUExecutionProvider"  # type: ignore[index]
