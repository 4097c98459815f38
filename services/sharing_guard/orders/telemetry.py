"""Metrics of the order service (OpenTelemetry, Prometheus text on ``/metrics``).

Requests are counted and timed by the shared edge's hook (:class:`HttpMetrics`); the use
cases report each change and each refusal. Labels are a method, a route template, a status,
the kind of a change and the rule behind a refusal: never an order reference, an officer,
an account or a path as sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import CollectorRegistry
from starlette.responses import Response

from sharing_guard.edge.metrics import HttpMetrics, prometheus_meter, render

__all__ = ["OrdersTelemetry"]

SERVICE_NAME = "sharing-guard-orders"
PREFIX = "sharing_guard_orders"


class OrdersTelemetry:
    """The order service's instruments on a registry of their own.

    ``state_loaded`` and ``producer_connected`` are read at scrape time (the composition
    root sets them; unset, the gauges report nothing). They must be cheap and never connect.
    """

    def __init__(self) -> None:
        exposition = prometheus_meter(SERVICE_NAME, "sharing_guard.orders")
        self.registry: CollectorRegistry = exposition.registry
        meter = exposition.meter
        self.http = HttpMetrics(meter, PREFIX)
        self.state_loaded: Callable[[], bool] | None = None
        self.producer_connected: Callable[[], bool] | None = None
        self.changes = meter.create_counter(
            f"{PREFIX}_changes",
            description="Order changes published, by kind (registered, approved, revoked)",
        )
        self.refusals = meter.create_counter(
            f"{PREFIX}_refusals",
            description="Order changes refused (409), by kind (registration, approval, "
            "revocation) and rule",
        )
        self.four_eyes_refusals = meter.create_counter(
            f"{PREFIX}_four_eyes_refusals",
            description="Approvals refused because the approving officer registered the order",
        )
        meter.create_observable_gauge(
            f"{PREFIX}_state_loaded",
            callbacks=[self._observe_loaded],
            description="1 once the state is loaded (the topics read to their end at start)",
        )
        meter.create_observable_gauge(
            f"{PREFIX}_producer_connected",
            callbacks=[self._observe_connected],
            description="1 while the Kafka producer holds a broker connection",
        )

    def changed(self, kind: str) -> None:
        """An order change (``registered``, ``approved``, ``revoked``) was published."""
        self.changes.add(1, {"kind": kind})

    def refused(self, kind: str, reason: str) -> None:
        """A change (``registration``, ``approval``, ``revocation``) was refused by a rule."""
        self.refusals.add(1, {"kind": kind, "reason": reason})
        if reason == "four_eyes":
            self.four_eyes_refusals.add(1)

    def render(self) -> Response:
        """The ``/metrics`` answer."""
        return render(self.registry)

    def _observe_loaded(self, _options: CallbackOptions) -> Iterable[Observation]:
        return _flag(self.state_loaded)

    def _observe_connected(self, _options: CallbackOptions) -> Iterable[Observation]:
        return _flag(self.producer_connected)


def _flag(read: Callable[[], bool] | None) -> list[Observation]:
    return [] if read is None else [Observation(1 if read() else 0)]
