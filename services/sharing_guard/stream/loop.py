"""The guard's input loop: one aiokafka consumer in the worker's group, one task, one batch
at a time, each made durable before its offsets are committed.

A pass of the loop (docs/ordering.md has the argument):

1. ``getmany`` returns records of the partitions this worker owns.
2. Governance records are applied to the batch's view of the state; transfers (and order
   requests) wait until the state they depend on is applied up to end offsets read after
   they arrived (catching up by fetching exactly those state partitions), then are
   decided.
3. The batch's changelog records are produced and acknowledged, then written to the
   local store with their changelog offsets; then its outputs (decisions, routed
   requests, audit records, dead letters) are produced and acknowledged.
4. The offsets after the records processed are committed (the next batch runs while the
   broker answers; the next commit, a rebalance and a stop wait for that answer).

Nothing is committed that was not processed and acknowledged, by construction: there
is no other path to a commit, and a record fetched but not returned by ``getmany`` is
simply fetched again from the committed offset (aiokafka resets positions to the
committed offsets on every new assignment). A rebalance waits for the batch in hand
(the revocation callback takes the same lock); a batch waiting for state gives way to a
rebalance and leaves its transfers undecided and uncommitted. On assignment, the
changelog partitions of the new partitions are restored into the local store before any
of their records is processed.

Co-partitioning: the account topics (transfers, consents, rights) have the same partition
count and the group uses the range assignor, which gives a worker the same partition
numbers of each; the one-partition topics (recipients, orders, order requests) all go to
the group's first member. :func:`check_copartitioned` refuses an assignment that breaks it.
"""

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import ConsumerStoppedError, KafkaError
from aiokafka.structs import TopicPartition

from sharing_guard.settings import GuardSettings
from sharing_guard.stream.batch import Batch
from sharing_guard.stream.changelog import Changelogs, Restorer, expiry_headers
from sharing_guard.stream.end_offsets import EndOffsets, Partition, StateEnds
from sharing_guard.stream.liveness import Liveness
from sharing_guard.stream.outbox import Delivery, Outbox
from sharing_guard.stream.processing import Pending, Processor
from sharing_guard.stream.store import LocalStore, Write
from sharing_guard.stream.telemetry import Telemetry

log = logging.getLogger(__name__)
ACK_PATIENCE_S = 10.0
EXPIRY_INTERVAL_S = 5.0
EXPIRY_BATCH = 5_000
RESTORE_TIMEOUT_S = 600.0


def max_request_bytes(settings: GuardSettings) -> int:
    """The producer's request limit: room for the largest input record accepted, routed
    on with the guard's headers."""
    return max(1_000_000, settings.max_record_bytes + 65_536)


class RebalanceInterruptedError(Exception):
    """A rebalance began while the batch waited for state."""


def check_copartitioned(assigned: Iterable[TopicPartition], account_topics: Sequence[str]) -> None:
    """Raise ``RuntimeError`` unless every account topic has the same partitions here."""
    by_topic: dict[str, set[int]] = {topic: set() for topic in account_topics}
    for tp in assigned:
        if tp.topic in by_topic:
            by_topic[tp.topic].add(tp.partition)
    sets = list(by_topic.values())
    if any(s != sets[0] for s in sets):
        raise RuntimeError(f"account topics assigned unevenly (not co-partitioned): {by_topic}")


