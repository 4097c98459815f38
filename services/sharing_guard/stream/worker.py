"""The sharing guard as a Faust application: the composition of topics, tables and agents.

Agents (one task each, all in every worker process):

* ``account-state`` consumes ``governance.consents`` and ``governance.subject-rights``
  and keeps the ``consents`` and ``rights`` tables. These topics are co-partitioned with
  ``sharing.transfers.requested`` (same key, same partition count), so the worker that
  decides an account's transfers also holds that account's state.
* ``recipients-state`` keeps the global ``recipients`` table (every worker has all).
* ``transfers`` decides transfers in batches: it reads the end offsets of the state
  partitions after receiving a batch (or reuses a reading taken after the batch's records
  were in the log) and waits until ``account-state`` has applied everything below them
  (see :mod:`sharing_guard.stream.catchup` and docs/ordering.md).
  A law-enforcement transfer that names an order is forwarded, with a snapshot of its
  account's facts, to ``sharing.order-requests``.
* ``orders-state`` and ``order-requests`` share the single partition of ``legal.orders``
  and ``sharing.order-requests``: one worker at a time owns every order, so the last
  disclosure of an order can be spent only once.

Every decision is stored (idempotency by ``event_id``) and acknowledged by the broker in
its changelog before it is published to ``sharing.decisions``, routed to
``.approved``/``.blocked`` and written to ``governance.audit``. A redelivered transfer gets
the stored decision again, marked ``guard.duplicate: 1``. Records that cannot be decoded
go to the dead-letter topic.

Offsets are committed through a :class:`~sharing_guard.stream.commit_gate.CommitGate`:
never past a record that was not processed or whose outputs the broker has not
acknowledged; records Faust skipped are read back and processed (see docs/ordering.md).
"""

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust

from sharing_guard.audit_trail import audit_avro_record
from sharing_guard.codec import CodecRegistry, DecodeError, decision_record
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Outcome, RecipientType
from sharing_guard.contract.events import (
    ConsentChanged,
    EventBase,
    GovernanceEvent,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
)
from sharing_guard.core.engine import Facts, evaluate, gather_facts, guard_error
from sharing_guard.core.policy import Policy
from sharing_guard.core.state import StateTable, state_change, with_disclosure
from sharing_guard.settings import GuardSettings
from sharing_guard.stream import diagnostics
from sharing_guard.stream.catchup import CatchUp, Partition
from sharing_guard.stream.commit_gate import CommitGate, Span, Sweep
from sharing_guard.stream.end_offsets import EndOffsets, RangeReader, StateEnds
from sharing_guard.stream.kafka_io import (
    Headers,
    TableStateView,
    aiokafka_producer,
    dead_letter_headers,
    decision_headers,
    encode_optional,
    header_list,
    table_write,
    without_producer_yields,
)
from sharing_guard.stream.outbox import Outbox
from sharing_guard.stream.state_codec import (
    decode_decision,
    decode_state,
    encode_decision,
    encode_state,
)
from sharing_guard.stream.telemetry import Telemetry

log = logging.getLogger(__name__)
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
FACTS_HEADER = "guard.facts"
ACK_PATIENCE_S = 10.0
SWEEP_INTERVAL_S = 1.0
"""How often a worker looks for records Faust fetched but did not deliver (``_sweep``)."""
CATCH_UP_GRACE_S = 0.25
"""How long a batch waits for state to arrive through Faust before reading it back."""
SWEEP_MAX_RECORDS = 5_000
"""The most offsets of one partition a sweep reads back at a time."""


def faust_app(settings: GuardSettings) -> faust.App:
    """The Faust app of a guard worker: raw-bytes topics, acks from all replicas, the
    session and web settings of ``settings``, and the producer without per-send yields.
    The decode-and-forward baseline of the benchmarks is built on the same app."""
    app = faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{h}" for h in settings.bootstrap_servers.split(",")),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.account_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
        broker_rebalance_timeout=max(30.0, settings.session_timeout_s * 3),
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        loghandlers=[],
    )
    without_producer_yields(app)
    return app


@dataclass(frozen=True, slots=True)
class Pending:
    """A decoded transfer waiting in a batch, with where it came from."""

    transfer: TransferRequested
    raw: bytes
    headers: Headers
    partition: int
    timestamp_ms: float | None
    received_ns: int


