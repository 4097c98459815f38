"""The input loop's recovery paths, forced on the real broker (in process, so that the test,
not timing, decides what the loop has consumed).

The loop is started and joins its group, but its own ``getmany`` never runs: every state
record produced is *behind* when the test hands the loop a transfer. Then:

* the loop fetches exactly the state partitions the transfer depends on, applies them,
  decides on them (a withdrawal produced before the transfer blocks it) and commits both
  the transfer and the state it applied;
* when a rebalance begins while the batch waits for that state (a second member joins),
  the batch gives way: the transfer is neither decided nor committed, and goes to
  whichever member owns its partition next;
* records fetched for a partition whose state the loop has not taken over yet are not
  dropped: the consumer is moved back and fetches them again once it has.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from guard_harness import DecisionReader, fresh_topics
from kafka import KafkaAdminClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sharing_guard.bootstrap import build_worker
from sharing_guard.client import TransferClient
from sharing_guard.contract import (
    ConsentChanged,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Purpose,
    ReasonCode,
    Recipient,
    RecipientRegistered,
    RecipientType,
    TransferRequested,
)
from sharing_guard.settings import GuardSettings, Topics
from sharing_guard.stream.loop import InputLoop
from sharing_guard.stream.preflight import preflight
from sharing_guard.stream.telemetry import build_telemetry

pytestmark = pytest.mark.kafka
T0 = datetime(2026, 11, 1, tzinfo=UTC)
ACCOUNT = "acc-behind"


def governance() -> list[Any]:
    """A mailer; marketing consent for the account, granted, then withdrawn."""
    return [
        RecipientRegistered(
            event_id="reg-mailer",
            occurred_at=T0,
            recipient_id="rcp-mailer",
            recipient_type=RecipientType.SUBCONTRACTOR,
            jurisdiction="CH",
            permitted_purposes=(Purpose.PROMOTIONAL_OFFERS,),
            agreement_ref="dpa-1",
        ),
        *[
            ConsentChanged(
                event_id=f"consent-{i}",
                occurred_at=T0 + timedelta(seconds=i),
                account_id=ACCOUNT,
                scope=ConsentScope.MARKETING,
                status=ConsentStatus.GRANTED if i % 2 == 0 else ConsentStatus.WITHDRAWN,
            )
            for i in range(40)  # ends withdrawn
        ],
    ]


def offer() -> TransferRequested:
    return TransferRequested(
        event_id=f"offer-{uuid.uuid4().hex[:6]}",
        occurred_at=T0 + timedelta(minutes=5),
        source_service="mailer",
        account_id=ACCOUNT,
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        recipient=Recipient(id="rcp-mailer", type=RecipientType.SUBCONTRACTOR, jurisdiction="CH"),
        purpose=Purpose.PROMOTIONAL_OFFERS,
    )


async def started_loop(
    bootstrap: str,
    topics: Topics,
    app_id: str,
    data_dir: Path,
    reader: InMemoryMetricReader,
    *,
    take_over: bool = True,
) -> InputLoop:
    """A worker's input loop, joined and owning every partition, its state restored
    (unless not ``take_over``); its ``getmany`` never called."""
    settings = GuardSettings(
        bootstrap_servers=bootstrap,
        app_id=app_id,
        topics=topics,
        data_dir=data_dir,
        catch_up_timeout_s=20,
    )
    window = await preflight(settings)
    worker = build_worker(window, settings, telemetry=build_telemetry([reader]))
    loop = worker.loop
    await loop.start()
    for _ in range(300):
        if loop._taking_over is not None:
            break
        await asyncio.sleep(0.1)
    if take_over:
        async with loop._lock:
            await loop._take_over()
    return loop


async def record_of(bootstrap: str, topic: str, event_id: str) -> Any:
    """The record of the transfer ``event_id``, read on a client of the test's own."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if event_id.encode() in record.value:
                        return record
        raise AssertionError(f"{event_id} not found on {topic}")
    finally:
        await consumer.stop()


def counter(reader: InMemoryMetricReader, name: str) -> float:
    data = reader.get_metrics_data()
    total = 0.0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    total += sum(point.value for point in metric.data.data_points)
    return total


def test_a_transfer_waits_for_the_state_behind_it_and_both_are_committed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    app_id = f"behind-{topics.transfers[-8:]}"
    client = TransferClient(kafka_bootstrap, topics=topics)
    decisions = DecisionReader(kafka_bootstrap, topics)
    transfer = offer()
    metrics = InMemoryMetricReader()

    async def scenario() -> tuple[dict[TopicPartition, int | None], int]:
        loop = await started_loop(kafka_bootstrap, topics, app_id, tmp_path / "d", metrics)
        try:
            for event in governance():  # acknowledged before the transfer is produced
                client.publish(event)
            client.publish(transfer)
            record = await record_of(kafka_bootstrap, topics.transfers, transfer.event_id)
            tp = TopicPartition(record.topic, record.partition)
            async with loop._lock:
                await loop._process({tp: [record]})
                await loop._committed()  # the commit is answered while a next batch runs
            consents = TopicPartition(topics.consents, record.partition)
            committed = {
                t: await loop.consumer.committed(t)
                for t in (tp, consents, TopicPartition(topics.recipients, 0))
            }
            return committed, record.offset
        finally:
            await loop.stop()

    try:
        committed, offset = asyncio.run(scenario())
        decided = decisions.wait_for([transfer.event_id])[transfer.event_id]
    finally:
        client.close()
        decisions.close()
    assert decided.codes == (ReasonCode.CONSENT_WITHDRAWN,)
    assert counter(metrics, "sharing_guard_catch_up_fetches") >= 1
    transfers_tp, consents_tp, recipients_tp = committed
    assert committed[transfers_tp] == offset + 1
    assert committed[consents_tp] == 40  # every consent change, applied by the catch-up
    assert committed[recipients_tp] == 1


