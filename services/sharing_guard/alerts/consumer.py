"""Consuming the guard's outputs (kafka-python, its own consumer group) into alerts.

Topics: ``sharing.transfers.blocked`` (blocked transfers with the guard's headers),
``sharing.transfers.approved`` (for the ALLOW that spends an order's last disclosure),
``legal.orders`` (order quotas) and ``sharing.transfers.dlq``. Each polled batch is
classified, its alerts are put on the bounded queue (never waiting), then its offsets are
committed: consumption keeps pace whatever the webhook does. A record that raises alerts
gets a span ``sharing_guard.alerts.raise`` continuing the trace of its headers (the
guard's decision span), with the alerts' kinds and ids (opaque) as attributes.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from opentelemetry.trace import NoOpTracer, SpanKind, Tracer

from sharing_guard.alerts.core import Alert, Classifier, Source, dead_letter, guard_summary
from sharing_guard.alerts.queue import AlertQueue, Queued
from sharing_guard.alerts.telemetry import AlertsTelemetry
from sharing_guard.codec import CodecRegistry, DecodeError
from sharing_guard.contract.events import OrderRegistered, TransferRequested
from sharing_guard.settings import Topics
from sharing_guard.stream.telemetry import trace_context
from sharing_guard.topic_wait import await_topics

log = logging.getLogger("sharing_guard.alerts.consumer")


class AlertsConsumer:
    """Polls, classifies, enqueues, commits; ``ready`` once partitions are assigned."""

    def __init__(
        self,
        consumer: Any,
        *,
        topics: Topics,
        classifier: Classifier,
        registry: CodecRegistry,
        queue: AlertQueue,
        telemetry: AlertsTelemetry,
        clock: Callable[[], datetime],
        tracer: Tracer | None = None,
    ) -> None:
        self.consumer = consumer
        self.topics = topics
        self.classifier = classifier
        self.registry = registry
        self.queue = queue
        self.telemetry = telemetry
        self.clock = clock
        self.tracer = tracer or NoOpTracer()
        self.ready = threading.Event()

    def subscribe(self) -> None:
        """Subscribe to the four topics."""
        self.consumer.subscribe(self._topic_names())

    def _topic_names(self) -> list[str]:
        t = self.topics
        return [t.blocked, t.approved, t.orders, t.dlq]

    def run(self, stop: threading.Event) -> None:
        """Join the group once the topics exist (see :mod:`sharing_guard.topic_wait`),
        then consume until ``stop`` is set."""
        if not self.consumer.subscription():
            await_topics(self.consumer.config["bootstrap_servers"], self._topic_names(), stop)
            self.subscribe()
        while not stop.is_set():
            self.poll_once()

    def poll_once(self, timeout_ms: int = 500) -> int:
        """One poll: handle every record, commit, update lag; returns the records handled."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        if self.consumer.assignment():
            self.ready.set()
        handled = 0
        for records in batches.values():
            for record in records:
                alerts = self.handle(record)
                if alerts:
                    self._trace(record, alerts)
                self.enqueue(alerts)
                handled += 1
        if handled:
            self.consumer.commit()
        self._measure_lag()
        return handled

    def handle(self, record: Any) -> list[Alert]:
        """The alerts one consumed record raises."""
        source = Source(record.topic, record.partition, record.offset)
        self.telemetry.consumed.add(1, {"topic": record.topic})
        headers = {k: v for k, v in (record.headers or []) if isinstance(v, bytes)}
        t = self.topics
        if record.topic == t.dlq:
            return [dead_letter(headers, source)]
        try:
            event = self.registry.decode(record.value)
        except DecodeError:
            self.telemetry.skipped.add(1, {"topic": record.topic, "reason": "undecodable"})
            log.warning(
                "record %s:%d:%d does not decode; skipped",
                record.topic,
                record.partition,
                record.offset,
            )
            return []
        if record.topic == t.orders:
            return (
                self.classifier.order(event, source) if isinstance(event, OrderRegistered) else []
            )
        if not isinstance(event, TransferRequested):
            self.telemetry.skipped.add(1, {"topic": record.topic, "reason": "not_a_transfer"})
            return []
        summary = guard_summary(headers)
        if summary.duplicate:
            self.telemetry.skipped.add(1, {"topic": record.topic, "reason": "duplicate"})
            return []
        if record.topic == t.blocked:
            return self.classifier.blocked(event, summary, source)
        return self.classifier.approved(event, summary, source)

    def _trace(self, record: Any, alerts: list[Alert]) -> None:
        self.tracer.start_span(
            "sharing_guard.alerts.raise",
            context=trace_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "sharing_guard.alert_kinds": [alert.kind.value for alert in alerts],
                "sharing_guard.alert_ids": [alert.alert_id for alert in alerts],
            },
        ).end()

    def enqueue(self, alerts: list[Alert]) -> None:
        """Queue the alerts; count and log any dropped to make room."""
        now = self.clock()
        for alert in alerts:
            self.telemetry.raised.add(1, {"kind": alert.kind.value})
            dropped = self.queue.put(Queued(alert, now))
            if dropped is not None:
                kind = dropped.alert.kind.value
                self.telemetry.dropped.add(1, {"kind": kind, "reason": "queue_full"})
                log.warning("alert queue full: dropped the oldest, %s", dropped.alert.alert_id)

    def _measure_lag(self) -> None:
        for tp in list(self.consumer.assignment()):
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            position = self.consumer.position(tp)
            if position is not None:
                self.telemetry.lag[(tp.topic, tp.partition)] = max(0, end - position)
