"""Preparing values: the assembled canonical texts are exactly the reference encodings."""

from __future__ import annotations

import os

from audit_sink.canonical import canonical_json
from audit_sink.fastdecode import AuditDecoder
from audit_sink.leaf import millis, record_body, sealed_plaintext
from audit_sink.prepare import prepare_values, record_texts
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
