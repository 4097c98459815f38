"""Spans of the audit ingest: the append of each traced record, in its producer's trace.

The guard's audit records carry the trace context of the span that produced them (a
decision, a governance change applied) in their Kafka headers. Records are appended in
batches, one database transaction each; every record of a batch that carries a trace
context gets its own span ``audit_sink.append``, a child of that context, from the start
of the batch's append to its commit. Records without one get none (the sink starts no
trace of its own).

Attributes: the Kafka position (topic, partition, offset), the entry's index in the log
and its anomaly code when one was appended, or why the record appended nothing: never a
record's content.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AttributeValue
from sharing_guard.stream.telemetry import trace_context

from audit_sink.store import Position
from audit_sink.writer import AppendResult

__all__ = ["AppendSpans", "trace_ids"]

_HEX: Final = frozenset(b"0123456789abcdef")
_NO_TRACE: Final = b"0" * 32


def trace_ids(messages: Iterable[Any]) -> dict[Position, str]:
    """The W3C trace id of each consumed message whose ``traceparent`` header carries a
    valid one (``00-<32 hex>-<16 hex>-<2 hex>``), by position: read straight from the
    header bytes, with no tracer needed, so the entry remembers its trace
    (:meth:`audit_sink.store.LogStore.add_traces`) whether or not spans are exported."""
    found: dict[Position, str] = {}
    for message in messages:
        for key, value in message.headers or ():
            if key == "traceparent" and isinstance(value, bytes) and len(value) == 55:
                trace_id = value[3:35]
                if value[:3] == b"00-" and trace_id != _NO_TRACE and _HEX.issuperset(trace_id):
                    found[(message.topic, message.partition, message.offset)] = trace_id.decode()
                break
    return found


class AppendSpans:
    """Makes the append spans of a tracer (see the module docstring)."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    @staticmethod
    def contexts(messages: Iterable[Any]) -> dict[Position, Context]:
        """The trace context of each consumed message that carries one, by position."""
        found = {}
        for message in messages:
            context = trace_context(message.headers)
            if trace.get_current_span(context).get_span_context().is_valid:
                found[(message.topic, message.partition, message.offset)] = context
        return found

    def record(
        self, traced: Mapping[Position, Context], result: AppendResult, started_ns: int
    ) -> None:
        """One span per traced record of a batch appended since ``started_ns``."""
        outcome: dict[Position, dict[str, AttributeValue]] = {}
        for entry in result.appended:
            if entry.source is not None:
                source = entry.source
                attributes: dict[str, AttributeValue] = {"audit_sink.index": entry.index}
                if entry.anomaly is not None:
                    attributes["audit_sink.anomaly"] = entry.anomaly.value
                outcome[(source.topic, source.partition, source.offset)] = attributes
        for skipped in result.skipped:
            outcome[skipped.position] = {"audit_sink.skipped": skipped.reason}
        ended_ns = time.time_ns()
        for position, context in traced.items():
            topic, partition, offset = position
            self._tracer.start_span(
                "audit_sink.append",
                context=context,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition),
                    "messaging.kafka.offset": offset,
                    **outcome.get(position, {}),
                },
                start_time=started_ns,
            ).end(ended_ns)
