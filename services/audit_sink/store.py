"""The log store port: what the writer, the verifier and the queries need from a database.

Two adapters implement it with one behaviour, checked by one contract suite:
:mod:`audit_sink.store_sqlite` (embedded default) and :mod:`audit_sink.store_postgres`.

Tables (same names and meaning in both):

* ``leaves(idx, leaf, leaf_hash)``: the log. Append-only; an insert is accepted only at
  the next index (``max(idx) + 1``), never through a sequence.
* ``payloads(idx, key_id, account_tag, sealed)``: sealed personal data. Rows are deleted
  only for entries listed in ``erased`` (by an erasure entry written first).
* ``records(idx, audit_id, kind, event_id, ...)``: a lookup index of record entries
  (non-personal fields only), for redelivery checks, proofs and queries.
* ``sources(topic, part, off, content_mac, idx)``: every Kafka position consumed, with the
  keyed MAC of its bytes.
* ``erased(idx, erasure_idx)``: entries erased, by which erasure entry.
* ``checkpoints(size, note, peaks)``: every signed checkpoint, with the compact range
  (the perfect-subtree roots) it was computed from.
* ``positions(topic, part, next_offset)``: the consumer positions (the only mutable table).
* ``meta(key, value)``: the log's origin and format.

Everything but ``positions`` and the guarded ``payloads`` deletion is append-only, enforced
by triggers (defence in depth: :mod:`audit_sink.verify` is the real control).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

__all__ = [
    "AppendRows",
    "CheckpointRow",
    "LeafRow",
    "LeafTuple",
    "LogReader",
    "LogStore",
    "LogTransaction",
    "PayloadRow",
    "PayloadTuple",
    "RecordFilter",
    "RecordRow",
    "RecordTuple",
    "SegmentReader",
    "SnapshotRef",
    "SourceRow",
    "SourceTuple",
    "StoreError",
    "TopicPartition",
]

TopicPartition = tuple[str, int]
"""A Kafka (topic, partition)."""

Position = tuple[str, int, int]
"""A Kafka (topic, partition, offset)."""


class StoreError(RuntimeError):
    """The store refused an operation or is not the expected log (message names no data)."""


@dataclass(frozen=True)
class LeafRow:
    """One log entry as stored."""

    index: int
    leaf: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class PayloadRow:
    """The sealed payload of an entry; ``account_tag`` is ``None`` for orphan keys."""

    index: int
    key_id: str
    account_tag: bytes | None
    sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class RecordRow:
    """The lookup row of a record entry (no personal data)."""

    index: int
    audit_id: str
    kind: str
    event_id: str
    recipient_id: str | None
    order_ref: str | None
    outcome: str | None
    occurred_at: int
    reason_codes: str
    """Reason codes as ``",CODE1,CODE2,"`` (commas around each, for exact matching)."""
    content_mac: bytes


class SourceRow(NamedTuple):
    """A consumed Kafka position, the keyed MAC of its bytes, and the entry it produced.

    A named tuple in the column order of ``sources`` (:data:`audit_sink._sql.APPENDED_COLUMNS`):
    planning makes one per consumed record and the stores insert it as it is.
    """

    topic: str
    partition: int
    offset: int
    content_mac: bytes
    index: int | None  # type: ignore[assignment]  # the field hides tuple.index


@dataclass(frozen=True)
class CheckpointRow:
    """A signed checkpoint note and the compact-range peaks of its tree."""

    size: int
    note: str
    peaks: bytes


LeafTuple = tuple[int, bytes, bytes]
"""A ``leaves`` row to insert: (idx, leaf, leaf_hash), as :class:`LeafRow`."""
PayloadTuple = tuple[int, str, bytes | None, bytes]
"""A ``payloads`` row to insert: (idx, key_id, account_tag, sealed), as :class:`PayloadRow`."""
RecordTuple = tuple[int, str, str, str, str | None, str | None, str | None, int, str, bytes]
"""A ``records`` row to insert, the fields of :class:`RecordRow` in their order."""
SourceTuple = tuple[str, int, int, bytes, int | None]
"""A ``sources`` row to insert: (topic, part, off, content_mac, idx), as :class:`SourceRow`."""


@dataclass(frozen=True)
class AppendRows:
    """Everything one transaction appends, as plain tuples in each table's column order
    (:data:`audit_sink._sql.APPENDED_COLUMNS`): the stores insert them as they are."""

    leaves: Sequence[LeafTuple] = ()
    payloads: Sequence[PayloadTuple] = ()
    records: Sequence[RecordTuple] = ()
    sources: Sequence[SourceTuple] = ()
    erased: Sequence[tuple[int, int]] = ()
    """(erased entry index, erasure entry index)."""


@dataclass(frozen=True)
class RecordFilter:
    """Which record entries a query selects (every given criterion must hold)."""

    indices: Collection[int] | None = None
    recipient_id: str | None = None
    outcome: str | None = None
    reason_code: str | None = None
    order_ref: str | None = None
    occurred_from: int | None = None
    """Inclusive lower bound, ms since the epoch."""
    occurred_to: int | None = None
    """Exclusive upper bound, ms since the epoch."""
    event_id: str | None = None
    limit: int | None = None
    by_time: bool = False
    """Order by ``occurred_at`` then index (the ``limit`` keeps the earliest) instead of by
    index: what a query across the shards of a trail merges."""


class LogTransaction(Protocol):
    """A write transaction holding the log's writer lock; commits when the block exits."""

    def head(self) -> tuple[int, bytes | None]:
        """The number of entries and the stored hash of the last one (``None`` if empty)."""
        ...

    def latest_checkpoint(self) -> CheckpointRow | None:
        """The checkpoint with the largest size."""
        ...

    def leaf_rows(self, start: int, end: int) -> list[LeafRow]:
        """The entries ``start <= idx < end`` in order."""
        ...

    def source_macs(
        self, positions: Collection[Position]
    ) -> dict[Position, dict[bytes, int | None]]:
        """For each position already consumed: the MACs of the bytes seen there, each with
        the entry it produced (``None`` when it produced none)."""
        ...

    def max_offsets(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """The largest consumed offset of each partition that has one."""
        ...

    def records_by_audit_id(self, audit_ids: Collection[str]) -> dict[str, tuple[int, bytes]]:
        """For each stored audit_id: its entry index and content MAC."""
        ...

    def append(self, rows: AppendRows) -> None:
        """Insert the rows (leaves first)."""
        ...

    def checkpoints(self) -> list[CheckpointRow]:
        """Every stored checkpoint, by size."""
        ...

    def payload_indices_for_tag(self, account_tag: bytes) -> list[int]:
        """The entries with a payload sealed for the account of this tag."""
        ...

    def erased(self, indices: Collection[int] | None = None) -> set[int]:
        """The erased entries among ``indices`` (all of them when ``None``)."""
        ...

    def save_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        """Upsert consumer positions (the next offset to read, per partition)."""
        ...

    def add_checkpoint(self, row: CheckpointRow) -> None:
        """Store a signed checkpoint."""
        ...


class SegmentReader(Protocol):
    """Reads of index ranges of the log, for a verification helper process."""

    def leaf_rows_between(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Every ``(idx, leaf, leaf_hash)`` with ``start <= idx < end``, in index order."""
        ...

    def payload_rows_between(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """Every ``(idx, sealed)`` payload with ``start <= idx < end``, in index order."""
        ...


class SnapshotRef(Protocol):
    """A picklable handle on a reader's snapshot, opened again in a helper process.

    PostgreSQL helpers import the exported snapshot itself (``SET TRANSACTION SNAPSHOT``),
    so they see exactly what the reader sees. SQLite cannot share a snapshot between
    connections: a helper reads the file as committed when it starts; since the log is
    append-only, what can differ below the reader's size is only payloads deleted by an
    erasure committed meanwhile, which the verification then re-checks in the reader's own
    snapshot (see :mod:`audit_sink.verification`).
    """

    def open(self) -> AbstractContextManager[SegmentReader]:
        """A read transaction on the snapshot (in the calling process)."""
        ...


class LogReader(Protocol):
    """Reads of the log within one consistent snapshot."""

    def trace_ids(self, indices: Collection[int]) -> dict[int, str]:
        """The trace ids remembered for ``indices`` (:meth:`LogStore.add_traces`)."""
        ...

    def snapshot_ref(self) -> SnapshotRef | None:
        """A handle on this snapshot for helper processes (``None``: not shareable)."""
        ...

    def payloads_outside(self, start: int, end: int) -> int:
        """How many payload rows have an index outside ``[start, end)``."""
        ...

    def size(self) -> int:
        """The number of entries."""
        ...

    def checkpoints(self) -> list[CheckpointRow]:
        """Every stored checkpoint, by size."""
        ...

    def leaf_chunks(self, chunk_size: int) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Every ``(idx, leaf, leaf_hash)`` in index order, in lists of up to ``chunk_size``."""
        ...

    def payload_chunks(self, chunk_size: int) -> Iterator[list[tuple[int, bytes]]]:
        """Every ``(idx, sealed)`` payload in index order, in lists of up to ``chunk_size``."""
        ...

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The stored leaf hashes of ``start <= idx < end``, in order."""
        ...

    def leaves(self, indices: Collection[int]) -> dict[int, bytes]:
        """The leaf bytes of the given indices that exist."""
        ...

    def find_record(self, audit_id: str) -> int | None:
        """The entry index of a record, by audit_id."""
        ...

    def query_records(self, criteria: RecordFilter) -> list[RecordRow]:
        """The record rows matching, by index."""
        ...

    def payloads(self, indices: Collection[int]) -> dict[int, PayloadRow]:
        """The payload rows of the given indices that exist."""
        ...

    def payload_indices_for_tag(self, account_tag: bytes) -> list[int]:
        """The entries with a payload sealed for the account of this tag."""
        ...

    def erased(self, indices: Collection[int] | None = None) -> set[int]:
        """The erased entries among ``indices`` (all of them when ``None``)."""
        ...

    def committed_positions(self) -> dict[TopicPartition, int]:
        """The stored consumer positions."""
        ...


class LogStore(Protocol):
    """A log database: snapshots to read, transactions to append."""

    origin: str

    def reader(self) -> AbstractContextManager[LogReader]:
        """A read-only snapshot."""
        ...

    def transaction(self) -> AbstractContextManager[LogTransaction]:
        """A write transaction holding the writer lock; rolled back if the block raises."""
        ...

    def add_traces(self, traces: Mapping[int, str]) -> int:
        """Remember the trace id (W3C, 32 hex digits) of appended entries, by index, in one
        short transaction of its own; an index already remembered is left as it is. How
        many were added. Operational metadata, not part of any leaf: losing it (a crash
        right after an append) loses no evidence."""
        ...

    def delete_erased_payloads(self, indices: Collection[int]) -> int:
        """Delete the payloads of erased entries; return how many rows went."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
