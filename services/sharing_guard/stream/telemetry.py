"""Traces and metrics of the guard (OpenTelemetry), exported for Prometheus.

Attributes carry opaque ids and enum values only (event id, outcome, codes, recipient
type, purpose): never an account id or any other personal value.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from sharing_guard.contract.decision import Decision


@dataclass
class Telemetry:
    """The guard's instruments. ``lag`` is filled by the worker and read at scrape time."""

    tracer: Tracer
    meter: Meter
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        meter = self.meter
        self.decisions = meter.create_counter(
            "sharing_guard_decisions", description="Decisions by outcome"
        )
        self.reasons = meter.create_counter(
            "sharing_guard_decision_reasons", description="Decision reasons by code and clause"
        )
        self.latency = meter.create_histogram(
            "sharing_guard_decision_latency",
            unit="s",
            description="From the transfer's broker timestamp to its decision being sent",
        )
        self.dead_letters = meter.create_counter(
            "sharing_guard_dead_letters", description="Records sent to the dead-letter topic"
        )
        self.read_back = meter.create_counter(
            "sharing_guard_read_back",
            description="Input records Faust did not deliver, read back from the broker",
        )
        self.guard_errors = meter.create_counter(
            "sharing_guard_faults", description="Transfers blocked because the guard faulted"
        )
        meter.create_observable_gauge(
            "sharing_guard_consumer_lag",
            callbacks=[self._observe_lag],
            description="Records behind the end of each consumed partition",
        )

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"topic": topic, "partition": partition})
            for (topic, partition), value in list(self.lag.items())
        ]

    def record_decision(self, decision: Decision, latency_s: float | None) -> None:
        """Count one decision and its reasons; record its latency when known."""
        self.decisions.add(1, {"outcome": decision.outcome.value})
        for reason in decision.reasons:
            self.reasons.add(1, {"code": reason.code.value, "clause": reason.clause.value})
        if latency_s is not None and latency_s >= 0:
            self.latency.record(latency_s, {"outcome": decision.outcome.value})


def trace_context(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context:
    """The producer's trace context carried in Kafka headers (W3C ``traceparent``)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    carrier = {key: value.decode("latin-1") for key, value in items if isinstance(value, bytes)}
    return propagate.extract(carrier)


def build_telemetry(
    readers: Sequence[MetricReader] = (), tracer_provider: TracerProvider | None = None
) -> Telemetry:
    """Instruments on their own providers (not the global ones, so tests stay isolated)."""
    meter_provider = MeterProvider(metric_readers=list(readers))
    tracer_provider = tracer_provider or TracerProvider()
    return Telemetry(
        tracer=tracer_provider.get_tracer("sharing_guard"),
        meter=meter_provider.get_meter("sharing_guard"),
    )
