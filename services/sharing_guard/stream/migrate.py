"""Carrying a guard's state over from the Faust tables of the earlier runtime.

Until the guard owned its input loop, a worker kept its state in Faust tables whose
changelogs were ``<app>-consents-changelog`` and ``<app>-rights-changelog`` (one partition
per account partition), ``<app>-recipients-changelog`` and ``<app>-orders-changelog`` (one
each), keyed by the table key as a JSON string, the value the state record's JSON (the
same bytes :mod:`sharing_guard.stream.state_codec` writes today). ``sharing-guard
migrate-faust-state`` reads each to its end, keeps the last value of every key (a
tombstone removes it), and writes the entries to the new changelogs under the new keys, in
the same partitions. A worker started afterwards restores them like any changelog.

Carried: consents, rights, recipients and orders (with the disclosures spent). Not
carried: the idempotency tables (decisions, seen event ids): stop the old workers with
no lag, so that no redelivery is pending. Refused when a new changelog already holds a
record (the migration ran already, or new workers ran): nothing is then written.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from sharing_guard.core.state import StateTable
from sharing_guard.settings import GuardSettings
from sharing_guard.stream.changelog import Changelogs, Kind, entry_key
from sharing_guard.stream.preflight import partition_counts
from sharing_guard.stream.state_codec import decode_state

log = logging.getLogger(__name__)
OLD_TABLES: Mapping[str, tuple[StateTable, Kind]] = {
    "consents": (StateTable.CONSENTS, Kind.CONSENT),
    "rights": (StateTable.RIGHTS, Kind.RIGHTS),
    "recipients": (StateTable.RECIPIENTS, Kind.RECIPIENT),
    "orders": (StateTable.ORDERS, Kind.ORDER),
}


class MigrationError(RuntimeError):
    """The migration cannot run (nothing was written)."""


@dataclass(frozen=True, slots=True)
class Carried:
    """What the migration found and wrote, per old table."""

    read: dict[str, int]
    written: dict[str, int]
    malformed: dict[str, int]


def table_key(raw: bytes | None) -> str:
    """The table key of an old changelog record (a JSON string, as Faust wrote it)."""
    text = (raw or b"").decode()
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return text
    return decoded if isinstance(decoded, str) else text


async def migrate_faust_state(settings: GuardSettings) -> Carried:
    """Copy the state of the Faust tables of ``settings.app_id`` into the new changelogs
    (which must exist, empty: a worker's preflight creates them)."""
    new = Changelogs.of(settings.app_id)
    target = {"consents": new.account, "rights": new.account}
    target |= {"recipients": new.recipients, "orders": new.orders}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","))
    await admin.start()
    old = {name: f"{settings.app_id}-{name}-changelog" for name in OLD_TABLES}
    try:
        counts = await partition_counts(
            admin, [new.account, new.orders, new.recipients, *old.values()]
        )
    finally:
        await admin.close()
    await consumer.start()
    try:
        await _refuse_unless_empty(consumer, [new.account, new.orders, new.recipients], counts)
        entries: dict[str, dict[tuple[int, str], bytes]] = {}
        read: dict[str, int] = {}
        for name, topic in old.items():
            entries[name], read[name] = await _fold(consumer, topic, counts.get(topic, 0))
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers.split(","), acks="all")
    await producer.start()
    written: dict[str, int] = {}
    malformed: dict[str, int] = {}
    try:
        for name, (table, kind) in OLD_TABLES.items():
            written[name] = malformed[name] = 0
            for (part, key), value in sorted(entries[name].items()):
                try:
                    decode_state(table, value)
                except ValueError:
                    malformed[name] += 1
                    log.warning("%s: a record that is not a %s state record, skipped", name, table)
                    continue
                await producer.send(target[name], value, key=entry_key(kind, key), partition=part)
                written[name] += 1
        await producer.flush()
    finally:
        await producer.stop()
    return Carried(read, written, malformed)


async def _refuse_unless_empty(
    consumer: AIOKafkaConsumer, topics: list[str], counts: Mapping[str, int]
) -> None:
    for topic in topics:
        if not counts.get(topic):
            raise MigrationError(f"changelog {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in range(counts[topic])]
        ends = await consumer.end_offsets(tps)
        if any(ends.values()):
            raise MigrationError(
                f"changelog {topic} holds records already (migrated before, or new workers "
                "ran): nothing written"
            )


async def _fold(
    consumer: AIOKafkaConsumer, topic: str, partitions: int
) -> tuple[dict[tuple[int, str], bytes], int]:
    """The last value of every key of ``topic`` (absent: nothing), and the records read."""
    if not partitions:
        log.warning("no old changelog %s: nothing to carry from it", topic)
        return {}, 0
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = await consumer.end_offsets(tps)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    folded: dict[tuple[int, str], bytes] = {}
    read = 0
    while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
        fetched = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        for records in fetched.values():
            for record in records:
                read += 1
                key = (record.partition, table_key(record.key))
                if record.value is None:
                    folded.pop(key, None)
                else:
                    folded[key] = record.value
    consumer.unsubscribe()
    return folded, read
