"""Metrics of the audit API (``audit-sink serve``): Prometheus text on ``/metrics``.

Requests are counted and timed through the shared edge's ``observe`` hook
(:class:`~sharing_guard.edge.metrics.HttpMetrics`); verifications by result. Labels are a
method, a route template, a status and ``ok``/``failed``: never a query (which may name an
account), an event id or a path as sent.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sharing_guard.edge.metrics import HttpMetrics, prometheus_meter, render
from starlette.responses import Response

__all__ = ["ApiMetrics"]

SERVICE_NAME = "audit-sink-api"


class ApiMetrics:
    """The API's instruments on a Prometheus registry of their own."""

    def __init__(self) -> None:
        exposition = prometheus_meter(SERVICE_NAME, "audit_sink.http")
        self.registry: CollectorRegistry = exposition.registry
        self.http = HttpMetrics(exposition.meter, "audit_sink")
        self.verifications = exposition.meter.create_counter(
            "audit_sink_verifications",
            description="Verifications of the whole log run by GET /verify, by result (ok, failed)",
        )

    def verified(self, ok: bool) -> None:
        """Count one verification that ran to its report."""
        self.verifications.add(1, {"result": "ok" if ok else "failed"})

    def render(self) -> Response:
        """The ``/metrics`` answer."""
        return render(self.registry)
