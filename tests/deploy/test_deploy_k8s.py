"""deploy/k8s: every kustomization renders, passes `kubernetes-validate --strict`, and is
wired to what the services really read, serve and need.

Custom resources (Strimzi ``KafkaTopic``) have no schema in kubernetes-validate: they are
left out of that validation explicitly and checked against scripts/kafka/topics.txt here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    KUSTOMIZATIONS,
    ROOT,
    KustomizeError,
    all_containers,
    check_runtime_requirements,
    declared_topics,
    dockerfile_user,
    example_secret_values,
    image_env,
    is_crd,
    kubectl,
    labels_match,
    metrics_address,
    otel_variables,
    pod_specs,
    render_kustomization,
    resource_id,
    service_of,
    service_routes,
    settings_env,
    settings_prefixes,
    workloads,
)

Resources = list[dict[str, Any]]
PRODUCTION = ROOT / "deploy" / "k8s" / "overlays" / "production"
ACCOUNT_KEYED_TOPICS = ("sharing.transfers.requested", "governance.consents")
ACCOUNT_KEYED_TOPICS += ("governance.subject-rights",)


@pytest.fixture(scope="module")
def rendered() -> dict[Path, Resources]:
    return {directory: render_kustomization(directory) for directory in KUSTOMIZATIONS}


@pytest.fixture(scope="module")
def production(rendered: dict[Path, Resources]) -> Resources:
    return rendered[PRODUCTION]


def _containers(resources: Resources) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for resource in workloads(resources):
        for pod in pod_specs(resource):
            for container in all_containers(pod):
                yield resource, container


def _by_kind(resources: Resources, kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def _config_maps(resources: Resources) -> dict[str, dict[str, str]]:
    return {r["metadata"]["name"]: r.get("data", {}) for r in _by_kind(resources, "ConfigMap")}


def _container_env(
    resources: Resources, container: Mapping[str, Any], secrets: Mapping[str, str]
) -> tuple[dict[str, str], set[str]]:
    """The container's environment (Secret values replaced by stand-ins) and which names
    came from Secrets."""
    config_maps = _config_maps(resources)
    env: dict[str, str] = {}
    from_secrets: set[str] = set()
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, "envFrom secretRef hides which variables are set"
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"ConfigMap {name} is not part of the deployment"
        env.update(config_maps[name])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            from_secrets.add(item["name"])
            env[item["name"]] = secrets.get(item["name"], "from-a-secret")
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[item["name"]] = config_maps[key["name"]][key["key"]]
        else:
            env[item["name"]] = "from-the-pod"
    return env, from_secrets


def _command(container: Mapping[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def _build(cls: Any, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in list(os.environ):
        if key.startswith(settings_prefixes()):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls()


# --- rendering and schemas ------------------------------------------------------------------


@pytest.mark.skipif(kubectl() is None, reason="kubectl absent: the renderer is compared only here")
def test_renderer_agrees_with_kubectl_kustomize(rendered: dict[Path, Resources]) -> None:
    binary = kubectl()
    assert binary is not None
    for directory, ours in rendered.items():
        result = subprocess.run(
            [binary, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        theirs = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert sorted(theirs, key=resource_id) == sorted(ours, key=resource_id), directory


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "configMapGenerator:\n  - name: x\n    literals: [A=1]\n",
        encoding="utf-8",
    )
    with pytest.raises(KustomizeError, match="configMapGenerator"):
        render_kustomization(tmp_path)


def _kubernetes_validate() -> Path:
    binary = Path(sys.executable).with_name("kubernetes-validate")
    assert binary.is_file(), "kubernetes-validate missing: pip install -e '.[dev]' installs it"
    return binary


def _validate(resources: Resources, path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump_all(resources, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [str(_kubernetes_validate()), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_every_rendered_manifest_passes_strict_validation(
    rendered: dict[Path, Resources], tmp_path: Path
) -> None:
    skipped: set[str] = set()
    for number, (directory, resources) in enumerate(rendered.items()):
        crds = [r for r in resources if is_crd(r)]
        skipped.update(f"{r['apiVersion']}/{r['kind']}" for r in crds)
        plain = [r for r in resources if not is_crd(r)]
        if not plain:
            continue
        result = _validate(plain, tmp_path / f"rendered-{number}.yaml")
        assert result.returncode == 0, f"{directory}:\n{result.stdout}{result.stderr}"
    # Explicitly skipped (no schema available offline), checked by the topic tests below.
    assert skipped == {"kafka.strimzi.io/v1beta2/KafkaTopic"}


def test_strict_validation_catches_a_misspelt_field(production: Resources, tmp_path: Path) -> None:
    deployment = next(r for r in production if r["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    result = _validate([broken], tmp_path / "broken.yaml")
    assert result.returncode != 0


# --- what schemas do not check ---------------------------------------------------------------


def test_selectors_match_pod_labels(rendered: dict[Path, Resources]) -> None:
    for resources in rendered.values():
        pods = [
            (r, r["spec"]["template"]["metadata"].get("labels", {})) for r in workloads(resources)
        ]
        for workload, labels in pods:
            selector = (workload["spec"].get("selector") or {}).get("matchLabels")
            if workload["kind"] != "Job":
                assert selector, workload["metadata"]["name"]
                assert labels_match(selector, labels), workload["metadata"]["name"]
        for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", None)):
            for resource in _by_kind(resources, kind):
                selector = (
                    resource["spec"]["selector"]
                    if path
                    else resource["spec"]["selector"]["matchLabels"]
                )
                matched = [w for w, labels in pods if labels_match(selector, labels)]
                assert len(matched) == 1, f"{kind} {resource['metadata']['name']}: {matched}"
        for policy in _by_kind(resources, "NetworkPolicy"):
            selector = policy["spec"]["podSelector"].get("matchLabels", {})
            if selector:
                assert any(labels_match(selector, labels) for _, labels in pods), policy
        names = {(r["kind"], r["metadata"]["name"]) for r in resources}
        for hpa in _by_kind(resources, "HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) in names


def _selected_pod(resources: Resources, selector: Mapping[str, str]) -> dict[str, Any]:
    return next(
        r
        for r in workloads(resources)
        if labels_match(selector, r["spec"]["template"]["metadata"].get("labels", {}))
    )


def _ports(workload: Mapping[str, Any]) -> dict[str | int, int]:
    ports: dict[str | int, int] = {}
    for pod in pod_specs(workload):
        for container in pod["containers"]:
            for port in container.get("ports", []):
                ports[port["containerPort"]] = port["containerPort"]
                if "name" in port:
                    ports[port["name"]] = port["containerPort"]
    return ports


def test_service_target_ports_exist(production: Resources) -> None:
    for service in _by_kind(production, "Service"):
        ports = _ports(_selected_pod(production, service["spec"]["selector"]))
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_probes_call_served_endpoints_on_the_listening_port(
    production: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: set[str] = set()
    for workload, container in _containers(production):
        service = service_of(_command(container))
        probes = [p for p in (container.get(k) for k in ("livenessProbe", "readinessProbe")) if p]
        probes += [container["startupProbe"]] if "startupProbe" in container else []
        if service is None or not service.sources:
            assert not probes, f"{workload['metadata']['name']}: probes an endpoint it lacks"
            continue
        env, _ = _container_env(production, container, example_secret_values())
        settings = _build(service.settings_class(), {**image_env(), **env}, monkeypatch)
        command = _command(container)
        if service.cli_port:
            port = int(command[command.index("--port") + 1])
            host = command[command.index("--host") + 1]
        else:
            assert service.port_setting
            assert service.host_setting
            port = getattr(settings, service.port_setting)
            host = getattr(settings, service.host_setting)
        assert host == "0.0.0.0", f"{service.name} listens on {host}: the kubelet cannot probe"
        ports = _ports(workload)
        assert port in ports.values(), f"{service.name}: listens on {port}, not a container port"
        assert {"livenessProbe", "readinessProbe"} <= set(container), service.name
        for probe in probes:
            target = probe["httpGet"]
            assert ports.get(target["port"]) == port, (service.name, target)
            assert target["path"] in service_routes(service), (service.name, target["path"])
        probed.add(service.name)
    assert probed == {"guard", "orders", "alerts", "audit-api"}


def test_every_metrics_endpoint_is_scraped(
    production: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pod serving /metrics is annotated for Prometheus with the port it listens on (a
    container port), and its NetworkPolicy lets the monitoring namespace reach that port;
    a pod serving none carries no scrape annotation."""
    served: dict[str, list[tuple[str, str, int]]] = {}
    for workload, container in _containers(production):
        service = service_of(_command(container))
        if service is None:
            continue
        env, _ = _container_env(production, container, example_secret_values())
        settings = _build(service.settings_class(), {**image_env(), **env}, monkeypatch)
        address = metrics_address(service, settings, _command(container))
        if address is not None:
            served.setdefault(workload["metadata"]["name"], []).append((service.name, *address))
    scraped: set[str] = set()
    policies = _by_kind(production, "NetworkPolicy")
    for workload in workloads(production):
        template = workload["spec"]["template"]
        annotations = template["metadata"].get("annotations", {})
        found = served.get(workload["metadata"]["name"], [])
        if not found:
            assert "prometheus.io/scrape" not in annotations, workload["metadata"]["name"]
            continue
        [(name, host, port)] = found
        assert host == "0.0.0.0", f"{name}: /metrics on {host}, unreachable"
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(port), name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert port in _ports(workload).values(), f"{name}: {port} is no container port"
        labels = template["metadata"]["labels"]
        own = next(
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels")
            and labels_match(p["spec"]["podSelector"]["matchLabels"], labels)
        )
        monitoring = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        }
        assert any(
            monitoring in rule.get("from", []) and port in {p["port"] for p in rule["ports"]}
            for rule in own["spec"].get("ingress", [])
        ), f"{name}: Prometheus (namespace monitoring) cannot reach port {port}"
        scraped.add(name)
    assert scraped == {"guard", "orders", "alerts", "audit-api", "audit-ingest"}


