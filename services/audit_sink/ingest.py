"""The Kafka ingest: drains ``governance.audit`` into the log, exactly once per record.

A :class:`Ingestor` reads the audit topic with a kafka-python ``KafkaConsumer`` in a
consumer group, with ``enable_auto_commit=False``, and loops:

1. **poll** a batch (at most ``max_poll_records`` records, from any assigned partitions);
2. **append** it with :meth:`audit_sink.writer.AuditLog.append_batch`, which stores the
   entries *and* the consumed positions (the next offset of each partition) in one
   database transaction, and signs a checkpoint per the writer's policy;
3. only then **commit** the offsets to Kafka (asynchronously: they are informational).

With a :class:`~audit_sink.prepare.PreparePool` (``AUDIT_SINK_PREPARE_IN_HELPER``, on by
default in ``audit-sink ingest``), the database-free part of appending a batch (decoding,
MACs, canonical texts) runs in a helper process while the previous batch is stored: one
batch is held between two polls, appended before the next one or at a stop; a rebalance
drops it (it is read again from the stored positions). It is not stored until appended,
like any batch.

The database, not Kafka's committed offsets, is the truth: when partitions are assigned (at
start and after every rebalance, through a ``ConsumerRebalanceListener``) each is sought to
the position stored in the database (:meth:`~audit_sink.writer.AuditLog.committed_positions`),
or to its beginning if the log never consumed from it. A crash anywhere (even SIGKILL in the
middle of a transaction) therefore loses nothing and duplicates nothing: either the batch
and its positions committed, and the restarted sink resumes after it, or neither did, and
the batch is read again. Should Kafka deliver a record twice anyway (another sink of the
group, a stale seek), the writer skips it: every consumed position is remembered, and a
decision is recognised by its ``audit_id``. A record that does not decode is still kept, as
an anomaly entry with its bytes sealed (see :mod:`audit_sink.plan`).

With a sharded trail (:class:`~audit_sink.trail.TrailWriter`, ``AUDIT_SINK_SHARDING=
partition``) each batch is appended partition by partition, each part to that partition's
shard with that partition's position, and several sinks share one group, each writing the
shards of the partitions it owns; a sink that takes a partition over seeks it to the
position stored in its shard.

When no record arrives for ``idle_checkpoint_ms`` and entries are unsigned (only possible
with ``checkpoint_each_batch`` off), a checkpoint is signed. A stop request (SIGTERM or
SIGINT in ``audit-sink ingest``) is honoured between batches: the batch in hand is
appended, the offsets committed synchronously, the unsigned entries signed, the consumer
closed.

Logs and statistics carry counts, indices and Kafka positions only: never a record's
content, an account or an event. With a tracer, each record that carries a trace context
gets a span around its append (:mod:`audit_sink.spans`). The counters, :attr:`Ingestor.lag`
and the time of the last checkpoint are read by the metrics listener
(:mod:`audit_sink.ingest_metrics`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.structs import OffsetAndMetadata
from opentelemetry.context import Context
from opentelemetry.trace import Tracer
from sharing_guard.topic_wait import await_topics, topics_exist

from audit_sink.plan import ConsumedRecord
from audit_sink.prepare import Prepared, PreparePool
from audit_sink.settings import AuditSinkSettings
from audit_sink.spans import AppendSpans, trace_ids
from audit_sink.store import Position, StoreError
from audit_sink.trail import TrailWriter
from audit_sink.writer import AppendResult, AuditLog

__all__ = ["IngestStats", "Ingestor", "kafka_consumer"]

_log = logging.getLogger(__name__)
REJOIN_AFTER_S = 5.0
"""How long the sink stays without partitions of a topic that has some before rejoining."""


@dataclass(frozen=True)
class _Polled:
    """A polled batch: its records, the positions and offsets after it, its preparation,
    the trace context of its records that carry one."""

    batch: list[ConsumedRecord]
    positions: dict[tuple[str, int], int]
    offsets: dict[Any, Any]
    prepared: Future[list[Prepared]] | None
    traced: dict[Position, Context] = field(default_factory=dict)
    trace_ids: dict[Position, str] = field(default_factory=dict)


@dataclass
class IngestStats:
    """Counters of one ingest run (no personal data: counts only)."""

    batches: int = 0
    consumed: int = 0
    appended: int = 0
    anomalies: int = 0
    skipped: int = 0
    checkpoints: int = 0
    rebalances: int = 0
    rejoins: int = 0
    commit_failures: int = 0
    size: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict (for a log line or a metrics exporter)."""
        return asdict(self)


