"""docs/operations.md stays true: its configuration tables are the settings classes', every
variable it names is one a service reads, and its metric names are the ones exported."""

from __future__ import annotations

import re

from deploy_support import (
    DOCUMENTED_SETTINGS,
    OPERATIONS_DOC,
    SERVICES,
    documented_tables,
    env_table,
    settings_class,
    settings_env,
)
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, generate_latest


def _doc() -> str:
    return OPERATIONS_DOC.read_text(encoding="utf-8")


def test_configuration_tables_are_the_settings_classes() -> None:
    tables = documented_tables(_doc())
    assert list(tables) == list(DOCUMENTED_SETTINGS)
    for dotted, table in tables.items():
        expected = env_table(settings_class(dotted))
        assert table == expected, (
            f"docs/operations.md: the table of {dotted} is stale; "
            f"`python tests/deploy/deploy_support.py` prints the current one:\n{expected}"
        )


def test_every_variable_named_is_read_by_a_service() -> None:
    read: set[str] = set()
    for service in SERVICES:
        read |= set(settings_env(service.settings_class()))
    named = set(re.findall(r"\b((?:SHARING_GUARD|AUDIT_SINK)_[A-Z0-9_]*[A-Z0-9])\b", _doc()))
    # Names of Compose secrets that are not settings (database passwords of postgres-init.sh).
    compose_only = {"AUDIT_SINK_DB_PASSWORD"}
    unknown = named - read - compose_only
    assert not unknown, f"docs/operations.md names variables nothing reads: {sorted(unknown)}"


def _exported_names(readers: list[PrometheusMetricReader]) -> set[str]:
    """The Prometheus names under which the readers' instruments are exported."""
    registry = CollectorRegistry()
    for reader in readers:
        registry.register(reader._collector)  # read through our own registry only
    return _names(generate_latest(registry).decode())


def _names(text: str) -> set[str]:
    """The project's metric names in a Prometheus text (the process collectors' left out)."""
    found = re.findall(
        r"^((?:sharing_guard|audit_sink)_[a-z_]+?)(?:_bucket|_count|_sum)?\{", text, re.M
    )
    return set(found)


def _other_services_names() -> set[str]:
    """The names exported by the order service, the audit API and the audit ingest, each
    instrument touched once (they have registries of their own)."""
    from types import SimpleNamespace

    from audit_sink.api_metrics import ApiMetrics
    from audit_sink.ingest import IngestStats
    from audit_sink.ingest_metrics import IngestMetrics
    from sharing_guard.orders.telemetry import OrdersTelemetry

    orders = OrdersTelemetry()
    orders.state_loaded = orders.producer_connected = lambda: True
    orders.http.observe("GET", "/orders", 200, 0.01)
    orders.changed("registered")
    orders.refused("approval", "four_eyes")
    api = ApiMetrics()
    api.http.observe("GET", "/verify", 200, 0.01)
    api.verified(True)
    ingestor = SimpleNamespace(stats=IngestStats(), lag={("t", 0): 1}, checkpoint_signed_at=0.0)
    ingest = IngestMetrics(ingestor)  # type: ignore[arg-type]
    registries = (orders.registry, api.registry, ingest.registry)
    return set().union(*(_names(generate_latest(r).decode()) for r in registries))


def _touch(instruments: object) -> None:
    """Record once on every counter and histogram of a telemetry object."""
    for value in vars(instruments).values():
        if hasattr(value, "add"):
            value.add(1, {})
        elif hasattr(value, "record"):
            value.record(0.001, {})


def test_metric_names_are_the_exported_ones() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from sharing_guard.alerts.telemetry import AlertsTelemetry
    from sharing_guard.stream.telemetry import Telemetry

    readers = [PrometheusMetricReader(), PrometheusMetricReader()]
    providers = [MeterProvider(metric_readers=[reader]) for reader in readers]
    try:
        guard = Telemetry(
            tracer=TracerProvider().get_tracer("test"), meter=providers[0].get_meter("guard")
        )
        guard.lag[("t", 0)] = 1
        guard.policy_versions["enforced"] = "p@1"
        _touch(guard)
        alerts = AlertsTelemetry(meter=providers[1].get_meter("alerts"))
        alerts.lag[("t", 0)] = 1
        _touch(alerts)
        names = _exported_names(readers) | _other_services_names()
    finally:
        for provider in providers:  # also takes the readers out of the global registry
            provider.shutdown()
    assert {"sharing_guard_decisions_total", "sharing_guard_orders_http_requests_total"} <= names
    assert {"audit_sink_verifications_total", "audit_sink_ingest_consumer_lag"} <= names
    documented = set(re.findall(r"`((?:sharing_guard|audit_sink)_[a-z_]+)", _doc()))
    assert documented == names, (
        f"undocumented: {sorted(names - documented)}; not exported: {sorted(documented - names)}"
    )


def test_compose_secrets_are_all_in_the_documented_env_file() -> None:
    from deploy_support import COMPOSE_FILE

    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", code))
    block = re.search(r"cat > \.env <<ENV\n(.*?)\nENV\n", _doc(), flags=re.DOTALL)
    assert block, "docs/operations.md shows no .env file for Compose"
    documented = set(re.findall(r"^([A-Z0-9_]+)=", block.group(1), flags=re.M))
    assert documented == required