def test_every_variable_is_read_by_the_service(rendered: dict[Path, Resources]) -> None:
    prefixes = settings_prefixes()
    for resources in rendered.values():
        for workload, container in _containers(resources):
            env, _ = _container_env(resources, container, {})
            command = _command(container)
            service = service_of(command)
            read = set(settings_env(service.settings_class())) if service else set()
            if service is not None:
                read |= otel_variables()  # read by the OpenTelemetry SDK in every service
            topics_module = any(word.endswith("scripts/kafka/topics.py") for word in command)
            for key in env:
                if key in read:
                    continue
                if topics_module and key.startswith("KAFKA_TOPIC_PARTITIONS"):
                    continue  # read by topics.py itself (partition overrides)
                # A one-shot's own variable, expanded into its arguments by the kubelet; never
                # a misspelt setting of the service the container runs.
                name = workload["metadata"]["name"]
                assert f"$({key})" in " ".join(command), f"{name}: {key} is read by nothing"
                assert service is None or not key.startswith(prefixes), f"{name}: {key}?"


def test_required_settings_are_set_and_values_parse(
    production: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = set()
    for _workload, container in _containers(production):
        service = service_of(_command(container))
        if service is None:
            continue
        env, _ = _container_env(production, container, example_secret_values())
        settings = _build(service.settings_class(), {**image_env(), **env}, monkeypatch)
        check_runtime_requirements(service, settings)
        checked.add(service.name)
    assert checked == {"guard", "orders", "alerts", "audit-ingest", "audit-api"}


def test_no_secret_values_in_manifests(rendered: dict[Path, Resources]) -> None:
    secret_looking = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|DSN")
    for resources in rendered.values():
        assert not _by_kind(resources, "Secret"), "Secrets are created outside the repository"
        for name, data in _config_maps(resources).items():
            for key, value in data.items():
                if key.endswith("_FILE"):
                    continue
                assert not secret_looking.search(key), f"ConfigMap {name}: {key}"
                assert not re.search(r"://[^/\s]*:[^/\s]*@", value), f"{name}: {key} has a password"
        for workload, container in _containers(resources):
            service = service_of(_command(container))
            declared = settings_env(service.settings_class()) if service else {}
            env, from_secrets = _container_env(resources, container, {})
            for key in env:
                must_be_secret = (key in declared and declared[key].secret) or (
                    secret_looking.search(key) and not key.endswith("_FILE")
                )
                if must_be_secret:
                    assert key in from_secrets, f"{workload['metadata']['name']}: {key} in clear"


def test_pods_run_as_non_root_with_limits(production: Resources) -> None:
    user = int(dockerfile_user().split(":")[0])
    for workload in workloads(production):
        for pod in pod_specs(workload):
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == user != 0
            assert pod["automountServiceAccountToken"] is False
            assert context["seccompProfile"]["type"] == "RuntimeDefault"  # Pod Security restricted
            for container in all_containers(pod):
                security = container["securityContext"]
                assert security["allowPrivilegeEscalation"] is False
                assert security["readOnlyRootFilesystem"] is True
                assert security["capabilities"]["drop"] == ["ALL"]
                resources = container["resources"]
                assert {"cpu", "memory"} <= set(resources["requests"])
                assert {"cpu", "memory"} <= set(resources["limits"])


def test_every_pod_has_its_own_network_policy(production: Resources) -> None:
    policies = _by_kind(production, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert deny
    assert not any(p["spec"].get("ingress") or p["spec"].get("egress") for p in deny)
    assert {"Ingress", "Egress"} <= set(deny[0]["spec"]["policyTypes"])
    for workload in workloads(production):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        own = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels")
            and labels_match(p["spec"]["podSelector"]["matchLabels"], labels)
        ]
        assert len(own) == 1, workload["metadata"]["name"]
        ports = set(_ports(workload).values())
        for rule in own[0]["spec"].get("ingress", []):
            for port in rule["ports"]:
                assert port["port"] in ports, (workload["metadata"]["name"], port)
        egress_ports = {p["port"] for r in own[0]["spec"].get("egress", []) for p in r["ports"]}
        uses_postgres = any(
            "AUDIT_SINK_POSTGRES__DSN" in {e["name"] for e in c.get("env", [])}
            for pod in pod_specs(workload)
            for c in pod["containers"]
        )
        assert (5432 in egress_ports) == uses_postgres, workload["metadata"]["name"]
        assert 53 in egress_ports


def test_guard_workers_never_exceed_the_partitions(production: Resources) -> None:
    declared = declared_topics()
    counts = {declared[name].partitions for name in ACCOUNT_KEYED_TOPICS}
    assert len(counts) == 1, "the account-keyed topics must be co-partitioned"
    config = _config_maps(production)["sharing-guard-guard"]
    partitions = int(config["SHARING_GUARD_ACCOUNT_PARTITIONS"])
    assert counts == {partitions}
    guard = next(
        r for r in _by_kind(production, "Deployment") if r["metadata"]["name"] == "sharing-guard"
    )
    hpa = next(r for r in _by_kind(production, "HorizontalPodAutoscaler"))
    assert 1 <= hpa["spec"]["minReplicas"] <= guard["spec"]["replicas"]
    assert guard["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    metric_types = {m["type"] for m in hpa["spec"]["metrics"]}
    assert metric_types == {"Resource", "External"}


def test_strimzi_topics_match_the_declaration(rendered: dict[Path, Resources]) -> None:
    topics = [r for r in rendered[ROOT / "deploy/k8s/topics/strimzi"] if r["kind"] == "KafkaTopic"]
    declared = declared_topics()
    assert {t["spec"]["topicName"] for t in topics} == set(declared)
    for topic in topics:
        spec = declared[topic["spec"]["topicName"]]
        assert topic["spec"]["partitions"] == spec.partitions, spec.name
        assert topic["spec"]["config"] == dict(spec.configs), spec.name
        assert topic["spec"]["replicas"] >= 3, spec.name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]


def test_topics_job_creates_the_declared_topics(production: Resources) -> None:
    job = next(r for r in production if r["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = _command(container)
    assert command[:2] == ["python", "/app/scripts/kafka/topics.py"]
    assert "create-topics" in command
    env, _ = _container_env(production, container, {})
    factor = command[command.index("--replication-factor") + 1]
    assert int(re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], factor)) >= 3


def test_production_uses_a_pinned_registry_image(production: Resources) -> None:
    images = {c["image"] for _, c in _containers(production)}
    assert len(images) == 1
    image = images.pop()
    assert "/" in image, image
    assert re.search(r":[\w.-]+$|@sha256:[0-9a-f]{64}$", image), image
    assert not image.endswith(":latest")


def test_guard_changelogs_are_replicated_like_the_topics(production: Resources) -> None:
    guard = _config_maps(production)["sharing-guard-guard"]
    topics = _config_maps(production)["sharing-guard-topics"]
    assert guard["SHARING_GUARD_CHANGELOG_REPLICATION"] == topics["KAFKA_REPLICATION_FACTOR"]