def kafka_consumer(settings: AuditSinkSettings) -> Any:
    """A ``KafkaConsumer`` of the sink's group, not yet subscribed, auto-commit off."""
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "group_id": kafka.group_id,
        "client_id": kafka.client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": kafka.max_poll_records,
        "max_partition_fetch_bytes": kafka.max_partition_fetch_bytes,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": max(100, kafka.session_timeout_ms // 3),
        "metadata_max_age_ms": kafka.metadata_max_age_ms,
        "isolation_level": kafka.isolation_level,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.group_instance_id:
        config["group_instance_id"] = kafka.group_instance_id
    return KafkaConsumer(**config)


class _SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks every newly assigned partition to the position stored in the log's database."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        """The batch in hand, not stored yet, is dropped (read again after the rebalance)."""
        self._ingestor.partitions_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        """Resume each partition where the database says (the truth), not where Kafka says."""
        self._ingestor.partitions_assigned(list(assigned))


class Ingestor:
    """One consumer feeding one :class:`~audit_sink.writer.AuditLog`, or the shards of a
    :class:`~audit_sink.trail.TrailWriter` (one log per partition); see the module doc."""

    def __init__(
        self,
        log: AuditLog | TrailWriter,
        consumer: Any,
        topic: str,
        *,
        poll_timeout_ms: int = 500,
        max_poll_records: int | None = None,
        idle_checkpoint_s: float = 5.0,
        stats_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        preparer: PreparePool | None = None,
        tracer: Tracer | None = None,
        sole_member: bool = True,
    ) -> None:
        """Wire the writer and an unsubscribed consumer (auto-commit off) of ``topic``.

        With a ``preparer`` (whose index key and decoding are the writer's), each batch is
        prepared in its helper process while the previous one is appended. With a
        ``tracer``, appends of traced records get spans. ``sole_member=False`` (a sharded
        trail, several sinks in the group) rejoins after an empty assignment only if some
        partition is held by no member of the group.
        """
        self._log = log
        self._consumer = consumer
        self._topic = topic
        self._poll_timeout_ms = poll_timeout_ms
        self._max_poll_records = max_poll_records
        self._idle_checkpoint_s = idle_checkpoint_s
        self._stats_every_s = stats_every_s
        self._clock = clock
        self._unsigned = True  # unknown at start: an idle checkpoint costs nothing if none
        self._last_records = clock()
        self._last_stats = clock()
        self._pending_commit: dict[Any, Any] = {}
        self._preparer = preparer
        self._sole_member = sole_member
        self._traces_refused = False
        self._in_hand: _Polled | None = None
        self._spans = None if tracer is None else AppendSpans(tracer)
        self._empty_since: float | None = None
        self._stored: dict[tuple[str, int], int] = {}  # next offsets the log holds
        self.stats = IngestStats()
        # Read by the metrics listener (audit_sink.ingest_metrics), from another thread:
        self.lag: dict[tuple[str, int], int] = {}  # records behind each partition's end
        self.checkpoint_signed_at: float | None = None  # time.time() of the last signature

    # -- the group -----------------------------------------------------------------------

    def _rejoin_if_left_empty(self, now: float) -> None:
        """Join the group again when a rebalance left the sink (its group's only writer)
        no partition for ``REJOIN_AFTER_S`` while the topic has some: kafka-python's
        leader assigned from metadata that did not list them yet, and no rebalance
        followed (seen in CI). Checked at most every ``REJOIN_AFTER_S``. Several sinks
        sharing a sharded trail may hold no partition rightly (more sinks than partitions):
        they rejoin only when some partition is held by no member."""
        if self.stats.rebalances == 0 or self._consumer.assignment():
            self._empty_since = None
            return
        if self._empty_since is None:
            self._empty_since = now
            return
        if now - self._empty_since < REJOIN_AFTER_S:
            return
        self._empty_since = now
        config = self._consumer.config
        if not self._sole_member and not self._unowned_partitions():
            return  # other sinks of the group hold every partition: nothing is left over
        if topics_exist(
            config["bootstrap_servers"],
            [self._topic],
            security_protocol=config["security_protocol"],
        ):
            _log.warning(
                "no partition of %s assigned although it has some; joining again", self._topic
            )
            self.stats.rejoins += 1
            self._consumer.unsubscribe()
            self.subscribe()

    def _unowned_partitions(self) -> set[int]:
        """The partitions of the topic that no member of the group holds (by the group's
        description from its coordinator); empty when that cannot be read."""
        from kafka.admin import KafkaAdminClient

        config = self._consumer.config
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=config["bootstrap_servers"],
                security_protocol=config["security_protocol"],
            )
            try:
                groups = admin.describe_groups([config["group_id"]])
            finally:
                admin.close()
        except Exception as exc:  # the check is advisory: try again after the next wait
            _log.info("cannot describe the group (%s)", type(exc).__name__)
            return set()
        owned: set[int] = set()
        for member in groups.get(config["group_id"], {}).get("members", []):
            assignment = member.get("member_assignment") or {}
            for part in assignment.get("assigned_partitions", []):
                if part.get("topic") == self._topic:
                    owned.update(part.get("partitions", []))
        return set(partitions) - owned

    def subscribe(self) -> None:
        """Join the group on the audit topic, seeking on every assignment."""
        self._consumer.subscribe([self._topic], listener=_SeekToStoredPositions(self))

    def partitions_assigned(self, assigned: list[Any]) -> None:
        """Seek each assigned partition to its stored position (or its beginning)."""
        self.stats.rebalances += 1
        if isinstance(self._log, TrailWriter):
            stored = self._log.positions_for([(tp.topic, tp.partition) for tp in assigned])
        else:
            stored = self._log.committed_positions()
        self._stored.update(stored)
        fresh = []
        for tp in assigned:
            position = stored.get((tp.topic, tp.partition))
            if position is None:
                fresh.append(tp)
            else:
                self._consumer.seek(tp, position)
        if fresh:
            self._consumer.seek_to_beginning(*fresh)
        _log.info(
            "assigned partitions %s; resuming from the stored positions (%d new)",
            sorted(tp.partition for tp in assigned),
            len(fresh),
        )

    def partitions_revoked(self, revoked: list[Any]) -> None:
        """Drop the batch in hand (nothing of it is stored: whoever is assigned its
        partitions next reads it again from the stored positions), then forget the offsets
        not yet committed to Kafka for revoked partitions.

        Not appended here: kafka-python 3 calls the listener from its network thread, where
        the SQLite key and heads stores (bound to the thread that opened them) cannot be
        used. A partition of the batch that is not revoked is sought back to the batch's
        first record of it (with the default, eager, assignors every partition is revoked
        and then sought to its stored position on assignment)."""
        in_hand, self._in_hand = self._in_hand, None
        if in_hand is not None:
            gone = {(tp.topic, tp.partition) for tp in revoked}
            kept = {(tp.topic, tp.partition): tp for tp in in_hand.offsets}
            first: dict[Any, int] = {}
            for record in in_hand.batch:
                first.setdefault(kept[(record.topic, record.partition)], record.offset)
            for tp, offset in first.items():
                if (tp.topic, tp.partition) not in gone:
                    self._consumer.seek(tp, offset)
            _log.info("dropped the batch in hand (%d records) at a rebalance", len(in_hand.batch))
        for tp in revoked:
            self._pending_commit.pop(tp, None)

    # -- the loop ------------------------------------------------------------------------

    def poll_once(self) -> AppendResult | None:
        """Poll one batch and append it (or, with a preparer, append the batch in hand while
        this one is prepared); commit the appended offsets. ``None`` when nothing was
        appended."""
        polled: Mapping[Any, list[Any]] = self._consumer.poll(
            timeout_ms=0 if self._in_hand is not None else self._poll_timeout_ms,
            max_records=self._max_poll_records,
        )
        batch: list[ConsumedRecord] = []
        positions: dict[tuple[str, int], int] = {}
        offsets: dict[Any, Any] = {}
        traced: dict[Position, Context] = {}
        traces: dict[Position, str] = {}
        for tp, messages in polled.items():
            if not messages:
                continue
            batch.extend(ConsumedRecord(m.topic, m.partition, m.offset, m.value) for m in messages)
            traces.update(trace_ids(messages))
            if self._spans is not None:
                traced.update(self._spans.contexts(messages))
            following = messages[-1].offset + 1
            positions[(tp.topic, tp.partition)] = following
            offsets[tp] = OffsetAndMetadata(following, "", -1)
        polled_now = None
        if batch:
            prepared = None
            if self._preparer is not None:
                prepared = self._preparer.submit([m.value for m in batch])
            polled_now = _Polled(batch, positions, offsets, prepared, traced, traces)
        if self._preparer is None:
            self._in_hand = polled_now
            return self.flush()
        result = self.flush()
        self._in_hand = polled_now
        return result

    def flush(self) -> AppendResult | None:
        """Append the batch in hand, if any, and commit its offsets to Kafka."""
        in_hand, self._in_hand = self._in_hand, None
        if in_hand is None:
            return None
        prepared = None if in_hand.prepared is None else in_hand.prepared.result()
        started_ns = time.time_ns()
        result = self._log.append_batch(in_hand.batch, in_hand.positions, prepared)
        self._stored.update(in_hand.positions)
        if in_hand.trace_ids:
            self._remember_traces(result, in_hand.trace_ids)
        if self._spans is not None and in_hand.traced:
            self._spans.record(in_hand.traced, result, started_ns)
        self._pending_commit.update(in_hand.offsets)
        self._commit_async()
        self._count(result, len(in_hand.batch))
        return result

    def _remember_traces(self, result: AppendResult, traces: Mapping[Position, str]) -> None:
        """Store the trace id of each appended entry whose record carried one (after the
        append, in a transaction of its own: operational metadata, not evidence). A store
        that cannot keep them (a PostgreSQL schema from before the table) is logged once."""
        by_partition: dict[int, dict[int, str]] = {}
        for entry in result.appended:
            source = entry.source
            if source is not None:
                trace_id = traces.get((source.topic, source.partition, source.offset))
                if trace_id is not None:
                    by_partition.setdefault(source.partition, {})[entry.index] = trace_id
        for partition, found in by_partition.items():
            log = self._log.shard(partition) if isinstance(self._log, TrailWriter) else self._log
            try:
                log.store.add_traces(found)
            except StoreError as exc:
                if not self._traces_refused:
                    self._traces_refused = True
                    _log.warning("trace ids not kept: %s", exc)

    def _count(self, result: AppendResult, consumed: int) -> None:
        stats = self.stats
        stats.batches += 1
        stats.consumed += consumed
        stats.appended += len(result.appended)
        stats.skipped += len(result.skipped)
        stats.size = result.size
        for entry in result.appended:
            if entry.anomaly is not None:
                stats.anomalies += 1
                source = entry.source
                _log.warning(
                    "anomaly %s logged as entry %d (partition %s, offset %s)",
                    entry.anomaly.value,
                    entry.index,
                    None if source is None else source.partition,
                    None if source is None else source.offset,
                )
        if result.checkpoint is not None:
            stats.checkpoints += 1
            self.checkpoint_signed_at = time.time()
            self._unsigned = False
        elif result.appended:
            self._unsigned = True
        if not result.archived:
            _log.error("checkpoint not archived yet; the next batch retries")
        self._last_records = self._clock()

    def _commit_async(self) -> None:
        offsets = dict(self._pending_commit)

        def done(_offsets: Any, response: Any) -> None:
            if isinstance(response, Exception):
                self.stats.commit_failures += 1
                _log.info(
                    "Kafka offset commit failed (%s); the database holds the positions",
                    type(response).__name__,
                )
            else:
                for tp, offset in offsets.items():
                    if self._pending_commit.get(tp) == offset:
                        del self._pending_commit[tp]

        self._consumer.commit_async(offsets=offsets, callback=done)

    def commit(self) -> None:
        """Commit the offsets not yet committed, synchronously (best effort)."""
        if not self._pending_commit:
            return
        try:
            self._consumer.commit(offsets=dict(self._pending_commit))
        except Exception as exc:  # the database holds the truth; Kafka's copy may lag
            self.stats.commit_failures += 1
            _log.info(
                "Kafka offset commit failed (%s); the database holds the positions",
                type(exc).__name__,
            )
        else:
            self._pending_commit.clear()

    def sign_if_unsigned(self) -> None:
        """Sign a checkpoint if entries are unsigned (the writer checks under its lock)."""
        if self._unsigned:
            if self._log.checkpoint() is not None:
                self.stats.checkpoints += 1
                self.checkpoint_signed_at = time.time()
            self._unsigned = False

    def measure_lag(self) -> None:
        """Set :attr:`lag`: for each assigned partition, its end offset as the consumer last
        saw it (the high-water mark of its fetch responses: no request is made) minus the
        next offset the log stored for it. A partition whose end is not known yet, or that
        has records but no position in the log yet, is left out until its first batch."""
        lag: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            key = (tp.topic, tp.partition)
            stored = self._stored.get(key, 0 if end == 0 else None)
            if end is not None and stored is not None:
                lag[key] = max(0, end - stored)
        self.lag = lag

    def at_end(self) -> bool:
        """Whether every assigned partition has been consumed up to its end offset."""
        assignment = self._consumer.assignment()
        if not assignment or self._in_hand is not None:
            return False
        ends = self._consumer.end_offsets(list(assignment))
        return all(self._consumer.position(tp) >= ends[tp] for tp in assignment)

    def run(self, stop: threading.Event, *, stop_at_end: bool = False) -> IngestStats:
        """Ingest until ``stop`` is set (or, with ``stop_at_end``, the topic is drained).

        The batch in hand is always finished; then the offsets are committed, the unsigned
        entries signed and the consumer closed.
        """
        # Join only once the topic has partitions (see sharing_guard.topic_wait).
        await_topics(
            self._consumer.config["bootstrap_servers"],
            [self._topic],
            stop,
            security_protocol=self._consumer.config["security_protocol"],
        )
        self.subscribe()
        try:
            while not stop.is_set():
                result = self.poll_once()
                self.measure_lag()
                now = self._clock()
                self._rejoin_if_left_empty(now)
                if result is None:
                    if now - self._last_records >= self._idle_checkpoint_s:
                        self.sign_if_unsigned()
                    if stop_at_end and self.at_end():
                        break
                if now - self._last_stats >= self._stats_every_s:
                    self._last_stats = now
                    _log.info("ingest statistics %s", self.stats.as_dict())
            self.flush()
            self.commit()
            self.sign_if_unsigned()
        finally:
            self._consumer.close(autocommit=False)
        _log.info("ingest stopped %s", self.stats.as_dict())
        return self.stats
