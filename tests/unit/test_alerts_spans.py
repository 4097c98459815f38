"""The alerts consumer's span: a record that raises alerts continues the trace in its
headers (the guard's decision span), with opaque attributes only; one that raises none
gets no span."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sharing_guard.alerts.consumer import AlertsConsumer
from sharing_guard.alerts.core import Classifier
from sharing_guard.alerts.queue import AlertQueue
from sharing_guard.alerts.telemetry import build_telemetry
from sharing_guard.codec import contract_registry
from sharing_guard.contract import (
    DataCategory,
    Purpose,
    Recipient,
    RecipientType,
    TransferRequested,
)
from sharing_guard.settings import Topics

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ACCOUNT = "acct-PERSONAL-7731"
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class OnePoll:
    """A kafka-python consumer stand-in that returns ``records`` once."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        records, self.records = self.records, []
        return {("t", 0): records} if records else {}

    def assignment(self) -> set[Any]:
        return set()

    def commit(self) -> None:
        pass


def _record(topic: str, outcome: str, event_id: str) -> SimpleNamespace:
    transfer = TransferRequested(
        event_id=event_id,
        occurred_at=T0,
        source_service="virtual-drive",
        account_id=ACCOUNT,
        data_categories=(DataCategory.VIRTUAL_DRIVE_DATA,),
        recipient=Recipient(id="rcp-person-1", type=RecipientType.THIRD_PARTY, jurisdiction="CH"),
        purpose=Purpose.CONSENTED_SHARING,
    )
    headers = [
        ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode()),
        ("guard.event_id", event_id.encode()),
        ("guard.outcome", outcome.encode()),
        ("guard.duplicate", b"0"),
        ("guard.codes", b"VDD_EGRESS_FORBIDDEN" if outcome == "BLOCK" else b"CONSENT"),
    ]
    value = contract_registry().encode(transfer)
    return SimpleNamespace(topic=topic, partition=0, offset=1, value=value, headers=headers)


def test_a_record_raising_alerts_gets_a_child_span_of_its_headers_context() -> None:
    topics = Topics()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    records = [
        _record(topics.blocked, "BLOCK", "evt-blocked"),
        _record(topics.approved, "ALLOW", "evt-allowed"),  # raises nothing
    ]
    consumer = AlertsConsumer(
        OnePoll(records),
        topics=topics,
        classifier=Classifier(capacity=10),
        registry=contract_registry(),
        queue=AlertQueue(10),
        telemetry=build_telemetry(),
        clock=lambda: T0,
        tracer=provider.get_tracer("test"),
    )

    assert consumer.poll_once() == 2

    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["sharing_guard.alerts.raise"]
    span = spans[0]
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.attributes is not None
    assert tuple(span.attributes["sharing_guard.alert_kinds"]) == ("VDD_EGRESS_BLOCKED",)
    assert tuple(span.attributes["sharing_guard.alert_ids"]) == ("VDD_EGRESS_BLOCKED:evt-blocked",)
    assert ACCOUNT not in span.to_json()
    assert "rcp-person-1" not in span.to_json()
