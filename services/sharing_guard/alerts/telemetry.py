"""Metrics of the alerts process (OpenTelemetry, exported for Prometheus like the guard's).

Attributes are enum values and topic names only: alert kind, failure reason, drop reason,
topic, partition. Never an id of a data subject.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader


@dataclass
class AlertsTelemetry:
    """The instruments; ``queue_depth`` and ``lag`` are read at scrape time."""

    meter: Meter
    queue_depth: Callable[[], int] = lambda: 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        meter = self.meter
        self.consumed = meter.create_counter(
            "sharing_guard_alerts_records", description="Records consumed, by topic"
        )
        self.skipped = meter.create_counter(
            "sharing_guard_alerts_skipped",
            description="Records consumed that raise nothing by rule (duplicate, undecodable)",
        )
        self.raised = meter.create_counter(
            "sharing_guard_alerts_raised", description="Alerts raised, by kind"
        )
        self.delivered = meter.create_counter(
            "sharing_guard_alerts_delivered", description="Alerts the webhook accepted, by kind"
        )
        self.failures = meter.create_counter(
            "sharing_guard_alerts_delivery_failures",
            description="Failed webhook attempts, by kind and reason (status, timeout, connect)",
        )
        self.retries = meter.create_counter(
            "sharing_guard_alerts_retries", description="Webhook attempts that were retries"
        )
        self.dropped = meter.create_counter(
            "sharing_guard_alerts_dropped",
            description="Alerts never delivered, by kind and reason (queue_full, rejected, "
            "gave_up, shutdown)",
        )
        meter.create_observable_gauge(
            "sharing_guard_alerts_queue_depth",
            callbacks=[self._observe_depth],
            description="Alerts waiting for the webhook",
        )
        meter.create_observable_gauge(
            "sharing_guard_alerts_consumer_lag",
            callbacks=[self._observe_lag],
            description="Records behind the end of each consumed partition",
        )

    def _observe_depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.queue_depth())]

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"topic": topic, "partition": partition})
            for (topic, partition), value in list(self.lag.items())
        ]


def build_telemetry(readers: Sequence[MetricReader] = ()) -> AlertsTelemetry:
    """Instruments on their own meter provider (not the global one)."""
    provider = MeterProvider(metric_readers=list(readers))
    return AlertsTelemetry(meter=provider.get_meter("sharing_guard.alerts"))
