"""Kafka adapters of the order service (kafka-python).

* :class:`Follower` — a consumer thread that reads ``legal.orders`` (the order events,
  including the service's own) and ``sharing.decisions`` (the guard's decisions; those
  that name an order count as its disclosures or refusals) and applies each poll to the
  :class:`~sharing_guard.orders.store.OrderStore` together with the next offsets, in one
  transaction. It uses no consumer group: it assigns every partition itself and resumes
  from the stored offsets (from the beginning on a fresh store). It is *loaded* once it
  reached the end offsets it saw at start.
* :class:`OrderPublisher` — publishes an order event (Avro, ``acks=all``, key
  ``order_ref``) and waits until the follower applied it (read-your-writes).
"""

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError

from sharing_guard.client import TransferClient
from sharing_guard.codec import CodecRegistry, DecodeError
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.events import OrderApproved, OrderRegistered, OrderRevoked
from sharing_guard.orders.model import OrderEvent
from sharing_guard.orders.service import TooLargeError, UnavailableError
from sharing_guard.orders.store import OrderStore
from sharing_guard.settings import Topics

log = logging.getLogger(__name__)


class Follower:
    """Keeps the store up to date with the order and decision topics."""

    def __init__(
        self,
        bootstrap_servers: str,
        orders_topic: str,
        decisions_topic: str,
        *,
        store: OrderStore,
        registry: CodecRegistry,
        poll_timeout_ms: int = 200,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.orders_topic = orders_topic
        self.decisions_topic = decisions_topic
        self.store = store
        self.registry = registry
        self.poll_timeout_ms = poll_timeout_ms
        self.loaded = threading.Event()
        self.skipped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the consumer thread."""
        self._thread = threading.Thread(target=self._run, name="orders-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the consumer thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:
                log.exception("order follower failed; restarting in 2 s")
                self._stop.wait(2.0)

    def _partitions(self, consumer: Any) -> list[TopicPartition]:
        while not self._stop.is_set():
            found: list[TopicPartition] = []
            for topic in (self.orders_topic, self.decisions_topic):
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    break
                found.extend(TopicPartition(topic, p) for p in sorted(parts))
            else:
                return found
            log.warning("waiting for topics %s and %s", self.orders_topic, self.decisions_topic)
            self._stop.wait(1.0)
        return []

    def _follow(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers.split(","),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=2000,
        )
        try:
            tps = self._partitions(consumer)
            if not tps:
                return
            consumer.assign(tps)
            stored = self.store.offsets()
            for tp in tps:
                offset = stored.get((tp.topic, tp.partition))
                if offset is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
            targets = consumer.end_offsets(tps)
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self.poll_timeout_ms)
                self._apply(batches.items())
                if not self.loaded.is_set() and all(
                    consumer.position(tp) >= end for tp, end in targets.items()
                ):
                    log.info("order state loaded")
                    self.loaded.set()
        finally:
            consumer.close()

    def _apply(self, batches: Iterable[tuple[Any, list[Any]]]) -> None:
        events: list[OrderEvent] = []
        decisions: list[tuple[Decision, datetime]] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, records in batches:
            for record in records:
                offsets[(tp.topic, tp.partition)] = record.offset + 1
                try:
                    value = self.registry.decode(record.value)
                except DecodeError as exc:
                    self._skip(record, str(exc))
                    continue
                if tp.topic == self.orders_topic:
                    if isinstance(value, OrderRegistered | OrderApproved | OrderRevoked):
                        events.append(value)
                    else:
                        self._skip(record, f"{type(value).__name__} is not an order event")
                elif isinstance(value, Decision):
                    if value.order_ref is not None:
                        at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                        decisions.append((value, at))
                else:
                    self._skip(record, f"{type(value).__name__} is not a decision")
        if offsets:
            self.store.apply(events, decisions, offsets)

    def _skip(self, record: Any, reason: str) -> None:
        self.skipped += 1
        log.warning(
            "skipped record %s/%s@%s: %s", record.topic, record.partition, record.offset, reason
        )


class OrderPublisher:
    """Publishes order events and waits until they are applied to the store."""

    def __init__(
        self,
        bootstrap_servers: str,
        orders_topic: str,
        *,
        store: OrderStore,
        registry: CodecRegistry,
        ack_timeout_s: float,
        apply_timeout_s: float,
        max_record_bytes: int = 1_048_576,
    ) -> None:
        self.client = TransferClient(
            bootstrap_servers,
            topics=Topics(orders=orders_topic),
            registry=registry,
            timeout_s=ack_timeout_s,
            max_request_size=max_record_bytes,
        )
        self.max_record_bytes = max_record_bytes
        self.orders_topic = orders_topic
        self.store = store
        self.apply_timeout_s = apply_timeout_s

    def __call__(self, event: OrderEvent) -> bool:
        """Publish ``event`` (acks=all) and wait for it to be applied; False on timeout."""
        started = time.monotonic()
        try:
            metadata = self.client.publish(event)
        except MessageSizeTooLargeError as exc:  # before sending (the producer's limit) or
            raise TooLargeError(  # from the broker (a topic's max.message.bytes, lower still)
                f"the {event.type} event is too large for one broker record (at most "
                f"{self.max_record_bytes} bytes here, a topic may take fewer); nothing was "
                "changed (name fewer accounts)"
            ) from exc
        except KafkaError as exc:
            raise UnavailableError(
                f"Kafka did not acknowledge the {event.type} event ({type(exc).__name__}); "
                f"show order {event.order_ref} before retrying"
            ) from exc
        left = max(0.0, self.apply_timeout_s - (time.monotonic() - started))
        return self.store.wait_applied((metadata.topic, metadata.partition), metadata.offset, left)

    def connected(self) -> bool:
        """True while the producer holds a connection to a broker.

        kafka-python's ``bootstrap_connected()`` is only true during the bootstrap itself,
        so this reads the producer's own ``connection-count`` metric (its metadata refresh,
        every 5 minutes, keeps a connection open between sends).
        """
        metrics = self.client.producer.metrics().get("producer-metrics", {})
        return bool(metrics.get("connection-count", 0) > 0)

    def close(self) -> None:
        """Flush and close the producer."""
        self.client.close()
