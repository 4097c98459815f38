"""Deciding what a consumed batch appends: redeliveries, duplicates and anomalies (pure).

For each consumed Kafka record, in order, with what the store already holds and what the
batch planned before it:

1. bytes already seen at this (topic, partition, offset): **skipped** (redelivery);
2. different bytes at an offset already seen: an ``offset-rewritten`` **anomaly**;
3. an unseen offset below the largest one seen for its partition: an ``offset-regression``
   **anomaly** (Kafka offsets have gaps, but never go backwards);
4. no value (tombstone): an ``empty-record`` anomaly; bytes that do not decode to an
   ``AuditRecord``: an ``undecodable`` anomaly (the bytes are sealed, never interpreted);
5. an ``audit_id`` already stored (for a decision, ``DECISION:<event_id>``): **skipped** if
   the content is the same (the guard published it again), else a ``duplicate-conflict``
   anomaly and the first record is kept;
6. otherwise a **record** entry.

Every consumed position is remembered (with the keyed MAC of its bytes), so a redelivery of
anything, anomalies included, is skipped. Indices are assigned here, in order, from
``next_index``: planning runs under the writer lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

from audit_sink.leaf import AnomalyCode, Source
from audit_sink.store import Position, SourceRow, SourceTuple, TopicPartition

__all__ = [
    "ConsumedRecord",
    "Plan",
    "PlannedAnomaly",
    "PlannedRecord",
    "Skipped",
    "plan_batch",
]

_DETAILS: Final = {
    AnomalyCode.EMPTY_RECORD: "the Kafka record has no value",
    AnomalyCode.OFFSET_REGRESSION: "an unseen offset below the largest one seen on its partition",
    AnomalyCode.OFFSET_REWRITTEN: "different bytes at an offset already logged",
    AnomalyCode.DUPLICATE_CONFLICT: "a record with a logged audit_id and different content",
}


class RecordLike(Protocol):
    """What planning reads of a decoded record (an ``AuditRecord`` or a prepared one)."""

    @property
    def audit_id(self) -> str: ...

    @property
    def event_id(self) -> str: ...

    @property
    def account_id(self) -> str | None: ...


R = TypeVar("R", bound=RecordLike)


@dataclass(frozen=True)
class ConsumedRecord:
    """One record as consumed from Kafka: its position and raw value bytes."""

    topic: str
    partition: int
    offset: int
    value: bytes | None

    @property
    def position(self) -> Position:
        """(topic, partition, offset)."""
        return (self.topic, self.partition, self.offset)


class PlannedRecord(NamedTuple, Generic[R]):
    """A record entry to append at ``index`` (a named tuple: one is made per record)."""

    index: int  # type: ignore[assignment]  # the field hides tuple.index
    source: Source
    record: R
    content_mac: bytes


@dataclass(frozen=True)
class PlannedAnomaly:
    """An anomaly entry to append at ``index``; ``raw`` is sealed when present."""

    index: int
    source: Source
    code: AnomalyCode
    detail: str
    raw: bytes | None
    event_id: str | None
    account_id: str | None
    related_index: int | None


@dataclass(frozen=True)
class Skipped:
    """A consumed record that appends nothing, and why."""

    position: Position
    reason: str


@dataclass(frozen=True)
class Plan(Generic[R]):
    """What one batch appends (entries in index order), remembers and skips."""

    entries: tuple[PlannedRecord[R] | PlannedAnomaly, ...]
    sources: tuple[SourceTuple, ...]
    """Each consumed position's ``sources`` row (a :class:`SourceRow` or a plain tuple)."""
    skipped: tuple[Skipped, ...]


def plan_batch(
    batch: Sequence[ConsumedRecord],
    *,
    next_index: int,
    decode: Callable[[bytes], R],
    raw_mac: Callable[[bytes | None], bytes],
    record_mac: Callable[[R], bytes],
    seen: Mapping[Position, Mapping[bytes, int | None]],
    max_offsets: Mapping[TopicPartition, int],
    known_records: Mapping[str, tuple[int, bytes]],
) -> Plan[R]:
    """Plan a batch; see the module docstring for the rules.

    ``seen`` maps each already consumed position of the batch to ``{raw MAC: entry index or
    None}``; ``max_offsets`` the largest consumed offset per partition; ``known_records``
    each stored audit_id of the batch to ``(entry index, content MAC)``. ``decode`` raises
    ``ValueError`` for bytes that are not an AuditRecord.
    """
    planner = _Planner(next_index, decode, seen, max_offsets, known_records)
    # The common case, inline: a position not seen, at or above its partition's largest
    # offset, with a value that decodes to a record whose audit_id is not logged. Anything
    # else goes through the planner's general rules (the same state, so the same plan).
    entries = planner.entries
    sources = planner.sources
    seen_at = planner.seen
    highest = planner.highest
    records = planner.records
    new = tuple.__new__  # the named tuples without their Python-level __new__
    for item in batch:
        mac = raw_mac(item.value)
        topic, part, offset, value = item.topic, item.partition, item.offset, item.value
        position = (topic, part, offset)
        if value is None or position in seen_at:
            planner.add(item, mac, record_mac)
            continue
        partition = (topic, part)
        last = highest.get(partition)
        if last is not None and offset < last:
            planner.add(item, mac, record_mac)
            continue
        try:
            record = decode(value)
        except ValueError:
            planner.add(item, mac, record_mac)
            continue
        if record.audit_id in records:
            planner.add(item, mac, record_mac)
            continue
        highest[partition] = offset
        content = record_mac(record)
        index = next_index + len(entries)
        source = new(Source, (topic, part, offset))
        entries.append(new(PlannedRecord, (index, source, record, content)))
        records[record.audit_id] = (index, content)
        seen_at[position] = {mac: index}
        sources.append((topic, part, offset, mac, index))  # a plain tuple binds faster
    return Plan(tuple(entries), tuple(sources), tuple(planner.skipped))