Process = Callable[[Sequence[Any]], Awaitable[list[Any]]]


@dataclass(frozen=True, slots=True)
class Lane:
    """How the records of a gated input topic are processed: by ``process``, one call at
    a time under ``lock`` (the agent's own calls and the sweep's), and, with ``wait``,
    only done once every output is acknowledged."""

    process: Process
    wait: bool
    lock: asyncio.Lock


class GuardWorker:
    """Builds the Faust app; ``app`` is what a worker runs."""

    def __init__(
        self,
        settings: GuardSettings,
        policy: Policy,
        registry: CodecRegistry,
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.registry = registry
        self.audit_codec = registry.codec("AuditRecord")
        self.decision_codec = registry.codec("Decision")
        self.telemetry = telemetry
        self.catchup = CatchUp()
        self.end_offsets = EndOffsets(settings.bootstrap_servers)
        self.state_ends = StateEnds(self.end_offsets)
        self.gate = CommitGate()
        self.reader = RangeReader(settings.bootstrap_servers)
        self.started = False
        self._dump_installed = False
        t = settings.topics
        n = settings.account_partitions
        self.app = faust_app(settings)
        app = self.app
        self.transfers_topic = app.topic(t.transfers, partitions=n, **RAW)
        self.account_state_topic = app.topic(t.consents, t.rights, **RAW)
        self.recipients_topic = app.topic(t.recipients, partitions=1, **RAW)
        self.orders_topic = app.topic(t.orders, partitions=1, **RAW)
        self.order_requests_topic = app.topic(t.order_requests, partitions=1, **RAW)

        # Faust picks a table's serializers from key_type/value_type: str keys as JSON,
        # bytes values raw (our own encoding, see state_codec).
        def table(name: str, partitions: int) -> Any:
            return app.Table(name, partitions=partitions, key_type=str, value_type=bytes)

        self.tables: dict[StateTable, Any] = {
            StateTable.CONSENTS: table("consents", n),
            StateTable.RIGHTS: table("rights", n),
            StateTable.ORDERS: table("orders", 1),
            StateTable.RECIPIENTS: app.GlobalTable(
                "recipients", partitions=1, key_type=str, value_type=bytes
            ),
        }
        self.account_seen = table("account-seen", n)
        self.recipients_seen = table("recipients-seen", 1)
        self.orders_seen = table("orders-seen", 1)
        self.decisions = table("decisions", n)
        self.order_decisions = table("order-decisions", 1)
        self.view = TableStateView(self.tables)

        app.agent(self.account_state_topic, name="account-state")(self._account_state)
        app.agent(self.recipients_topic, name="recipients-state")(self._recipients_state)
        app.agent(self.orders_topic, name="orders-state")(self._orders_state)
        app.agent(self.transfers_topic, name="transfers")(self._transfers)
        app.agent(self.order_requests_topic, name="order-requests")(self._order_requests)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        account = Lane(
            self._state_applier((ConsentChanged, SubjectRightsChanged), self.account_seen),
            wait=False,
            lock=asyncio.Lock(),
        )
        self.lanes: dict[str, Lane] = {
            t.consents: account,
            t.rights: account,
            t.recipients: Lane(
                self._state_applier(
                    (RecipientRegistered, RecipientDeregistered), self.recipients_seen
                ),
                wait=False,
                lock=asyncio.Lock(),
            ),
            t.orders: Lane(
                self._state_applier(
                    (OrderRegistered, OrderApproved, OrderRevoked), self.orders_seen
                ),
                wait=False,
                lock=asyncio.Lock(),
            ),
            t.transfers: Lane(self._decide_batch, wait=True, lock=asyncio.Lock()),
            t.order_requests: Lane(self._decide_order_batch, wait=True, lock=asyncio.Lock()),
        }
        self.sweep = Sweep()
        app.timer(interval=5.0)(self._measure_lag)
        app.timer(interval=SWEEP_INTERVAL_S)(self._sweep)
        self._add_web_views()

    # --- state agents -------------------------------------------------------------------

    async def _account_state(self, stream: Any) -> None:
        await self._consume_state(stream, self.settings.topics.consents)

    async def _recipients_state(self, stream: Any) -> None:
        await self._consume_state(stream, self.settings.topics.recipients)

    async def _orders_state(self, stream: Any) -> None:
        await self._consume_state(stream, self.settings.topics.orders)

    async def _consume_state(self, stream: Any, topic: str) -> None:
        # State records are applied in batches as they come (a batch waits at most
        # ``batch_within_s`` to fill), their outputs produced together; their offsets
        # become committable once those are acknowledged (no waiting here).
        await self._in_batches(stream, self.lanes[topic])

    def _state_applier(self, accepted: tuple[type[EventBase], ...], seen: Any) -> Process:
        """What applies state records of the ``accepted`` types (once each, by event id
        in ``seen``), advancing the catch-up position of their partitions."""

        async def apply(events: Sequence[Any]) -> list[Any]:
            outbox = Outbox()
            for event in events:
                message = event.message
                decoded = self._decode(message, accepted, outbox)
                if decoded is not None and decoded.event_id not in seen:
                    self._apply(decoded, message.partition, outbox)
                    table_write(seen, message.partition, decoded.event_id, b"1", outbox)
                    self._audit(outbox, decoded, None, header_list(message.headers))
                await self.catchup.advance(
                    Partition(message.topic, message.partition), message.offset + 1
                )
            return await self._send(outbox)

        return apply

    def _apply(self, event: GovernanceEvent, partition: int, changelog: Outbox) -> None:
        change = state_change(event)
        table = self.tables[change.table]
        raw = table.get(change.key)
        current = None if raw is None else decode_state(change.table, raw)
        record = change.advance(current)
        value = None if record is None else encode_state(record)
        # The global recipients table has one partition, like its topic.
        table_write(table, partition, change.key, value, changelog)

    async def _send(self, outbox: Outbox) -> list[Any]:
        """Produce what ``outbox`` holds; the futures of its record batches."""
        return await outbox.send(await aiokafka_producer(self.app))

    # --- transfers ------------------------------------------------------------------------

    async def _transfers(self, stream: Any) -> None:
        await self._in_batches(stream, self.lanes[self.settings.topics.transfers])

    async def _in_batches(self, stream: Any, lane: Lane) -> None:
        """Process batches of events through the lane and acknowledge each batch to Faust
        once processed (for a lane that waits, once its effects are durable).
        ``take_events`` acknowledges a batch even when a rebalance interrupts it (its
        events would then be lost); ``noack_take`` leaves that to us.
        """
        async for batch in stream.noack_take(
            self.settings.batch_max, within=self.settings.batch_within_s
        ):
            await self._gated(batch, lane)
            for event in batch:
                await stream.ack(event)

    async def _gated(
        self, events: Sequence[Any], lane: Lane, upto: Mapping[Partition, int] | None = None
    ) -> None:
        """Process ``events`` through the commit gate, under the lane's lock: first read
        back from the broker any record Faust did not deliver before them (and, for the
        partitions in ``upto``, every record up to the offset given), then process all in
        offset order; with ``lane.wait``, return only once every output is acknowledged
        (raising if one failed).

        Events of an earlier rebalance generation are dropped unprocessed: their
        partition's tables may be recovering or gone to another worker, and the consumer
        delivers them again from the committed offset, which never passed them. Events
        below the offset the gate expects next were processed already (read back by the
        sweep): they are dropped too.
        """
        async with lane.lock:
            generation = self.app.consumer_generation_id
            current = [e for e in events if e.message.generation_id == generation]
            if len(current) < len(events):
                log.info(
                    "dropped %d record(s) of an earlier generation", len(events) - len(current)
                )
            located = [(_partition(e), e) for e in current]
            await self._track({*(upto or {}), *(tp for tp, _ in located)})
            offsets: dict[Partition, list[int]] = {tp: [] for tp in upto or {}}
            fresh = []
            for tp, event in located:
                offset = event.message.offset
                if self.gate.tracking(tp) and offset < self.gate.expected(tp):
                    continue  # processed already (read back)
                fresh.append(event)
                offsets.setdefault(tp, []).append(offset)
            if len(fresh) < len(current):
                log.info("dropped %d record(s) processed already", len(current) - len(fresh))
            read_back: dict[Partition, list[Span]] = {}
            extra: list[Any] = []
            for tp, tp_offsets in offsets.items():
                read_back[tp] = []
                if not self.gate.tracking(tp):
                    continue
                reach = list(tp_offsets)
                if upto and tp in upto:  # a long tail is read in parts, one per sweep
                    reach.append(min(upto[tp], self.gate.expected(tp) + SWEEP_MAX_RECORDS))
                for hole in self.gate.holes(tp, reach):
                    records = await self._read_back(tp, hole)
                    if records is None:
                        break  # the commit waits at the hole; the next batch or sweep retries
                    extra.extend(records)
                    tp_offsets.extend(r.message.offset for r in records)
                    read_back[tp].append(hole)
            if not fresh and not extra:
                return
            ordered = sorted([*extra, *fresh], key=lambda e: (*_partition(e), e.message.offset))
            outputs = await lane.process(ordered)
            if lane.wait and outputs:
                await self._acknowledged(outputs)
                outputs = []
            if self.app.consumer_generation_id != generation:
                return  # a rebalance meanwhile: the new generation tracks from its own start
            for tp, tp_offsets in offsets.items():
                if self.gate.tracking(tp):
                    self.gate.processed(tp, tp_offsets, outputs, read_back[tp])

    async def _track(self, tps: Iterable[Partition]) -> None:
        """Start the gate on those of ``tps`` it does not track yet, from where the group
        resumes them (its committed offset); one that cannot be read now stays untracked
        (nothing of it is committed) and is retried with its next records."""
        for tp in tps:
            if self.gate.tracking(tp):
                continue
            try:
                start = await asyncio.wait_for(
                    self.reader.resume_offset(self.app.conf.id, tp),
                    self.settings.catch_up_timeout_s,
                )
            except Exception:
                log.exception("could not read where %s/%d resumes", tp.topic, tp.partition)
                continue
            self.gate.start(tp, start)

    async def _read_back(self, tp: Partition, hole: Span) -> list[Any] | None:
        """The records of ``tp`` in ``hole``, read from the broker; ``None`` (logged) when
        they cannot be read now."""
        timeout = self.settings.catch_up_timeout_s
        try:
            records: list[Any] = await asyncio.wait_for(
                self.reader.read(tp, hole.first, hole.end, timeout), 2 * timeout
            )
        except Exception:
            log.exception(
                "could not read back %s/%d at offsets %d..%d",
                tp.topic,
                tp.partition,
                hole.first,
                hole.end - 1,
            )
            return None
        log.warning(
            "read back %d record(s) of %s/%d at offsets %d..%d not delivered by Faust",
            len(records),
            tp.topic,
            tp.partition,
            hole.first,
            hole.end - 1,
        )
        self.telemetry.read_back.add(len(records), {"topic": tp.topic})
        return records

    async def _sweep(self) -> None:
        """Find records Faust fetched but never delivered, with nothing after them to
        reveal the hole: a gated partition whose consumer position is past the offset the
        gate expects next, while that offset has not moved since the previous sweep. Those
        records are read back and processed (:meth:`_fill`)."""
        if self.app.rebalancing or not self.app.started:
            return
        consumer = self.app.consumer
        ends: dict[Partition, int] = {}
        assigned = [tp for tp in consumer.assignment() if tp.topic in self.lanes]
        for faust_tp in assigned:
            tp = Partition(faust_tp.topic, faust_tp.partition)
            try:
                position = await asyncio.wait_for(consumer.position(faust_tp), 1.0)
            except Exception:  # a rebalance or reset under way; the next sweep looks again
                return
            expected = self.gate.expected(tp) if self.gate.tracking(tp) else None
            if self.sweep.stale(tp, position, expected):
                assert position is not None
                ends[tp] = position
        if ends:
            log.info(
                "sweep: reading back undelivered records of %s",
                ", ".join(f"{tp.topic}/{tp.partition} up to {end}" for tp, end in ends.items()),
            )
            await self._fill(ends)

    async def _acknowledged(self, futures: Sequence[Any]) -> None:
        """Wait until the broker acknowledged every record in ``futures``; raise the first
        failure. Every ``ACK_PATIENCE_S`` without progress, flush the producer and say so
        in the log (with a dump of the worker's tasks after a minute): a worker that
        waits is visible, and a record stuck in a buffer is pushed out."""
        pending = {f for f in futures if not f.done()}
        waited = 0.0
        while pending:
            _, still = await asyncio.wait(pending, timeout=ACK_PATIENCE_S)
            if still:
                waited += ACK_PATIENCE_S
                log.warning(
                    "%d output(s) not acknowledged after %.0f s; flushing the producer",
                    len(still),
                    waited,
                )
                if waited >= 60:
                    diagnostics.dump(self.app)
                await self.app.producer.flush()
            pending = still
        for future in futures:
            future.result()

    async def _decide_batch(self, batch: Sequence[Any]) -> list[Any]:
        t = self.settings.topics
        shared = self._owned([Partition(t.recipients, 0)])
        targets_for = {
            partition: [Partition(t.consents, partition), Partition(t.rights, partition), *shared]
            for partition in {event.message.partition for event in batch}
        }
        state = list(dict.fromkeys(tp for tps in targets_for.values() for tp in tps))
        # The state's end offsets are asked for now (after the batch arrived, so they
        # cover all state acknowledged before its transfers were produced), unless an
        # earlier reading covers the batch already, and the batch is decoded while the
        # broker answers.
        ends = self._state_ends(batch, state, shared)
        outbox = Outbox()
        pending = self._decode_transfers(batch, outbox)
        if not pending:  # dead letters only: the answer is not needed
            with contextlib.suppress(Exception):
                await ends
            return await self._send(outbox)
        caught_up = await self._catch_up(state, ends)
        decided: list[tuple[Pending, Decision, bool]] = []
        changelog = Outbox()
        for item in pending:
            transfer = item.transfer
            stored = self.decisions.get(transfer.event_id)
            if stored is not None:
                decided.append((item, decode_decision(stored), True))
                continue
            if not all(caught_up[tp] for tp in targets_for[item.partition]):
                decision = self._fault(transfer.event_id)
            elif (
                transfer.recipient.type is RecipientType.LAW_ENFORCEMENT
                and transfer.order_ref is not None
            ):
                self._forward_to_order_stage(item, outbox)
                continue
            else:
                decision = self._evaluate(transfer, partial(gather_facts, transfer, self.view))
            table_write(
                self.decisions,
                item.partition,
                transfer.event_id,
                encode_decision(decision),
                changelog,
            )
            decided.append((item, decision, False))
        return await self._publish(decided, changelog, outbox)

    def _state_ends(
        self, batch: Sequence[Any], state: list[Partition], shared: list[Partition]
    ) -> Awaitable[dict[Partition, int]]:
        """The end offsets of ``state`` for ``batch``: those of the last reading if it
        covers the batch (see :class:`StateEnds`), else from a new reading of the state
        of every transfers partition this worker owns, asked for now."""
        generation = self.app.consumer_generation_id
        inputs: dict[Partition, int] = {}
        for event in batch:
            message = event.message
            tp = Partition(message.topic, message.partition)
            inputs[tp] = max(inputs.get(tp, -1), message.offset)
        reused = self.state_ends.reuse(generation, inputs, state)
        if reused is not None:
            done: asyncio.Future[dict[Partition, int]] = asyncio.get_running_loop().create_future()
            done.set_result(reused)
            return done
        t = self.settings.topics
        consumer = self.app.consumer
        covers: dict[Partition, int] = {}
        every = list(state)
        for assigned in consumer.assignment():
            if assigned.topic != t.transfers:
                continue
            n = assigned.partition
            every += [Partition(t.consents, n), Partition(t.rights, n)]
            with contextlib.suppress(AssertionError, KeyError):  # unassigned meanwhile
                seen = consumer.highwater(assigned)
                if seen is not None:
                    covers[Partition(assigned.topic, n)] = seen
        every = list(dict.fromkeys([*every, *shared]))
        return asyncio.ensure_future(self.state_ends.read(generation, covers, every, state))

    def _owned(self, tps: list[Partition]) -> list[Partition]:
        """Those of ``tps`` assigned to this worker.

        Recipients live in one partition whose owner keeps the global table: the owner
        waits for it like for account state; other workers see registrations as soon as
        the global table's changelog reaches them (eventually, not in the ordering
        promise, which covers consents, rights and orders).
        """
        assigned = self._assigned()
        return [tp for tp in tps if tp in assigned]

    def _assigned(self) -> set[Partition]:
        """The partitions assigned to this worker now."""
        return {Partition(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}

    async def _catch_up(
        self, tps: list[Partition], ends: Awaitable[dict[Partition, int]] | None = None
    ) -> dict[Partition, bool]:
        """Wait until the state partitions are applied up to their current end offsets
        (``ends``, when they were asked for already)."""
        unique = list(dict.fromkeys(tps))
        assigned = self._assigned()
        for tp in unique:
            lane = self.lanes.get(tp.topic)
            if not self.gate.tracking(tp) and tp in assigned and lane and not lane.lock.locked():
                # Start the gate where the group resumes the partition, under its lane's
                # lock like the lane itself would (a busy lane tracks it itself).
                async with lane.lock:
                    await self._track([tp])
            if self.gate.tracking(tp):  # every record below it is applied
                await self.catchup.advance(tp, self.gate.expected(tp))
        started = time.perf_counter()
        targets = await (ends if ends is not None else self.end_offsets(unique))
        sampled = time.perf_counter()
        timeout = self.settings.catch_up_timeout_s
        if not await self.catchup.wait(targets, min(CATCH_UP_GRACE_S, timeout)):
            await self._fill_state(targets)
            remaining = timeout - (time.perf_counter() - sampled)
            await self.catchup.wait(targets, max(0.0, remaining))
        if log.isEnabledFor(logging.DEBUG):  # its arguments cost, at every batch
            log.debug(
                "catch-up: end offsets in %.1f ms, applied in %.1f ms: %s",
                (sampled - started) * 1000,
                (time.perf_counter() - sampled) * 1000,
                {
                    f"{tp.topic}/{tp.partition}": (end, self.catchup.position(tp))
                    for tp, end in targets.items()
                },
            )
        return {tp: self.catchup.reached({tp: end}) for tp, end in targets.items()}

    async def _fill_state(self, targets: Mapping[Partition, int]) -> None:
        """Read back and apply the state records below ``targets`` that Faust has not
        delivered yet (it may never: see :meth:`_sweep`), on the partitions this worker
        owns; every record below the offset the gate expects next counts as applied."""
        assigned = self._assigned()
        behind = {
            tp: end
            for tp, end in targets.items()
            if tp in assigned and tp.topic in self.lanes and not self.catchup.reached({tp: end})
        }
        if not behind:
            return
        log.info(
            "catch-up: reading back state below %s",
            ", ".join(f"{tp.topic}/{tp.partition}@{end}" for tp, end in behind.items()),
        )
        await self._fill(behind)
        for tp in behind:
            if self.gate.tracking(tp):
                await self.catchup.advance(tp, self.gate.expected(tp))

    async def _fill(self, ends: Mapping[Partition, int]) -> None:
        """Read back and process the records of each partition in ``ends`` up to the
        offset given, each lane in a task of its own: state lanes first, then transfers
        and order requests (a batch of those may hold its lane while it waits for
        state)."""
        by_lane: dict[int, tuple[Lane, dict[Partition, int]]] = {}
        for tp, end in ends.items():
            lane = self.lanes[tp.topic]
            by_lane.setdefault(id(lane), (lane, {}))[1][tp] = end
        for waits in (False, True):
            await asyncio.gather(
                *(
                    self._gated([], lane, upto=lane_ends)
                    for lane, lane_ends in by_lane.values()
                    if lane.wait is waits
                )
            )

    def _evaluate(self, transfer: TransferRequested, facts: Callable[[], Facts]) -> Decision:
        """Gather the facts and decide; any fault (a state record that does not load,
        a bug) blocks with GUARD_ERROR instead of stopping the worker (fail closed)."""
        try:
            return evaluate(transfer, facts(), self.policy)
        except Exception:
            log.exception("guard fault on transfer %s", transfer.event_id)
            return self._fault(transfer.event_id)

    def _evaluate_order_request(self, item: Pending) -> Decision:
        return self._evaluate(item.transfer, lambda: self._order_facts(item))

    def _fault(self, event_id: str) -> Decision:
        self.telemetry.guard_errors.add(1)
        return guard_error(event_id, self.policy)

    def _forward_to_order_stage(self, item: Pending, outbox: Outbox) -> None:
        transfer = item.transfer
        facts = gather_facts(transfer, self.view)
        snapshot = json.dumps(
            {
                "recipient": encode_optional(facts.recipient),
                "marketing_consent": encode_optional(facts.marketing_consent),
                "third_party_consent": encode_optional(facts.third_party_consent),
                "rights": encode_optional(facts.rights),
            }
        ).encode()
        assert transfer.order_ref is not None
        outbox.add(
            self.settings.topics.order_requests,
            transfer.order_ref.encode(),
            item.raw,
            [*item.headers, (FACTS_HEADER, snapshot)],
        )

    # --- orders ---------------------------------------------------------------------------

    async def _order_requests(self, stream: Any) -> None:
        await self._in_batches(stream, self.lanes[self.settings.topics.order_requests])

    async def _decide_order_batch(self, batch: Sequence[Any]) -> list[Any]:
        outbox = Outbox()
        pending = self._decode_transfers(batch, outbox)
        if not pending:
            return await self._send(outbox)
        orders_tp = Partition(self.settings.topics.orders, 0)
        caught_up = (await self._catch_up([orders_tp]))[orders_tp]
        decided: list[tuple[Pending, Decision, bool]] = []
        changelog = Outbox()
        for item in pending:
            transfer = item.transfer
            stored = self.order_decisions.get(transfer.event_id)
            if stored is not None:
                decided.append((item, decode_decision(stored), True))
                continue
            if caught_up:
                decision = self._evaluate_order_request(item)
            else:
                decision = self._fault(transfer.event_id)
            if decision.outcome is Outcome.ALLOW and decision.order_ref is not None:
                order = self.view.order(decision.order_ref)
                assert order is not None
                table_write(
                    self.tables[StateTable.ORDERS],
                    0,
                    decision.order_ref,
                    encode_state(with_disclosure(order)),
                    changelog,
                )
            table_write(
                self.order_decisions, 0, transfer.event_id, encode_decision(decision), changelog
            )
            decided.append((item, decision, False))
        return await self._publish(decided, changelog, outbox)

    def _order_facts(self, item: Pending) -> Facts:
        raw = dict(item.headers).get(FACTS_HEADER)
        if raw is None:
            raise ValueError("order request without a facts snapshot")
        snap = json.loads(raw)

        def load(name: str, table: StateTable) -> Any:
            value = snap.get(name)
            return None if value is None else decode_state(table, value.encode())

        ref = item.transfer.order_ref
        return Facts(
            recipient=load("recipient", StateTable.RECIPIENTS),
            marketing_consent=load("marketing_consent", StateTable.CONSENTS),
            third_party_consent=load("third_party_consent", StateTable.CONSENTS),
            rights=load("rights", StateTable.RIGHTS),
            order=self.view.order(ref) if ref is not None else None,
        )

    # --- output ---------------------------------------------------------------------------

    async def _publish(
        self,
        decided: Sequence[tuple[Pending, Decision, bool]],
        changelog: Outbox,
        outbox: Outbox,
    ) -> list[Any]:
        """Wait until the stored decisions (and spent quotas) in ``changelog`` are
        acknowledged, then publish, route and audit each decision, sending them with the
        batch's other outputs in ``outbox``; returns the futures of those records."""
        await self._acknowledged(await self._send(changelog))
        t = self.settings.topics
        for item, decision, duplicate in decided:
            transfer = item.transfer
            headers = decision_headers(item.headers, decision, duplicate)
            key = transfer.account_id.encode()
            outbox.add(
                t.decisions,
                key,
                self.decision_codec.encode_record(decision_record(decision)),
                headers,
            )
            route = t.approved if decision.outcome is Outcome.ALLOW else t.blocked
            outbox.add(route, key, item.raw, headers)
            self._audit(outbox, transfer, decision, headers)
        sent = await self._send(outbox)
        self.telemetry.record_decisions(decided, time.time())
        return sent

    def _audit(
        self, outbox: Outbox, event: Any, decision: Decision | None, headers: Headers
    ) -> None:
        outbox.add(
            self.settings.topics.audit,
            event.event_id.encode(),
            self.audit_codec.encode_record(audit_avro_record(event, decision)),
            headers,
        )

    # --- decoding and dead letters --------------------------------------------------------

    def _decode(self, message: Any, accepted: tuple[type[EventBase], ...], outbox: Outbox) -> Any:
        """The event in ``message``, or ``None`` after queueing it in ``outbox`` as a
        dead letter."""
        try:
            decoded = self.registry.decode(message.value)
        except DecodeError as exc:
            self._dead_letter(message, str(exc), outbox)
            return None
        except Exception as exc:  # a codec defect: still a dead letter, never a crash
            log.exception("unexpected decode failure at %s/%d", message.topic, message.partition)
            self._dead_letter(message, f"undecodable record ({type(exc).__name__})", outbox)
            return None
        if not isinstance(decoded, accepted):
            reason = f"{type(decoded).__name__} does not belong on topic {message.topic}"
            self._dead_letter(message, reason, outbox)
            return None
        return decoded

    def _decode_transfers(self, batch: Sequence[Any], outbox: Outbox) -> list[Pending]:
        pending = []
        received_ns = time.time_ns()
        for event in batch:
            message = event.message
            transfer = self._decode(message, (TransferRequested,), outbox)
            if transfer is not None:
                pending.append(
                    Pending(
                        transfer=transfer,
                        raw=message.value,
                        headers=header_list(message.headers),
                        partition=message.partition,
                        timestamp_ms=message.timestamp * 1000 if message.timestamp else None,
                        received_ns=received_ns,
                    )
                )
        return pending

    def _dead_letter(self, message: Any, reason: str, outbox: Outbox) -> None:
        self.telemetry.dead_letters.add(1, {"topic": message.topic})
        outbox.add(
            self.settings.topics.dlq,
            message.key,
            message.value,
            dead_letter_headers(
                header_list(message.headers),
                reason,
                message.topic,
                message.partition,
                message.offset,
            ),
        )

    # --- lifecycle, health and metrics ---------------------------------------------------

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked = kwargs.get("revoked", args[0] if args else ())
        tps = [Partition(tp.topic, tp.partition) for tp in revoked]
        self.catchup.forget(tps)
        self.gate.forget(tps)
        self.sweep.forget(tps)

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Gate the consumer's commits (once), and restart tracking of the assigned
        partitions from the offsets the consumer resumes them at."""
        assigned = kwargs.get("assigned", args[0] if args else ())
        tps = [Partition(tp.topic, tp.partition) for tp in assigned]
        self.gate.forget(tps)
        self.sweep.forget(tps)
        consumer: Any = self.app.consumer
        if getattr(consumer, "_sharing_guard_gated", False):
            return
        faust_new_offset = consumer._new_offset
        gate, gated = self.gate, frozenset(self.lanes)

        def new_offset(tp: Any) -> int | None:
            if tp.topic not in gated:
                return faust_new_offset(tp)  # type: ignore[no-any-return]
            # Faust's own acknowledgements are not trusted for these topics.
            consumer._acked[tp].clear()
            consumer._acked_index[tp].clear()
            return gate.committable(Partition(tp.topic, tp.partition))

        consumer._new_offset = new_offset
        consumer._sharing_guard_gated = True

    async def _measure_lag(self) -> None:
        if not self._dump_installed:
            self._dump_installed = True
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGUSR1, diagnostics.dump, self.app
            )
        consumer = self.app.consumer
        for tp in list(consumer.assignment()):
            position = await consumer.position(tp)
            end = consumer.highwater(tp)
            if position is not None and end is not None:
                self.telemetry.lag[(tp.topic, tp.partition)] = max(0, end - position)

    def ready(self) -> bool:
        """True when the worker runs, is not rebalancing and its tables are recovered."""
        app = self.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
        return bool(
            app.started
            and not app.rebalancing
            and not recovery.in_recovery
            and recovery.completed.is_set()
        )

    def _add_web_views(self) -> None:
        from prometheus_client import REGISTRY, generate_latest

        worker = self

        @self.app.page("/livez")
        async def livez(web: Any, request: Any) -> Any:
            return web.json({"live": True})

        @self.app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ready = worker.ready()
            return web.json({"ready": ready}, status=200 if ready else 503)

        @self.app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            # aiohttp refuses a charset inside content_type; Prometheus reads text/plain.
            return web.bytes(generate_latest(REGISTRY), content_type="text/plain")


def _partition(event: Any) -> Partition:
    return Partition(event.message.topic, event.message.partition)
