"""Prometheus ``/metrics`` of the HTTP services, from OpenTelemetry instruments.

:func:`prometheus_meter` gives a meter whose instruments are exported, with the process's
own collectors (CPU, memory, file descriptors, garbage collection), on a Prometheus
registry of their own (not the global one: each app has its own, so tests stay isolated);
:func:`render` is the ``/metrics`` answer. :class:`HttpMetrics` counts and times requests
through the edge's ``observe`` hook (:class:`~sharing_guard.edge.asgi.EdgePolicy`).

Labels are a standard method, a route *template* and a status code: never a path as sent,
a query, an account or an order reference (:func:`~sharing_guard.edge.asgi.metric_route`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.responses import Response

__all__ = ["DURATION_BUCKETS_S", "Exposition", "HttpMetrics", "prometheus_meter", "render"]

DURATION_BUCKETS_S: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    15.0,
    30.0,
)
"""Bucket bounds of the request duration histograms, in seconds (an order change waits
for its event to come back from Kafka: up to the 15 s apply timeout)."""


@dataclass(frozen=True)
class Exposition:
    """A meter and the Prometheus registry its instruments are read from at scrape time."""

    meter: Meter
    registry: CollectorRegistry


def prometheus_meter(service_name: str, scope: str) -> Exposition:
    """A meter named ``scope`` on a provider of its own (``service.name`` =
    ``service_name``), exported through a Prometheus reader on a registry of its own that
    also holds the process collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({SERVICE_NAME: service_name}),
        shutdown_on_exit=False,  # a pull reader: nothing to flush at exit
    )
    return Exposition(meter=provider.get_meter(scope), registry=registry)


def render(registry: CollectorRegistry) -> Response:
    """The Prometheus text of ``registry`` (the ``/metrics`` answer)."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """``<prefix>_http_requests_total{method,route,status}`` and
    ``<prefix>_http_request_duration_seconds{method,route}``; :meth:`observe` is the edge's
    hook."""

    def __init__(
        self, meter: Meter, prefix: str, buckets: Sequence[float] = DURATION_BUCKETS_S
    ) -> None:
        self.requests = meter.create_counter(
            f"{prefix}_http_requests",
            description="HTTP requests answered, by method, route template and status",
        )
        self.duration = meter.create_histogram(
            f"{prefix}_http_request_duration",
            unit="s",
            description="Time to answer an HTTP request, by method and route template",
            explicit_bucket_boundaries_advisory=list(buckets),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request (called by the edge once it is answered)."""
        self.requests.add(1, {"method": method, "route": route, "status": str(status)})
        self.duration.record(seconds, {"method": method, "route": route})