class _Planner(Generic[R]):
    """The state of one batch's planning: what is planned, seen and skipped so far."""

    def __init__(
        self,
        next_index: int,
        decode: Callable[[bytes], R],
        seen: Mapping[Position, Mapping[bytes, int | None]],
        max_offsets: Mapping[TopicPartition, int],
        known_records: Mapping[str, tuple[int, bytes]],
    ) -> None:
        self.next_index = next_index
        self.decode = decode
        self.entries: list[PlannedRecord[R] | PlannedAnomaly] = []
        self.sources: list[SourceTuple] = []
        self.skipped: list[Skipped] = []
        self.seen = {pos: dict(macs) for pos, macs in seen.items()}
        self.highest = dict(max_offsets)
        self.records = dict(known_records)

    def add(self, item: ConsumedRecord, mac: bytes, record_mac: Callable[[R], bytes]) -> None:
        at_position = self.seen.get(item.position)
        if at_position is not None:
            if mac in at_position:
                self.skipped.append(Skipped(item.position, "redelivered"))
                return
            related = next((i for i in at_position.values() if i is not None), None)
            self.remember(item, mac, self.anomaly(item, AnomalyCode.OFFSET_REWRITTEN, related))
            return
        partition = (item.topic, item.partition)
        last = self.highest.get(partition)
        if last is not None and item.offset < last:
            self.remember(item, mac, self.anomaly(item, AnomalyCode.OFFSET_REGRESSION, None))
            return
        self.highest[partition] = item.offset
        if item.value is None:
            self.remember(item, mac, self.anomaly(item, AnomalyCode.EMPTY_RECORD, None))
            return
        try:
            record = self.decode(item.value)
        except ValueError as exc:
            detail = f"not an AuditRecord: {str(exc)[:200]}"
            self.remember(item, mac, self.anomaly(item, AnomalyCode.UNDECODABLE, None, detail))
            return
        self.add_record(item, mac, record, record_mac(record))

    def add_record(self, item: ConsumedRecord, mac: bytes, record: R, content: bytes) -> None:
        known = self.records.get(record.audit_id)
        if known is not None:
            if known[1] == content:
                self.skipped.append(Skipped(item.position, "duplicate audit_id, same content"))
                self.remember(item, mac, None)
            else:
                code = AnomalyCode.DUPLICATE_CONFLICT
                self.remember(item, mac, self.anomaly(item, code, known[0], record=record))
            return
        index = self.next_index + len(self.entries)
        source = Source(item.topic, item.partition, item.offset)
        self.entries.append(PlannedRecord(index, source, record, content))
        self.records[record.audit_id] = (index, content)
        self.remember(item, mac, index)

    def remember(self, item: ConsumedRecord, mac: bytes, index: int | None) -> None:
        self.seen.setdefault(item.position, {})[mac] = index
        self.sources.append(SourceRow(item.topic, item.partition, item.offset, mac, index))

    def anomaly(
        self,
        item: ConsumedRecord,
        code: AnomalyCode,
        related: int | None,
        detail: str | None = None,
        record: R | None = None,
    ) -> int:
        index = self.next_index + len(self.entries)
        if record is None and item.value is not None and code != AnomalyCode.UNDECODABLE:
            record = _try_decode(self.decode, item.value)
        self.entries.append(
            PlannedAnomaly(
                index=index,
                source=Source(item.topic, item.partition, item.offset),
                code=code,
                detail=detail or _DETAILS[code],
                raw=item.value,
                event_id=None if record is None else record.event_id,
                account_id=None if record is None else record.account_id,
                related_index=related,
            )
        )
        return index


def _try_decode(decode: Callable[[bytes], R], value: bytes) -> R | None:
    try:
        return decode(value)
    except ValueError:
        return None
