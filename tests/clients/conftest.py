"""One server for the client tests, serving the example models and a few with known behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.models import build_client_repository
from tests.server_process import ServerProcess, running_server


@pytest.fixture(scope="session")
def client_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_client_repository(tmp_path_factory.mktemp("client_repository"))


@pytest.fixture(scope="session")
def client_server(client_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(client_repository, tmp_path_factory.mktemp("client_logs") / "server.log") as process:
        yield process
