"""One contract, two stores: the audit log behaves the same on SQLite and PostgreSQL.

Every test runs against both (``backend`` is parametrised; the PostgreSQL run uses a fresh
schema and roles per test). What the Kafka ingest relies on: appends and reads, idempotent
redelivery (by position and by audit_id), positions committed in the same transaction as
the entries, contiguous indices, anomalies for offsets going backwards or rewritten.
"""

# The fixtures come from test_audit_support; pytest resolves parameters named after them.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from audit_sink.leaf import AnomalyCode, EntryType, Source, decode_leaf
from audit_sink.query import PersonalStatus, QueryCriteria, query_entries
from audit_sink.store import LogStore, RecordFilter
from audit_sink.writer import CheckpointPolicy
from sharing_guard.contract.enums import Outcome
from test_audit_support import (
    TOPIC,
    Backend,
    backend,  # noqa: F401
    consumed,
    next_positions,
    pg_names,  # noqa: F401
    record,
)


def leaves_of(store: LogStore) -> list[Any]:
    with store.reader() as reader:
        rows = [row for chunk in reader.leaf_chunks(100) for row in chunk]
    return [decode_leaf(leaf) for _, leaf, _ in rows]


def test_appended_records_read_back_in_order_with_their_sources(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([record(n, account=f"acct-{n % 2}") for n in range(5)], start=100)

    result = log.append_batch(batch, next_positions(batch))

    assert [a.index for a in result.appended] == [0, 1, 2, 3, 4]
    assert result.size == 5
    assert result.checkpoint is not None
    assert result.checkpoint.size == 5
    leaves = leaves_of(log.store)
    assert [leaf.index for leaf in leaves] == [0, 1, 2, 3, 4]
    assert [leaf.type for leaf in leaves] == [EntryType.RECORD] * 5
    assert [leaf.source for leaf in leaves] == [Source(TOPIC, 0, 100 + n) for n in range(5)]
    assert [leaf.body["event_id"] for leaf in leaves] == [f"evt-{n:06d}" for n in range(5)]
    with log.store.reader() as reader:
        views = query_entries(reader, backend.keys(), QueryCriteria())
    assert [(v.event_id, v.account_id, v.personal) for v in views] == [
        (f"evt-{n:06d}", f"acct-{n % 2}", PersonalStatus.OPENED) for n in range(5)
    ]
    assert backend.verify().ok


def test_indices_stay_contiguous_across_batches_and_writers(backend: Backend) -> None:
    first, second = backend.log(), backend.log()
    for n in range(6):
        writer = first if n % 2 == 0 else second
        batch = consumed([record(3 * n + i) for i in range(3)], start=3 * n)
        writer.append_batch(batch, next_positions(batch))

    leaves = leaves_of(first.store)

    assert [leaf.index for leaf in leaves] == list(range(18))
    report = backend.verify()
    assert report.ok, report.problems
    assert report.size == 18
    assert report.checkpoints_verified == 6


def test_the_store_refuses_a_leaf_at_any_index_but_the_next(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([record(n) for n in range(3)])
    log.append_batch(batch, next_positions(batch))

    with pytest.raises(Exception, match="next index"):
        backend.owner(
            "INSERT INTO leaves(idx, leaf, leaf_hash) VALUES (5, ?, ?)", [b"x", bytes(32)]
        )

    assert backend.verify().ok


def test_a_redelivered_batch_appends_nothing(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([record(n) for n in range(4)])
    log.append_batch(batch, next_positions(batch))

    again = log.append_batch(batch, next_positions(batch))

    assert again.appended == ()
    assert [s.reason for s in again.skipped] == ["redelivered"] * 4
    assert again.size == 4
    assert again.checkpoint is None


def test_a_decision_published_twice_is_logged_once(backend: Backend) -> None:
    log = backend.log()
    log.append_batch(consumed([record(1), record(2)]), {})

    result = log.append_batch(consumed([record(1)], start=50), {})

    assert result.appended == ()
    assert [s.reason for s in result.skipped] == ["duplicate audit_id, same content"]
    with log.store.reader() as reader:
        assert reader.size() == 2
        assert [r.index for r in reader.query_records(RecordFilter(event_id="evt-000001"))] == [0]


def test_a_second_decision_with_other_content_keeps_the_first_and_logs_an_anomaly(
    backend: Backend,
) -> None:
    log = backend.log()
    log.append_batch(consumed([record(1, outcome=Outcome.BLOCK)]), {})

    result = log.append_batch(consumed([record(1, outcome=Outcome.ALLOW)], start=9), {})

    assert [(a.index, a.type, a.anomaly) for a in result.appended] == [
        (1, EntryType.ANOMALY, AnomalyCode.DUPLICATE_CONFLICT)
    ]
    anomaly = leaves_of(log.store)[1]
    assert anomaly.body["related_index"] == 0
    assert anomaly.body["event_id"] == "evt-000001"
    assert anomaly.payload_digest is not None  # the conflicting bytes, sealed
    with log.store.reader() as reader:
        views = query_entries(reader, backend.keys(), QueryCriteria())
    assert [(v.event_id, v.outcome) for v in views] == [("evt-000001", "BLOCK")]
    assert backend.verify().ok


def test_duplicates_within_one_batch_are_handled_like_across_batches(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([record(1), record(1), record(1, outcome=Outcome.ALLOW)])

    result = log.append_batch(batch, next_positions(batch))

    assert [(a.type, a.anomaly) for a in result.appended] == [
        (EntryType.RECORD, None),
        (EntryType.ANOMALY, AnomalyCode.DUPLICATE_CONFLICT),
    ]
    assert len(result.skipped) == 1
    assert backend.verify().ok


def test_offset_gaps_are_normal(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([record(n) for n in range(4)], start=3, step=7)

    result = log.append_batch(batch, next_positions(batch))

    assert [a.type for a in result.appended] == [EntryType.RECORD] * 4
    assert backend.verify().ok


def test_an_offset_going_backwards_is_an_anomaly_and_is_logged_once(backend: Backend) -> None:
    log = backend.log()
    log.append_batch(consumed([record(1), record(2)], start=10, step=5), {})
    backwards = consumed([record(3)], start=12)

    result = log.append_batch(backwards, {})
    again = log.append_batch(backwards, {})

    assert [(a.index, a.anomaly) for a in result.appended] == [(2, AnomalyCode.OFFSET_REGRESSION)]
    assert again.appended == ()
    assert backend.verify().ok


def test_different_bytes_at_a_logged_offset_are_an_anomaly(backend: Backend) -> None:
    log = backend.log()
    log.append_batch(consumed([record(1), record(2)], start=10), {})

    result = log.append_batch(consumed([record(7)], start=11), {})

    assert [(a.index, a.anomaly) for a in result.appended] == [(2, AnomalyCode.OFFSET_REWRITTEN)]
    assert leaves_of(log.store)[2].body["related_index"] == 1
    assert backend.verify().ok


def test_undecodable_bytes_and_tombstones_are_anomalies(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([b"\xc3\x01not an avro record", None, record(1)])

    result = log.append_batch(batch, next_positions(batch))

    assert [a.anomaly for a in result.appended] == [
        AnomalyCode.UNDECODABLE,
        AnomalyCode.EMPTY_RECORD,
        None,
    ]
    leaves = leaves_of(log.store)
    assert leaves[0].payload_digest is not None  # the raw bytes, sealed
    assert leaves[1].payload_digest is None
    assert b"not an avro record" not in b"".join(
        leaf for chunk in _leaf_bytes(log.store) for leaf in chunk
    )
    assert backend.verify().ok


def _leaf_bytes(store: LogStore) -> Iterator[list[bytes]]:
    with store.reader() as reader:
        for chunk in reader.leaf_chunks(100):
            yield [leaf for _, leaf, _ in chunk]


def test_positions_are_committed_with_the_batch_and_survive_a_restart(backend: Backend) -> None:
    log = backend.log()
    first = consumed([record(n) for n in range(3)], start=40, partition=2)
    log.append_batch(first, {(TOPIC, 2): 43, (TOPIC, 5): 7})
    log.append_batch(consumed([record(9)], start=43, partition=2), {(TOPIC, 2): 44})

    restarted = backend.log()

    assert restarted.committed_positions() == {(TOPIC, 2): 44, (TOPIC, 5): 7}


class _FailingStore:
    """A store whose transactions fail right after storing the positions (mid-batch)."""

    def __init__(self, inner: LogStore) -> None:
        self._inner = inner
        self.origin = inner.origin

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._inner.transaction() as txn:
            yield _FailingTransaction(txn)


class _FailingTransaction:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.appended = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def append(self, rows: Any) -> None:
        self._inner.append(rows)
        self.appended = True

    def save_positions(self, positions: Any) -> None:
        assert self.appended  # the entries were written in this transaction
        self._inner.save_positions(positions)
        raise RuntimeError("crash in the middle of the batch")


def test_a_batch_failing_midway_leaves_no_trace_and_positions_unchanged(
    backend: Backend,
) -> None:
    log = backend.log()
    first = consumed([record(n) for n in range(2)])
    log.append_batch(first, next_positions(first))
    failing = backend.log(store=_FailingStore(backend.store()))
    second = consumed([record(n) for n in range(2, 6)], start=2)

    with pytest.raises(RuntimeError, match="crash"):
        failing.append_batch(second, next_positions(second))

    with log.store.reader() as reader:
        assert reader.size() == 2
        assert len(reader.checkpoints()) == 1
        assert reader.query_records(RecordFilter(event_id="evt-000002")) == []
    assert log.committed_positions() == {(TOPIC, 0): 2}
    assert sorted(p.name for p in backend.archive_dir.iterdir()) == ["2.note"]
    retried = log.append_batch(second, next_positions(second))
    assert [a.index for a in retried.appended] == [2, 3, 4, 5]
    assert log.committed_positions() == {(TOPIC, 0): 6}
    assert backend.verify().ok


def test_checkpoints_follow_the_policy_and_are_archived_outside_the_database(
    backend: Backend,
) -> None:
    log = backend.log(CheckpointPolicy(every=4, each_batch=False))
    for n in range(5):
        log.append_batch(consumed([record(2 * n), record(2 * n + 1)], start=2 * n), {})

    with log.store.reader() as reader:
        signed = [row.size for row in reader.checkpoints()]
    assert signed == [4, 8]
    assert log.checkpoint() is not None
    assert log.checkpoint() is None  # nothing new to sign
    archived = sorted(int(p.stem) for p in backend.archive_dir.glob("*.note"))
    assert archived == [4, 8, 10]
    report = backend.verify()
    assert report.ok
    assert report.unsigned_tail == 0


def test_the_key_store_creates_only_missing_keys_and_keeps_existing_ones(
    backend: Backend,
) -> None:
    keys, other = backend.keys(), backend.keys()
    old, new, third = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    first = keys.keys_for_tags([old], create=True)[old]

    # One call mixing a tag with a key (created by another connection) and new tags.
    made = other.keys_for_tags([old, new, third, new], create=True)

    assert made.keys() == {old, new, third}
    assert made[old] == first
    assert len({first.key_id, made[new].key_id, made[third].key_id}) == 3
    assert keys.keys_for_tags([old, new, third], create=False) == made
    assert keys.keys_for_tags([b"\x04" * 32], create=False) == {}
    assert keys.keys_for_tags([new], create=True) == {new: made[new]}


def test_trace_ids_are_remembered_once_and_never_changed(backend: Backend) -> None:
    log = backend.log()
    batch = consumed([record(n) for n in range(3)], start=10)
    log.append_batch(batch, next_positions(batch))
    first, other = "4bf92f3577b34da6a3ce929d0e0e4736", "a" * 32

    assert log.store.add_traces({0: first, 2: other}) >= 0
    log.store.add_traces({0: other, 1: first})  # entry 0 keeps its trace id

    reading = backend.open_reader()
    try:
        for store in (log.store, reading):
            with store.reader() as reader:
                assert reader.trace_ids([0, 1, 2, 3]) == {0: first, 1: first, 2: other}
                assert reader.trace_ids([]) == {}
    finally:
        reading.close()
    with pytest.raises(Exception, match="append-only"):
        backend.owner("UPDATE traces SET trace_id = ? WHERE idx = 0", [other])
    with pytest.raises(Exception, match="append-only"):
        backend.owner("DELETE FROM traces WHERE idx = 0", [])
    assert backend.verify().ok  # no leaf commits to them: the log verifies as before
