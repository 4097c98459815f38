"""Preparing values: the assembled canonical texts are exactly the reference encodings."""

from __future__ import annotations

import os
import pickle

from audit_sink.canonical import canonical_json
from audit_sink.fastdecode import AuditDecoder
from audit_sink.leaf import millis, record_body, sealed_plaintext
from audit_sink.prepare import (
    Prepared,
    PreparedRecord,
    PreparePool,
    prepare_values,
    record_texts,
)
from audit_sink.samples import sample_records
from audit_sink.sealing import IndexKey
from hypothesis import given, settings
from sharing_guard.codec import contract_registry
from sharing_guard.contract.audit import AuditRecord
from test_audit_fastdecode import records

REGISTRY = contract_registry()
KEY = IndexKey(os.urandom(32))


def reference(record: AuditRecord) -> tuple[bytes, bytes, bytes | None]:
    sealed = record.account_id is not None
    return (
        canonical_json(record.model_dump(mode="json")),
        canonical_json(record_body(record, sealed=sealed)),
        sealed_plaintext(record) if sealed else None,
    )


def test_sample_records_have_the_reference_texts() -> None:
    for record in sample_records(400, seed=9):
        texts = record_texts(record.model_dump(mode="json"), millis(record.occurred_at))
        assert texts == reference(record)


@settings(max_examples=300, deadline=None)
@given(records)
def test_any_record_has_the_reference_texts(record: AuditRecord) -> None:
    texts = record_texts(record.model_dump(mode="json"), millis(record.occurred_at))
    assert texts == reference(record)


def test_prepared_values_carry_the_macs_tags_and_rows() -> None:
    values = [REGISTRY.encode(r) for r in sample_records(50, seed=4)]
    values += [values[3], None, b"garbage"]
    prepared = prepare_values(values, AuditDecoder(), KEY)

    assert prepared[50] is prepared[3]  # the same bytes are prepared once
    assert prepared[51].record is None
    assert prepared[51].raw_mac == KEY.content_mac(b"\x00")
    assert prepared[52].record is None
    assert prepared[52].error is not None
    for value, item in zip(values[:50], prepared[:50], strict=True):
        record = REGISTRY.decode(value)
        assert item.raw_mac == KEY.content_mac(b"\x01" + value)
        assert item.record is not None
        assert item.record.content_mac == KEY.content_mac(reference(record)[0])
        assert item.record.body == reference(record)[1]
        assert item.record.plaintext == reference(record)[2]
        expected_tag = None if record.account_id is None else KEY.account_tag(record.account_id)
        assert item.record.account_tag == expected_tag
        codes = "".join(f"{r.code.value}," for r in record.reasons)
        assert item.record.reason_codes == "," + codes
        assert item.record.occurred_at == millis(record.occurred_at)


def test_prepared_values_come_back_from_a_helper_equal_and_with_their_row() -> None:
    values = [REGISTRY.encode(r) for r in sample_records(20, seed=5)] + [None, b"junk"]
    prepared = prepare_values(values, AuditDecoder(), KEY)

    back = pickle.loads(pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL))

    assert back == prepared
    assert [type(p) for p in back] == [Prepared] * len(values)
    for item in back[:20]:
        record = item.record
        assert type(record) is PreparedRecord
        assert record.row == (
            record.audit_id,
            record.kind,
            record.event_id,
            record.recipient_id,
            record.order_ref,
            record.outcome,
            record.occurred_at,
            record.reason_codes,
            record.content_mac,
        )


def test_the_helper_prepares_as_this_process_does() -> None:
    values = [REGISTRY.encode(r) for r in sample_records(30, seed=6)]
    values += [values[2], None, b"junk"]
    pool = PreparePool(KEY)
    try:
        first = pool.submit(values)
        second = pool.submit(values[:3])
        assert first.result(timeout=60) == prepare_values(values, AuditDecoder(), KEY)
        assert second.result(timeout=60) == prepare_values(values[:3], AuditDecoder(), KEY)
        assert [type(p) for p in first.result()] == [Prepared] * len(values)
        assert {type(p.record) for p in first.result()[:30]} == {PreparedRecord}
    finally:
        pool.close()
