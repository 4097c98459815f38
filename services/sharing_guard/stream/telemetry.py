"""Traces and metrics of the guard (OpenTelemetry); metrics exported for Prometheus.

Each decision has a span ``sharing_guard.decide`` and each governance event applied a
span ``sharing_guard.apply``, both continuing the trace context of the input record's
headers; the records the guard produces for it (decision, routed transfer, audit record)
carry the span's own context instead, so their consumers continue the trace from it.

Attributes carry opaque ids and enum values only (event id, event type, outcome, codes,
recipient type, purpose): never an account id, a recipient id or any other personal value.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import Attributes

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.events import GovernanceEvent, TransferRequested
from sharing_guard.contract.policy_events import PolicyPromoted

Headers = list[tuple[str, bytes]]


class Decided(Protocol):
    """What telemetry needs of a decided transfer: the transfer, its Kafka headers, when
    its batch was received (ns since the epoch) and its broker timestamp (ms), if any."""

    @property
    def transfer(self) -> TransferRequested: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
    @property
    def received_ns(self) -> int: ...
    @property
    def timestamp_ms(self) -> float | None: ...


@dataclass
class Telemetry:
    """The guard's instruments. ``lag`` and ``policy_versions`` (the version enforced and
    the shadow's, by role) are filled by the worker and read at scrape time."""

    tracer: Tracer
    meter: Meter
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    policy_versions: dict[str, str] = field(default_factory=dict)

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
        self.restored = meter.create_counter(
            "sharing_guard_restored_records",
            description="Changelog records read into the local store (restart, takeover)",
        )
        self.expired = meter.create_counter(
            "sharing_guard_expired_entries",
            description="Idempotency entries expired (tombstoned in the changelog)",
        )
        self.catch_up_fetches = meter.create_counter(
            "sharing_guard_catch_up_fetches",
            description="Fetches of state partitions a batch of transfers waited for",
        )
        self.guard_errors = meter.create_counter(
            "sharing_guard_faults", description="Transfers blocked because the guard faulted"
        )
        self.policy_refused = meter.create_counter(
            "sharing_guard_policy_refused",
            description="Policy promotions refused (invalid document; the policy in force stays)",
        )
        self.shadow_decisions = meter.create_counter(
            "sharing_guard_shadow_decisions",
            description="Decisions under the shadow policy, by agreement with those enforced",
        )
        self.shadow_disagreements = meter.create_counter(
            "sharing_guard_shadow_disagreement_reasons",
            description="Reason codes in one of a disagreeing pair of decisions, not the other",
        )
        self.shadow_faults = meter.create_counter(
            "sharing_guard_shadow_faults", description="Transfers the shadow policy faulted on"
        )
        meter.create_observable_gauge(
            "sharing_guard_policy",
            callbacks=[self._observe_policy],
            description="1 for the policy version enforced (role=enforced) and the shadow's",
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

    def _observe_policy(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(1, {"role": role, "version": version})
            for role, version in list(self.policy_versions.items())
        ]

    def record_shadow(self, enforced: Decision, candidate: Decision) -> bool:
        """Count a shadow decision against the one enforced; whether they agree (same
        outcome, same reason codes). A disagreement counts each code found in one of the
        two decisions and not in the other, labelled with the side that has it."""
        ours, theirs = set(enforced.codes), set(candidate.codes)
        agrees = enforced.outcome is candidate.outcome and ours == theirs
        self.shadow_decisions.add(
            1,
            {
                "agreement": "agree" if agrees else "disagree",
                "enforced_outcome": enforced.outcome.value,
                "shadow_outcome": candidate.outcome.value,
            },
        )
        for side, codes in (("enforced", ours - theirs), ("shadow", theirs - ours)):
            for code in codes:
                self.shadow_disagreements.add(1, {"code": code.value, "only_in": side})
        return agrees

    def decision_span(
        self, item: Decided, decision: Decision, duplicate: bool
    ) -> tuple[Span, Headers]:
        """Start the span of a decision, continuing the producer's trace from the
        transfer's headers, from when its batch was received; returns it with the headers
        for the decision's outputs (the transfer's, carrying the span's context).
        :meth:`record_decisions` ends it once the outputs are handed over."""
        transfer = item.transfer
        attributes = {
            "sharing_guard.event_id": transfer.event_id,
            "sharing_guard.outcome": decision.outcome.value,
            "sharing_guard.codes": [c.value for c in decision.codes],
            "sharing_guard.recipient_type": transfer.recipient.type.value,
            "sharing_guard.purpose": transfer.purpose.value,
            "sharing_guard.duplicate": duplicate,
            "sharing_guard.policy_version": decision.policy_version,
        }
        return self._continued("sharing_guard.decide", item.headers, attributes, item.received_ns)

    def apply_span(
        self, event: GovernanceEvent | PolicyPromoted, headers: Sequence[tuple[str, bytes]]
    ) -> tuple[Span, Headers]:
        """Start the span of a governance event being applied, continuing the trace of
        its record's headers; returns it with the headers for its audit record (carrying
        the span's context). The caller ends it."""
        attributes = {
            "sharing_guard.event_id": event.event_id,
            "sharing_guard.event_type": event.type,
        }
        return self._continued("sharing_guard.apply", headers, attributes)

    def _continued(
        self,
        name: str,
        headers: Sequence[tuple[str, bytes]],
        attributes: Attributes,
        start_time: int | None = None,
    ) -> tuple[Span, Headers]:
        """A consumer span continuing the trace of a record's ``headers``, with the headers
        its outputs carry (the span's context in place of the producer's)."""
        parent = trace_context(headers)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            start_time=start_time,
        )
        return span, with_span_context(headers, span, parent)

    def record_decisions(
        self, decided: Iterable[tuple[Decided, Decision, bool, Span]], now_s: float
    ) -> None:
        """End the spans of, count and time a batch of decisions published at ``now_s``.

        Counters are updated once per distinct label set of the batch (the totals are
        those of counting one by one); each latency known (from the transfer's broker
        timestamp) is recorded.
        """
        outcomes: Counter[str] = Counter()
        reasons: Counter[tuple[str, str]] = Counter()
        end_ns = int(now_s * 1e9)
        for item, decision, _, span in decided:
            span.end(end_ns)
            outcome = decision.outcome.value
            outcomes[outcome] += 1
            for reason in decision.reasons:
                reasons[(reason.code.value, reason.clause.value)] += 1
            if item.timestamp_ms is not None and now_s * 1000 >= item.timestamp_ms:
                self.latency.record(now_s - item.timestamp_ms / 1000, {"outcome": outcome})
        for outcome, count in outcomes.items():
            self.decisions.add(count, {"outcome": outcome})
        for (code, clause), count in reasons.items():
            self.reasons.add(count, {"code": code, "clause": clause})


def trace_context(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context:
    """The producer's trace context carried in Kafka headers (W3C ``traceparent``); an
    empty context when the headers carry none of the propagator's fields."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    fields = _fields(propagate.get_global_textmap())
    carrier = {
        key: value.decode("latin-1")
        for key, value in items
        if key in fields and isinstance(value, bytes)
    }
    return propagate.extract(carrier) if carrier else Context()


def with_span_context(headers: Sequence[tuple[str, bytes]], span: Span, parent: Context) -> Headers:
    """``headers`` with their trace context fields replaced by ``span``'s context (and the
    baggage of ``parent``), as the global propagator writes them."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
    fields = _fields(propagate.get_global_textmap())
    return [
        *((key, value) for key, value in headers if key not in fields),
        *((key, value.encode("latin-1")) for key, value in carrier.items()),
    ]


@lru_cache(maxsize=4)
def _fields(propagator: TextMapPropagator) -> frozenset[str]:
    """The header names ``propagator`` reads (a composite one builds the set anew at each
    call: once per decision, without this)."""
    return frozenset(propagator.fields)


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
