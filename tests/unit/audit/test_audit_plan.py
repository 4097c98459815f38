"""Planning a consumed batch: redeliveries skipped, duplicates and offset anomalies logged."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from audit_sink.leaf import AnomalyCode, Source
from audit_sink.plan import (
    ConsumedRecord,
    Plan,
    PlannedAnomaly,
    PlannedRecord,
    _Planner,
    plan_batch,
)
from audit_sink.store import SourceRow
from audit_sink.writer import decode_audit_record
from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.codec import contract_registry
from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.enums import Outcome

TOPIC = "governance.audit"


def audit(n: int, outcome: Outcome = Outcome.BLOCK, account: str | None = "acct-1") -> bytes:
    record = AuditRecord(
        audit_id=f"DECISION:evt-{n}",
        kind=AuditKind.DECISION,
        event_id=f"evt-{n}",
        event_type="TransferRequested",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        account_id=account,
        outcome=outcome,
        policy_version="2026.1",
        event_json="{}",
    )
    return contract_registry().encode(record)


def mac(value: bytes | None) -> bytes:
    return hashlib.sha256(b"raw" + (value or b"<none>")).digest()


def content(record: AuditRecord) -> bytes:
    return hashlib.sha256(record.model_dump_json().encode()).digest()


def plan(batch: list[ConsumedRecord], next_index: int = 10, **state: Any) -> Plan:
    return plan_batch(
        batch,
        next_index=next_index,
        decode=decode_audit_record,
        raw_mac=mac,
        record_mac=content,
        seen=state.get("seen", {}),
        max_offsets=state.get("max_offsets", {}),
        known_records=state.get("known_records", {}),
    )


def at(offset: int, value: bytes | None, partition: int = 0) -> ConsumedRecord:
    return ConsumedRecord(TOPIC, partition, offset, value)


def test_new_records_get_consecutive_indices_and_their_positions_are_remembered() -> None:
    result = plan([at(5, audit(1)), at(9, audit(2), partition=1)])

    assert [type(e) for e in result.entries] == [PlannedRecord, PlannedRecord]
    assert [e.index for e in result.entries] == [10, 11]
    assert [e.source for e in result.entries] == [Source(TOPIC, 0, 5), Source(TOPIC, 1, 9)]
    assert result.sources == (
        SourceRow(TOPIC, 0, 5, mac(audit(1)), 10),
        SourceRow(TOPIC, 1, 9, mac(audit(2)), 11),
    )
    assert result.skipped == ()


def test_the_same_bytes_at_a_seen_position_are_skipped_without_a_trace() -> None:
    value = audit(1)

    result = plan([at(5, value)], seen={(TOPIC, 0, 5): {mac(value): 3}})

    assert result.entries == ()
    assert result.sources == ()
    assert [s.reason for s in result.skipped] == ["redelivered"]


def test_other_bytes_at_a_seen_position_are_an_anomaly_pointing_at_the_first() -> None:
    result = plan([at(5, audit(2))], seen={(TOPIC, 0, 5): {mac(audit(1)): 3}})

    (entry,) = result.entries
    assert isinstance(entry, PlannedAnomaly)
    assert (entry.code, entry.related_index, entry.event_id) == (
        AnomalyCode.OFFSET_REWRITTEN,
        3,
        "evt-2",
    )
    assert entry.raw == audit(2)
    assert entry.account_id == "acct-1"


def test_an_unseen_offset_below_the_highest_is_a_regression_and_keeps_the_highest() -> None:
    result = plan([at(4, audit(1)), at(8, audit(2))], max_offsets={(TOPIC, 0): 7})

    assert [getattr(e, "code", None) for e in result.entries] == [
        AnomalyCode.OFFSET_REGRESSION,
        None,
    ]


def test_tombstones_and_undecodable_bytes_are_anomalies() -> None:
    result = plan([at(1, None), at(2, b"garbage")])

    empty, undecodable = result.entries
    assert isinstance(empty, PlannedAnomaly)
    assert isinstance(undecodable, PlannedAnomaly)
    assert (empty.code, empty.raw) == (AnomalyCode.EMPTY_RECORD, None)
    assert (undecodable.code, undecodable.raw) == (AnomalyCode.UNDECODABLE, b"garbage")
    assert undecodable.account_id is None
    assert "marker C3 01 missing" in undecodable.detail
    assert "garbage" not in undecodable.detail


def test_a_stored_audit_id_with_the_same_content_is_skipped_but_its_position_kept() -> None:
    record = decode_audit_record(audit(1))

    result = plan([at(30, audit(1))], known_records={record.audit_id: (4, content(record))})

    assert result.entries == ()
    assert [s.reason for s in result.skipped] == ["duplicate audit_id, same content"]
    assert result.sources == (SourceRow(TOPIC, 0, 30, mac(audit(1)), None),)


def test_a_stored_audit_id_with_other_content_is_a_conflict_pointing_at_the_first() -> None:
    first = decode_audit_record(audit(1))

    result = plan(
        [at(30, audit(1, Outcome.ALLOW))], known_records={first.audit_id: (4, content(first))}
    )

    (entry,) = result.entries
    assert isinstance(entry, PlannedAnomaly)
    assert (entry.code, entry.related_index) == (AnomalyCode.DUPLICATE_CONFLICT, 4)


def test_duplicates_inside_one_batch_follow_the_same_rules() -> None:
    result = plan(
        [at(1, audit(1)), at(2, audit(1)), at(3, audit(1, Outcome.ALLOW)), at(1, audit(1))]
    )

    assert [(type(e).__name__, e.index) for e in result.entries] == [
        ("PlannedRecord", 10),
        ("PlannedAnomaly", 11),
    ]
    anomaly = result.entries[1]
    assert isinstance(anomaly, PlannedAnomaly)
    assert anomaly.related_index == 10
    assert [s.reason for s in result.skipped] == [
        "duplicate audit_id, same content",
        "redelivered",
    ]


def _general_rules_only(batch: list[ConsumedRecord], next_index: int, **state: Any) -> Plan:
    """The plan made by the planner's general rules, record by record (no inline fast
    path): the reference for :func:`plan_batch`."""
    planner = _Planner(
        next_index,
        decode_audit_record,
        state.get("seen", {}),
        state.get("max_offsets", {}),
        state.get("known_records", {}),
    )
    for item in batch:
        planner.add(item, mac(item.value), content)
    return Plan(tuple(planner.entries), tuple(planner.sources), tuple(planner.skipped))


_VALUES = st.sampled_from(
    [audit(1), audit(2), audit(2, Outcome.ALLOW), audit(3, account=None), None, b"\x00junk"]
)


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), _VALUES), max_size=14),
    st.dictionaries(st.integers(0, 1), st.integers(0, 4), max_size=2),
    st.sets(st.integers(1, 3), max_size=2),
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4), _VALUES), max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_the_fast_path_plans_as_the_general_rules(
    items: list[tuple[int, int, bytes | None]],
    highest: dict[int, int],
    stored: set[int],
    seen_before: list[tuple[int, int, bytes | None]],
) -> None:
    batch = [at(offset, value, partition) for partition, offset, value in items]
    known = {f"DECISION:evt-{n}": (n, content(decode_audit_record(audit(n)))) for n in stored}
    seen: dict[tuple[str, int, int], dict[bytes, int | None]] = {}
    for partition, offset, value in seen_before:
        seen.setdefault((TOPIC, partition, offset), {})[mac(value)] = offset or None
    state: dict[str, Any] = {
        "seen": seen,
        "max_offsets": {(TOPIC, p): o for p, o in highest.items()},
        "known_records": known,
    }

    assert plan(batch, 7, **state) == _general_rules_only(batch, 7, **state)
