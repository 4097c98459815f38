"""How the writer stores a batch: as plain row tuples, with the collector paused.

On both stores: a batch of a few thousand records stores exactly the rows an independent
computation from the records gives (leaf bytes, chain, sealed payloads, lookup rows,
sources); Python's garbage collector is paused during an append and restored as it was,
also when the append fails; a batch that continues its partitions looks up no consumed
position, while a redelivered one is still recognised.
"""

# The fixtures come from test_audit_support; pytest resolves parameters named after them.
# ruff: noqa: F811

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from audit_sink.canonical import canonical_json
from audit_sink.leaf import (
    ZERO_HASH,
    EntryType,
    Source,
    decode_leaf,
    encode_leaf,
    millis,
    record_body,
    sealed_plaintext,
)
from audit_sink.merkle import leaf_hash
from audit_sink.sealing import open_sealed, payload_aad
from audit_sink.store import LogStore
from sharing_guard.contract.audit import AuditRecord
from test_audit_support import (
    TOPIC,
    Backend,
    backend,  # noqa: F401
    consumed,
    encode,
    next_positions,
    pg_names,  # noqa: F401
    record,
)


def _records(count: int) -> list[AuditRecord]:
    """Records of five accounts, one in seven naming none (then not sealed)."""
    return [record(n, account=None if n % 7 == 3 else f"acct-{n % 5}") for n in range(count)]


def _rows(backend: Backend, sql: str) -> list[tuple[Any, ...]]:
    return [
        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
        for row in backend.owner(sql, [])
    ]


def test_a_large_batch_stores_exactly_the_expected_rows(backend: Backend) -> None:
    records = _records(1207)
    batch = consumed(records, start=10)
    # a redelivery of the same record at a new offset (skipped, its source kept), a
    # tombstone and undecodable bytes (anomalies)
    batch += consumed([records[5], None, b"\x00not avro"], start=10 + len(records))
    log = backend.log()

    result = log.append_batch(batch, next_positions(batch))

    count = len(records) + 2
    assert [a.index for a in result.appended] == list(range(count))
    assert [s.reason for s in result.skipped] == ["duplicate audit_id, same content"]
    leaves = _rows(backend, "SELECT idx, leaf, leaf_hash FROM leaves ORDER BY idx")
    payloads = {
        row[0]: row[1:]
        for row in _rows(backend, "SELECT idx, key_id, account_tag, sealed FROM payloads")
    }
    keys = backend.keys()
    prev = ZERO_HASH
    for (idx, leaf, stored_hash), rec in zip(leaves, records, strict=False):
        sealed = rec.account_id is not None
        digest = None
        if sealed:
            key_id, tag, blob = payloads[idx]
            assert tag == backend.index_key.account_tag(str(rec.account_id))
            key = keys.keys_for_tags([tag], create=False)[tag]
            assert key.key_id == key_id
            assert open_sealed(key.key, blob, payload_aad(idx)) == sealed_plaintext(rec)
            digest = hashlib.sha256(blob).digest()
        else:
            assert idx not in payloads
        expected = encode_leaf(
            EntryType.RECORD,
            index=idx,
            prev=prev,
            payload_digest=digest,
            source=Source(TOPIC, 0, 10 + idx),
            body=record_body(rec, sealed=sealed),
        )
        assert leaf == expected
        assert stored_hash == leaf_hash(expected)
        prev = stored_hash
    assert [decode_leaf(leaf).type for _, leaf, _ in leaves[len(records) :]] == [
        EntryType.ANOMALY
    ] * 2
    assert len(leaves) == count
    assert len(payloads) == sum(r.account_id is not None for r in records) + 1  # the junk
    assert _rows(backend, "SELECT * FROM records ORDER BY idx") == [
        (
            n,
            rec.audit_id,
            rec.kind.value,
            rec.event_id,
            rec.recipient_id,
            rec.order_ref,
            None if rec.outcome is None else rec.outcome.value,
            millis(rec.occurred_at),
            "," + "".join(f"{r.code.value}," for r in rec.reasons),
            backend.index_key.content_mac(canonical_json(rec.model_dump(mode="json"))),
        )
        for n, rec in enumerate(records)
    ]
    entry_of = {10 + n: n for n in range(len(records))}
    entry_of.update({10 + len(records): None, 11 + len(records): len(records)})
    entry_of[12 + len(records)] = len(records) + 1
    assert sorted(_rows(backend, "SELECT topic, part, off, content_mac, idx FROM sources")) == [
        (TOPIC, 0, m.offset, backend.index_key.content_mac(b"\x01" + m.value), entry_of[m.offset])
        if m.value is not None
        else (TOPIC, 0, m.offset, backend.index_key.content_mac(b"\x00"), entry_of[m.offset])
        for m in batch
    ]
    assert log.committed_positions() == {(TOPIC, 0): 13 + len(records)}
    report = backend.verify()
    assert report.ok, report.problems
    assert report.size == count


class _Watched:
    """A store whose transactions note whether the collector runs when rows are appended
    and which positions are looked up; ``fail`` makes the positions' save fail."""

    def __init__(self, inner: LogStore) -> None:
        self._inner = inner
        self.origin = inner.origin
        self.collecting: list[bool] = []
        self.looked_up: list[set[Any]] = []
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._inner.transaction() as txn:
            yield _WatchedTransaction(txn, self)


class _WatchedTransaction:
    def __init__(self, inner: Any, store: _Watched) -> None:
        self._inner = inner
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def append(self, rows: Any) -> None:
        self._store.collecting.append(gc.isenabled())
        self._inner.append(rows)

    def source_macs(self, positions: Any) -> Any:
        self._store.looked_up.append(set(positions))
        return self._inner.source_macs(positions)

    def save_positions(self, positions: Any) -> None:
        if self._store.fail:
            raise RuntimeError("failed after the rows")
        self._inner.save_positions(positions)


def test_the_collector_is_paused_during_an_append_and_restored_as_it_was(
    backend: Backend,
) -> None:
    store = _Watched(backend.store())
    log = backend.log(store=store)
    assert gc.isenabled()

    log.append_batch(consumed(_records(2)), {})
    assert gc.isenabled()
    store.fail = True
    with pytest.raises(RuntimeError, match="failed after the rows"):
        log.append_batch(consumed(_records(4)[2:], start=2), {})
    assert gc.isenabled()
    gc.disable()
    try:
        store.fail = False
        log.append_batch(consumed(_records(4)[2:], start=2), {})
        assert not gc.isenabled()  # not re-enabled by the writer
    finally:
        gc.enable()

    assert store.collecting == [False, False, False]


def test_a_batch_continuing_its_partitions_looks_up_no_position(backend: Backend) -> None:
    store = _Watched(backend.store())
    log = backend.log(store=store)
    records = [encode(r) for r in _records(8)]

    log.append_batch(consumed(records[:4]), {})
    log.append_batch(consumed(records[4:], start=4), {})
    again = log.append_batch(consumed(records[2:6], start=2), {})  # redelivered

    assert store.looked_up == [set(), set(), {(TOPIC, 0, n) for n in range(2, 6)}]
    assert again.appended == ()
    assert [s.reason for s in again.skipped] == ["redelivered"] * 4