class InputLoop(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer, the producer and the loop between them (see the module docstring)."""

    def __init__(
        self,
        settings: GuardSettings,
        processor: Processor,
        store: LocalStore,
        telemetry: Telemetry,
        liveness: Liveness,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.store = store
        self.telemetry = telemetry
        self.liveness = liveness
        t = settings.topics
        self.topics = t
        self.changelogs = Changelogs.of(settings.app_id)
        self.state_topics = frozenset({t.consents, t.rights, t.recipients, t.orders, t.policy})
        self.inputs = [
            t.transfers,
            t.consents,
            t.rights,
            t.recipients,
            t.orders,
            t.order_requests,
            t.policy,
        ]
        self.restorer = Restorer(
            settings.bootstrap_servers, store, int(settings.store_max_age_s * 1000)
        )
        self.end_offsets = EndOffsets(settings.bootstrap_servers)
        self.state_ends = StateEnds(self.end_offsets)
        self.consumer: AIOKafkaConsumer  # created in start(), on the running loop
        self.producer: AIOKafkaProducer
        self._lock = asyncio.Lock()
        self._revoking = asyncio.Event()
        self._assigned: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}
        self._generation = 0
        self._joined = False
        self._restoring = False
        self._taking_over: set[TopicPartition] | None = None
        self._commit: asyncio.Future[None] | None = None
        self._stopping = False
        self._last_expiry = 0.0
        self.lag_total = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the clients, restore the recipients (every worker has them all) and
        join the group."""
        settings = self.settings
        bootstrap = settings.bootstrap_servers.split(",")
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=settings.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(1.0, settings.session_timeout_s / 5) * 1000),
            rebalance_timeout_ms=int(max(30.0, settings.session_timeout_s * 3) * 1000),
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=0,  # a batch's records are batched by the Outbox already
            max_request_size=max_request_bytes(settings),
        )
        await self.producer.start()
        restored = await self.restorer.restore([(self.changelogs.recipients, 0)], RESTORE_TIMEOUT_S)
        self.telemetry.restored.add(restored)
        await self.consumer.start()
        self.consumer.subscribe(self.inputs, listener=self)

    async def stop(self) -> None:
        """Leave the group (after the batch in hand) and stop every client."""
        self._stopping = True
        async with self._lock:
            await self._committed()
            await self.consumer.stop()
        await self.producer.stop()
        await self.restorer.close()
        await self.end_offsets.close()

    @property
    def ready(self) -> bool:
        """Joined, its partitions' state restored, the loop running."""
        return self._joined and not self._restoring and self.liveness.loop_running

    async def run(self) -> None:
        """Process batches until stopped; raises what makes the worker unfit to go on."""
        try:
            while not self._stopping:
                try:
                    fetched = await self.consumer.getmany(
                        timeout_ms=500, max_records=self.settings.batch_max
                    )
                except ConsumerStoppedError:
                    if self._stopping:
                        return
                    raise
                async with self._lock:
                    if self._taking_over is not None:
                        await self._take_over()
                    records = self._ours(fetched)
                    if records:
                        await self._process(records)
                        self.liveness.progressed(time.monotonic())
                    await self._expire()
        finally:
            self.liveness.loop_running = False

    def _ours(self, fetched: Mapping[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """The fetched records of partitions whose state this worker holds. Records of a
        partition assigned to the consumer whose state is not restored yet (its
        assignment callback has not run) are fetched again later: the consumer is moved
        back to the first of them. Those of partitions no longer assigned are left to
        their next owner, who starts from the committed offset."""
        ours: dict[TopicPartition, list[Any]] = {}
        consumer_has = self.consumer.assignment()
        for tp, records in fetched.items():
            if tp in self._assigned:
                ours[tp] = records
            elif tp in consumer_has and records:
                self.consumer.seek(tp, records[0].offset)
        return ours

    # --- rebalances ---------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in hand (a batch waiting for state gives way), then let
        the partitions go."""
        self._revoking.set()
        try:
            async with self._lock:
                await self._committed()
                self._generation += 1
                self._assigned = set()
                self._taking_over = None
                for tp in revoked:
                    self._next.pop(tp, None)
                self.telemetry.lag.clear()
        finally:
            self._revoking.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Note the new partitions; the loop restores their state before it processes
        any of their records (here, the group's heartbeats would wait for it)."""
        self._generation += 1
        self._taking_over = set(assigned)
        self._restoring = True

    async def _take_over(self) -> None:
        """Restore the state of newly assigned partitions and note where each resumes;
        only then are their records processed."""
        assigned, self._taking_over = self._taking_over, None
        assert assigned is not None
        check_copartitioned(
            assigned, [self.topics.transfers, self.topics.consents, self.topics.rights]
        )
        wanted = {self.processor.changelog_of(tp.topic, tp.partition) for tp in assigned}
        wanted.add((self.changelogs.recipients, 0))
        started = time.monotonic()
        restored = await self.restorer.restore(sorted(wanted), RESTORE_TIMEOUT_S)
        self.telemetry.restored.add(restored)
        fresh = []
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            if committed is None:
                fresh.append(Partition(tp.topic, tp.partition))
            else:
                self._next[tp] = int(committed)
        # On the group-less client: the group consumer answers offset requests only
        # between its fetches (up to fetch_max_wait_ms each).
        for tp, start in (await self.end_offsets.beginnings(fresh)).items():
            self._next[TopicPartition(tp.topic, tp.partition)] = start
        self._assigned = set(assigned)
        self._restoring = False
        self._joined = True
        log.info(
            "took over %d partition(s): %d changelog record(s) restored in %.2f s",
            len(assigned),
            restored,
            time.monotonic() - started,
        )
        self.liveness.progressed(time.monotonic())

    # --- one batch ----------------------------------------------------------------------

    async def _process(self, records: Mapping[TopicPartition, list[Any]]) -> None:
        t = self.topics
        now_ms = int(time.time() * 1000)
        batch = Batch(self.store)
        processor = self.processor
        for tp, rs in records.items():
            if tp.topic in self.state_topics:
                processor.apply_governance(rs, batch, now_ms)
        transfers = {
            tp: processor.decode_transfers(rs, batch)
            for tp, rs in records.items()
            if tp.topic == t.transfers
        }
        requests = {
            tp: processor.decode_transfers(rs, batch)
            for tp, rs in records.items()
            if tp.topic == t.order_requests
        }
        try:
            if any(transfers.values()):
                live = {tp: pending for tp, pending in transfers.items() if pending}
                caught_up = await self._catch_up_accounts(live, batch)
                for tp, pending in live.items():
                    processor.decide_transfers(pending, caught_up[tp.partition], batch, now_ms)
        except RebalanceInterruptedError:
            self._leave_undecided(transfers, batch)
            requests = {}  # they wait too
        try:
            if any(requests.values()):
                orders = Partition(t.orders, 0)
                reached = await self._catch_up(await self.end_offsets([orders]), batch)
                for pending in requests.values():
                    processor.decide_order_requests(pending, reached[orders], batch, now_ms)
        except RebalanceInterruptedError:
            self._leave_undecided(requests, batch)
        await self._flush(batch)

    @staticmethod
    def _leave_undecided(waiting: Mapping[TopicPartition, Any], batch: Batch) -> None:
        """A rebalance began while these partitions' records waited for state: they are
        neither decided nor committed (their next owner gets them from the commit)."""
        log.info("a rebalance began while a batch waited for state; its transfers wait")
        for tp in waiting:
            batch.commits.pop((tp.topic, tp.partition), None)

    async def _catch_up_accounts(
        self, transfers: Mapping[TopicPartition, Sequence[Pending]], batch: Batch
    ) -> dict[int, bool]:
        """Catch up the state the ``transfers`` depend on: the consents and rights of
        their partitions, the recipients and the policy promotions; per account partition,
        whether it is."""
        t = self.topics
        recipients = (
            Partition(t.recipients, 0)
            if TopicPartition(t.recipients, 0) in self._assigned
            else Partition(self.changelogs.recipients, 0)
        )
        policy = Partition(t.policy, 0)
        needed = {
            tp.partition: [
                Partition(t.consents, tp.partition),
                Partition(t.rights, tp.partition),
                recipients,
                policy,
            ]
            for tp in transfers
        }
        state = list(dict.fromkeys(p for ps in needed.values() for p in ps))
        inputs = {
            Partition(tp.topic, tp.partition): max(item.offset for item in pending)
            for tp, pending in transfers.items()
        }
        ends = self.state_ends.reuse(self._generation, inputs, state)
        if ends is None:
            # A new reading covers the state of every transfers partition owned, so that
            # it serves later batches too (see StateEnds).
            covers: dict[Partition, int] = {}
            every = list(state)
            for owned in self._assigned:
                if owned.topic == t.transfers:
                    every += [
                        Partition(t.consents, owned.partition),
                        Partition(t.rights, owned.partition),
                    ]
                    seen = self.consumer.highwater(owned)
                    if seen is not None:
                        covers[Partition(owned.topic, owned.partition)] = seen
            every = list(dict.fromkeys(every))
            ends = await self.state_ends.read(self._generation, covers, every, state)
        reached = await self._catch_up(ends, batch)
        return {part: all(reached[p] for p in ps) for part, ps in needed.items()}

    async def _catch_up(self, ends: Mapping[Partition, int], batch: Batch) -> dict[Partition, bool]:
        """Apply the state partitions up to ``ends`` (within the catch-up timeout), by
        fetching exactly those this worker owns and following the changelogs it reads;
        whether each got there. Raises :class:`RebalanceInterruptedError` if a rebalance begins."""
        deadline = time.monotonic() + self.settings.catch_up_timeout_s
        while True:
            reached: dict[Partition, bool] = {}
            behind: list[TopicPartition] = []
            for tp, end in ends.items():
                kafka_tp = TopicPartition(tp.topic, tp.partition)
                if kafka_tp in self._assigned:
                    reached[tp] = await self.consumer.position(kafka_tp) >= end
                    if not reached[tp]:
                        behind.append(kafka_tp)
                elif tp.topic == self.topics.policy:  # applied by its owner (docs/ordering.md)
                    reached[tp] = await self._policy_applied(end, batch, deadline)
                else:  # a changelog this worker reads (the recipients of other workers)
                    position = self.store.position(tp.topic, tp.partition)
                    reached[tp] = position is not None and position >= end
                    if not reached[tp] and position is not None:
                        remaining = max(0.1, deadline - time.monotonic())
                        await self.restorer.follow((tp.topic, tp.partition), end, remaining)
                        position = self.store.position(tp.topic, tp.partition)
                        reached[tp] = position is not None and position >= end
            if all(reached.values()):
                return reached
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not behind:
                if not all(reached.values()):
                    log.warning(
                        "state not caught up in %.1f s: %s",
                        self.settings.catch_up_timeout_s,
                        sorted(
                            f"{tp.topic}/{tp.partition}" for tp, ok in reached.items() if not ok
                        ),
                    )
                return reached
            fetched = await self._fetch_or_yield(behind, min(remaining, 0.5))
            for rs in fetched.values():
                self.processor.apply_governance(rs, batch, int(time.time() * 1000))
            self.telemetry.catch_up_fetches.add(1)

    async def _policy_applied(self, end: int, batch: Batch, deadline: float) -> bool:
        """Whether the owner of ``governance.policy`` has applied it up to ``end`` (into
        the recipients changelog, followed here until it has or the deadline passes)."""
        changelog = (self.changelogs.recipients, 0)
        policies = self.processor.policies
        while policies.applied(batch) < end:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changelog_end = await self.end_offsets([Partition(*changelog)])
            target = changelog_end[Partition(*changelog)]
            position = self.store.position(*changelog)
            if position is not None and position >= target:
                await asyncio.sleep(min(0.05, remaining))  # the owner has not written it yet
            else:
                try:
                    await self.restorer.follow(changelog, target, max(0.1, remaining))
                except TimeoutError:
                    return False
        return True

    async def _fetch_or_yield(
        self, tps: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, list[Any]]:
        """Records of ``tps``; :class:`RebalanceInterruptedError` as soon as a rebalance
        begins (the consumer returns nothing while it rebalances, and the rebalance waits
        for this batch)."""
        if self._revoking.is_set():
            raise RebalanceInterruptedError
        fetch = asyncio.ensure_future(self.consumer.getmany(*tps, timeout_ms=int(timeout_s * 1000)))
        revoking = asyncio.ensure_future(self._revoking.wait())
        try:
            await asyncio.wait({fetch, revoking}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            revoking.cancel()
        if not fetch.done():
            fetch.cancel()
            raise RebalanceInterruptedError
        fetched: dict[TopicPartition, list[Any]] = fetch.result()
        return {tp: rs for tp, rs in fetched.items() if tp in self._assigned}

    # --- making a batch durable ---------------------------------------------------------

    async def _flush(self, batch: Batch) -> None:
        """Changelog records, acknowledged and stored; then the outputs, acknowledged;
        then the commit."""
        limit = max_request_bytes(self.settings)
        if batch.changes:
            changelog = Outbox()
            for (topic, part), writes in batch.changes.items():
                for write in writes:
                    changelog.add(
                        topic, write.key, write.value, expiry_headers(write.expires_at), part
                    )
            firsts: dict[tuple[str, int], int] = {}
            for delivery in await self._acknowledged(await changelog.send(self.producer, limit)):
                where = (delivery.topic, delivery.partition)
                offset = delivery.future.result().offset
                firsts[where] = min(firsts.get(where, offset), offset)
            now_ms = int(time.time() * 1000)
            for (topic, part), writes in batch.changes.items():
                first = firsts[(topic, part)]
                if self.store.position(topic, part) == first:
                    self.store.apply(topic, part, first + len(writes), writes, now_ms)
                else:  # another writer came between: read the changelog as it is
                    log.warning("changelog %s/%d was written by another worker too", topic, part)
                    await self.restorer.restore([(topic, part)], RESTORE_TIMEOUT_S)
        await self._acknowledged(await batch.outputs.send(self.producer, limit))
        if batch.decided:
            self.telemetry.record_decisions(batch.decided, time.time())
        if batch.commits:
            offsets = {TopicPartition(topic, part): o for (topic, part), o in batch.commits.items()}
            await self._committed()  # one commit in flight at a time, in order
            self._commit = asyncio.ensure_future(self._send_commit(offsets))

    async def _send_commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` (everything below them is processed and acknowledged)."""
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # partitions gone to another worker meanwhile
            log.warning("commit failed (%s); the records will be delivered again", exc)
        else:
            self._next.update(offsets)

    async def _committed(self) -> None:
        """Wait for the commit in flight, if any. The next batch runs while a commit is
        answered; a rebalance, a stop and the next commit wait for it."""
        if self._commit is not None:
            await self._commit
            self._commit = None

    async def _acknowledged(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        """Wait until the broker acknowledged every delivery; raise the first failure.
        Every ``ACK_PATIENCE_S`` without an answer, say so in the log."""
        pending = {d.future for d in deliveries if not d.future.done()}
        waited = 0.0
        while pending:
            _, pending = await asyncio.wait(pending, timeout=ACK_PATIENCE_S)
            if pending:
                waited += ACK_PATIENCE_S
                log.warning(
                    "%d output batch(es) not acknowledged after %.0f s", len(pending), waited
                )
        for delivery in deliveries:
            delivery.future.result()
        return deliveries

    # --- expiry and lag -----------------------------------------------------------------

    async def _expire(self) -> None:
        """Every few seconds, tombstone the idempotency entries past their expiry in the
        changelog partitions this worker writes, then delete them here; and delete those
        of partitions kept from earlier assignments, which their writer tombstones."""
        now = time.monotonic()
        if now - self._last_expiry < EXPIRY_INTERVAL_S:
            return
        self._last_expiry = now
        now_ms = int(time.time() * 1000)
        batch = Batch(self.store)
        owned = {self.processor.changelog_of(tp.topic, tp.partition) for tp in self._assigned}
        expired = 0
        for topic, part in self.store.partitions():
            if (topic, part) not in owned:
                self.store.forget_expired(topic, part, now_ms)
                continue
            for key in self.store.expired(topic, part, now_ms, EXPIRY_BATCH):
                batch.write(topic, part, Write(key, None))
                expired += 1
        if expired:
            await self._flush(batch)
            self.telemetry.expired.add(expired)
            log.info("expired %d idempotency entries", expired)

    async def measure_lag(self) -> None:
        """Records behind the end of each owned partition (from the consumer's last
        fetch), for the metrics and the liveness rule."""
        total = 0
        for tp in list(self._assigned):
            end = self.consumer.highwater(tp)
            position = self._next.get(tp)
            if end is None or position is None:
                continue
            lag = max(0, end - position)
            self.telemetry.lag[(tp.topic, tp.partition)] = lag
            total += lag
        self.lag_total = total
