"""Where a service's spans go: one place builds every process's ``TracerProvider``.

Spans leave the process over OTLP/HTTP (``opentelemetry-exporter-otlp-proto-http``) when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, and
only then. Everything else about the export (headers, timeout, compression, TLS files,
the batch processor's delays, the sampler) is read by the SDK itself from the standard
``OTEL_*`` variables. ``service.name`` is ``OTEL_SERVICE_NAME`` (or ``service.name`` in
``OTEL_RESOURCE_ATTRIBUTES``) when set, else the service's default below.

Each composition root calls :func:`tracer_provider` once and ``shutdown()`` on the
provider when it stops, which flushes the spans still queued.
"""

import os
from collections.abc import Iterable

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

WORKER = "sharing-guard-worker"
AUDIT_SINK = "audit-sink"
ORDERS = "sharing-guard-orders"
ALERTS = "sharing-guard-alerts"


def otlp_configured() -> bool:
    """Whether an OTLP endpoint is set: spans are exported only then."""
    return any(
        os.environ.get(name, "").strip()
        for name in (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    )


def tracer_provider(
    default_service_name: str, processors: Iterable[SpanProcessor] = ()
) -> TracerProvider:
    """A provider for one service: its resource named as the module says, the given span
    processors (e.g. a file exporter), and a batch OTLP/HTTP exporter when configured."""
    resource = Resource.create({SERVICE_NAME: default_service_name}).merge(
        OTELResourceDetector().detect()  # OTEL_SERVICE_NAME wins over the default
    )
    provider = TracerProvider(resource=resource)
    for processor in processors:
        provider.add_span_processor(processor)
    if otlp_configured():
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
