"""The fast AuditRecord decoder against the contract codec: same accepted bytes, same values.

The contract codec (fastavro, re-encoding check, pydantic validation) is the reference:
on valid records, on records drawn by hypothesis, and on random and targeted corruptions of
valid encodings, both must accept or both reject, and agree on the record and its JSON form.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from audit_sink.fastdecode import AuditDecoder
from audit_sink.samples import sample_records
from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.codec import HEADER_SIZE, DecodeError, contract_registry
from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.decision import Decision, Reason
from sharing_guard.contract.enums import Clause, Outcome, ReasonCode

REGISTRY = contract_registry()
DECODER = AuditDecoder()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reference(data: bytes) -> AuditRecord | None:
    try:
        value = REGISTRY.decode(data)
    except DecodeError:
        return None
    return value if isinstance(value, AuditRecord) else None


def fast(data: bytes) -> tuple[AuditRecord, dict[str, object]] | None:
    try:
        return DECODER.decode_with_json(data)
    except DecodeError:
        return None


def fast_json(data: bytes) -> tuple[dict[str, object], int] | None:
    try:
        return DECODER.decode_json(data)
    except DecodeError:
        return None


def assert_same(data: bytes) -> bool:
    """Both decoders agree on ``data`` (the model-free JSON form included); return whether
    it decoded."""
    expected, got, got_json = reference(data), fast(data), fast_json(data)
    assert (expected is None) == (got is None) == (got_json is None), data.hex()
    if expected is None or got is None or got_json is None:
        return False
    assert got_json[0] == expected.model_dump(mode="json")
    assert got_json[1] == (expected.occurred_at - EPOCH) // timedelta(milliseconds=1)
    record, as_json = got
    assert record == expected
    assert record.model_dump() == expected.model_dump()
    assert record.model_fields_set == expected.model_fields_set
    assert as_json == expected.model_dump(mode="json")
    return True


def test_the_fast_path_is_on_for_the_current_contract() -> None:
    assert DECODER.fast


def test_sample_records_decode_identically() -> None:
    for record in sample_records(500, seed=3):
        assert assert_same(REGISTRY.encode(record))


optional_text = st.none() | st.text(max_size=40)
instants = st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
)
records = st.builds(
    AuditRecord,
    audit_id=st.text(max_size=60),
    kind=st.sampled_from(AuditKind),
    event_id=st.text(max_size=60),
    event_type=st.text(max_size=30),
    occurred_at=instants,
    account_id=optional_text,
    recipient_id=optional_text,
    order_ref=optional_text,
    actor=optional_text,
    outcome=st.none() | st.sampled_from(Outcome),
    reasons=st.lists(
        st.builds(Reason, code=st.sampled_from(ReasonCode), clause=st.sampled_from(Clause)),
        max_size=4,
    ).map(tuple),
    policy_version=optional_text,
    event_json=st.text(max_size=200),
)


@settings(max_examples=300, deadline=None)
@given(records)
def test_any_record_decodes_identically(record: AuditRecord) -> None:
    assert assert_same(REGISTRY.encode(record))


@settings(max_examples=600, deadline=None)
@given(records, st.data())
def test_corrupted_encodings_are_judged_identically(
    record: AuditRecord, data: st.DataObject
) -> None:
    encoded = bytearray(REGISTRY.encode(record))
    body = len(encoded) - HEADER_SIZE
    for _ in range(data.draw(st.integers(1, 3))):
        at = HEADER_SIZE + data.draw(st.integers(0, max(0, body - 1)))
        how = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if how == "flip" and at < len(encoded):
            encoded[at] ^= data.draw(st.integers(1, 255))
        elif how == "insert":
            encoded.insert(at, data.draw(st.integers(0, 255)))
        elif how == "delete" and at < len(encoded):
            del encoded[at]
        elif how == "truncate":
            del encoded[at:]
    assert_same(bytes(encoded))


def minimal(record: AuditRecord | None = None) -> bytes:
    return REGISTRY.encode(
        record
        or AuditRecord(
            audit_id="a",
            kind=AuditKind.DECISION,
            event_id="e",
            event_type="t",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            outcome=Outcome.BLOCK,
            reasons=(Reason(code=ReasonCode.CONSENT_MISSING, clause=Clause.THIRD_PARTY_CONSENT),),
            event_json="{}",
        )
    )


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("padded varint", lambda b: b[:10] + b"\x82\x00" + b[11:]),  # len("a") as 2 bytes
        ("negative enum index", lambda b: b[:12] + b"\x01" + b[13:]),  # kind = -1
        ("enum index out of range", lambda b: b[:12] + b"\x04" + b[13:]),  # kind = 2
        ("trailing byte", lambda b: b + b"\x00"),
        ("truncated", lambda b: b[:-1]),
        ("invalid UTF-8", lambda b: b[:11] + b"\xff" + b[12:]),
    ],
)
def test_non_canonical_or_corrupt_bytes_are_refused_by_both(name: str, mutate: object) -> None:
    data = mutate(minimal())  # type: ignore[operator]
    assert not assert_same(data), name
    with pytest.raises(DecodeError):
        DECODER(data)


def test_another_contract_record_or_no_record_is_refused() -> None:
    decision = REGISTRY.encode(
        Decision(event_id="e", outcome=Outcome.ALLOW, reasons=(), policy_version="1")
    )
    for data in (decision, b"", b"\xc3\x01", b"plain text"):
        with pytest.raises(DecodeError):
            DECODER(data)