def test_a_batch_waiting_for_state_gives_way_to_a_rebalance(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    app_id = f"yield-{topics.transfers[-8:]}"
    client = TransferClient(kafka_bootstrap, topics=topics)
    decisions = DecisionReader(kafka_bootstrap, topics)
    transfer = offer()
    metrics = InMemoryMetricReader()

    async def scenario() -> tuple[bool, bool]:
        loop = await started_loop(kafka_bootstrap, topics, app_id, tmp_path / "d", metrics)
        other: AIOKafkaConsumer | None = None
        running: asyncio.Task[None] | None = None
        try:
            for event in governance():
                client.publish(event)
            client.publish(transfer)
            record = await record_of(kafka_bootstrap, topics.transfers, transfer.event_id)
            tp = TopicPartition(record.topic, record.partition)
            async with loop._lock:
                # A second member joins; the loop's revocation callback begins and waits
                # for this batch, which now finds its state behind.
                other = await joining_member(kafka_bootstrap, app_id, loop.inputs)
                await until(loop._revoking.is_set, "no rebalance began")
                await loop._process({tp: [record]})
            decided_in_the_batch = counter(metrics, "sharing_guard_decisions") > 0
            committed_in_the_batch = await committed_offset(kafka_bootstrap, app_id, tp)
            # The second member leaves: every partition is the loop's again, from the
            # committed offsets, and the transfer is decided once.
            await asyncio.sleep(1)
            await other.stop()
            other = None
            running = asyncio.ensure_future(loop.run())
            await until(lambda: counter(metrics, "sharing_guard_decisions") >= 1, "not decided")
            return decided_in_the_batch, committed_in_the_batch is not None
        finally:
            if other is not None:
                await other.stop()
            await loop.stop()
            if running is not None:
                running.cancel()

    try:
        decided_in_the_batch, committed_in_the_batch = asyncio.run(scenario())
        later = decisions.wait_for([transfer.event_id])[transfer.event_id]
        decisions.poll()
        copies = [d for d, _ in decisions.all if d.event_id == transfer.event_id]
    finally:
        client.close()
        decisions.close()
    assert not decided_in_the_batch
    assert not committed_in_the_batch
    assert later.codes == (ReasonCode.CONSENT_WITHDRAWN,)
    assert len(copies) == 1


async def until(condition: Any, what: str, timeout_s: float = 30) -> None:
    """Wait (without blocking the loop) until ``condition()`` holds."""
    for _ in range(int(timeout_s * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(what)


async def committed_offset(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    """What ``group`` has committed for ``tp``, read without joining it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = await asyncio.to_thread(admin.list_group_offsets, group)
    finally:
        admin.close()
    for found, meta in offsets.get(group, {}).items():
        if (found.topic, found.partition) == (tp.topic, tp.partition) and meta.offset >= 0:
            return int(meta.offset)
    return None


async def joining_member(bootstrap: str, group: str, topics: list[str]) -> AIOKafkaConsumer:
    """A second consumer in ``group``, subscribed like a guard worker (range assignor)."""
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    member = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    await member.start()
    return member


def test_records_fetched_before_the_take_over_are_fetched_again_after_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    app_id = f"refetch-{topics.transfers[-8:]}"
    client = TransferClient(kafka_bootstrap, topics=topics)
    transfer = offer()
    metrics = InMemoryMetricReader()

    async def scenario() -> tuple[dict[TopicPartition, list[Any]], list[int], list[int]]:
        loop = await started_loop(
            kafka_bootstrap, topics, app_id, tmp_path / "d", metrics, take_over=False
        )
        try:
            client.publish(transfer)
            tp = (await record_of(kafka_bootstrap, topics.transfers, transfer.event_id)).partition
            wanted = TopicPartition(topics.transfers, tp)
            first: dict[TopicPartition, list[Any]] = {}
            for _ in range(100):  # the consumer fetches; the state is not taken over
                first = await loop.consumer.getmany(wanted, timeout_ms=200)
                if first:
                    break
            kept = loop._ours(first)
            async with loop._lock:
                await loop._take_over()
            again = await loop.consumer.getmany(wanted, timeout_ms=5_000)
            return (
                kept,
                [r.offset for r in first.get(wanted, [])],
                [r.offset for r in again.get(wanted, [])],
            )
        finally:
            await loop.stop()

    try:
        kept, fetched, fetched_again = asyncio.run(scenario())
    finally:
        client.close()
    assert fetched  # the consumer did fetch the transfer before the take-over
    assert kept == {}  # not processed without its state
    assert fetched_again == fetched  # and fetched again afterwards
