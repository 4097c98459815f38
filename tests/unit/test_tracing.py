"""Where spans go (sharing_guard.tracing): OTLP only when an endpoint variable is set, and
the service named by OTEL_SERVICE_NAME or its default."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from sharing_guard import tracing

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class RecordingExporter:
    """Stands in for OTLPSpanExporter: counts how often one is made."""

    made = 0

    def __init__(self, *_: Any, **__: Any) -> None:
        type(self).made += 1

    def export(self, spans: Any) -> Any:
        raise AssertionError("nothing is exported in a unit test")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingExporter]:
    for name in (*ENDPOINT_VARIABLES, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    RecordingExporter.made = 0
    monkeypatch.setattr(tracing, "OTLPSpanExporter", RecordingExporter)
    return RecordingExporter


def test_without_an_endpoint_variable_no_exporter_is_installed(
    recording: type[RecordingExporter],
) -> None:
    assert not tracing.otlp_configured()
    provider = tracing.tracer_provider(tracing.WORKER)
    provider.get_tracer("test").start_span("kept in process").end()
    provider.shutdown()
    assert recording.made == 0
    assert provider.resource.attributes[SERVICE_NAME] == "sharing-guard-worker"


@pytest.mark.parametrize("variable", ENDPOINT_VARIABLES)
def test_either_endpoint_variable_installs_the_otlp_exporter(
    recording: type[RecordingExporter], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:4318")
    assert tracing.otlp_configured()
    provider = tracing.tracer_provider(tracing.AUDIT_SINK)
    provider.shutdown()
    assert recording.made == 1


def test_a_blank_endpoint_variable_exports_nothing(
    recording: type[RecordingExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", " ")
    tracing.tracer_provider(tracing.ORDERS).shutdown()
    assert recording.made == 0


def test_otel_service_name_overrides_the_default(
    recording: type[RecordingExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "guard-eu-1")
    provider = tracing.tracer_provider(tracing.WORKER)
    assert provider.resource.attributes[SERVICE_NAME] == "guard-eu-1"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert tracing.tracer_provider(tracing.ALERTS).resource.attributes[SERVICE_NAME] == (
        "sharing-guard-alerts"
    )
