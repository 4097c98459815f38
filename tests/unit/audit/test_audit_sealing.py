"""Sealing personal data: AES-256-GCM per subject, keyed tags, and leaves free of identifiers."""

from __future__ import annotations

import hmac
import json
import os
import pickle
from datetime import UTC, datetime

import pytest
from audit_sink.leaf import (
    EntryType,
    Source,
    decode_leaf,
    encode_leaf,
    record_body,
    sealed_plaintext,
)
from audit_sink.merkle import leaf_hash
from audit_sink.sealing import (
    NONCE_SIZE,
    IndexKey,
    SealError,
    SubjectKey,
    new_key,
    new_nonces,
    open_sealed,
    payload_aad,
    payload_digest,
    seal,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.decision import Reason
from sharing_guard.contract.enums import Clause, Outcome, ReasonCode

PLAINTEXT = b'{"account_id":"acct-42","event_json":"{}"}'


def audit_record(account: str | None, event_json: str) -> AuditRecord:
    return AuditRecord(
        audit_id="DECISION:evt-1",
        kind=AuditKind.DECISION,
        event_id="evt-1",
        event_type="TransferRequested",
        occurred_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        account_id=account,
        recipient_id="rcp-1",
        outcome=Outcome.BLOCK,
        reasons=(Reason(code=ReasonCode.CONSENT_MISSING, clause=Clause.THIRD_PARTY_CONSENT),),
        policy_version="2026.1",
        event_json=event_json,
    )


def test_a_sealed_payload_opens_with_its_key_for_its_entry() -> None:
    key = new_key()

    sealed = seal(key, PLAINTEXT, payload_aad(7))

    assert open_sealed(key, sealed, payload_aad(7)) == PLAINTEXT
    assert PLAINTEXT not in sealed


def test_the_wrong_key_does_not_open_it() -> None:
    sealed = seal(new_key(), PLAINTEXT, payload_aad(7))

    with pytest.raises(SealError):
        open_sealed(new_key(), sealed, payload_aad(7))


def test_a_payload_moved_to_another_entry_does_not_open() -> None:
    key = new_key()
    sealed = seal(key, PLAINTEXT, payload_aad(7))

    with pytest.raises(SealError):
        open_sealed(key, sealed, payload_aad(8))


@pytest.mark.parametrize("position", [0, 11, 20, -1])
def test_any_altered_byte_fails_to_open(position: int) -> None:
    key = new_key()
    sealed = bytearray(seal(key, PLAINTEXT, payload_aad(1)))
    sealed[position] ^= 0x01

    with pytest.raises(SealError):
        open_sealed(key, bytes(sealed), payload_aad(1))


def test_sealing_twice_gives_different_ciphertexts_and_digests() -> None:
    key = new_key()

    first, second = seal(key, PLAINTEXT, payload_aad(1)), seal(key, PLAINTEXT, payload_aad(1))

    assert first[:12] != second[:12]  # fresh nonces
    assert payload_digest(first) != payload_digest(second)


def test_subject_keys_never_show_their_bytes() -> None:
    key = SubjectKey("kid", os.urandom(32))

    assert key.key.hex() not in repr(key)
    assert "secret" in repr(IndexKey(os.urandom(32)))
    with pytest.raises(ValueError, match="32 bytes"):
        SubjectKey("kid", b"short")


def test_account_tags_are_keyed_and_apart_from_content_macs() -> None:
    one, other = IndexKey(os.urandom(32)), IndexKey(os.urandom(32))

    assert one.account_tag("acct-1") == one.account_tag("acct-1")
    assert one.account_tag("acct-1") != other.account_tag("acct-1")
    assert one.account_tag("acct-1") != one.account_tag("acct-2")
    assert one.account_tag("acct-1") != one.content_mac(b"acct-1")
    with pytest.raises(ValueError, match="at least 32"):
        IndexKey(b"too short")


ACCOUNTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
).map(lambda s: f"ACCT#{s}")


@settings(max_examples=200, deadline=None)
@given(account=ACCOUNTS, extra=st.text(max_size=60))
def test_a_leaf_never_contains_the_account_id(account: str, extra: str) -> None:
    event_json = json.dumps({"account_id": account, "note": extra})
    record = audit_record(account, event_json)
    key = new_key()
    sealed = seal(key, sealed_plaintext(record), payload_aad(3))

    leaf = encode_leaf(
        EntryType.RECORD,
        index=3,
        prev=leaf_hash(b"previous"),
        payload_digest=payload_digest(sealed),
        source=Source("governance.audit", 0, 3),
        body=record_body(record, sealed=True),
    )

    for spelling in (account, json.dumps(account)[1:-1]):
        assert spelling.encode("utf-8") not in leaf
    assert json.loads(open_sealed(key, sealed, payload_aad(3)))["account_id"] == account
    assert decode_leaf(leaf).payload_digest == payload_digest(sealed)


def test_a_record_without_account_keeps_its_event_in_the_leaf() -> None:
    record = audit_record(None, '{"type":"OrderRegistered"}')

    body = record_body(record, sealed=False)

    assert body["sealed"] == []
    assert body["event_json"] == '{"type":"OrderRegistered"}'


@given(st.binary(max_size=300), st.text(max_size=40))
@settings(max_examples=50, deadline=None)
def test_index_key_macs_are_hmac_sha256_of_domain_and_message(data: bytes, account: str) -> None:
    # The pre-keyed HMAC states copied per message give the one-shot MACs, also after a
    # pickle round trip (how a prepare helper receives the key).
    key = os.urandom(32)
    index_key = IndexKey(key)
    content = hmac.digest(key, b"audit-sink/v1/content-mac\x00" + data, "sha256")
    tag = hmac.digest(key, b"audit-sink/v1/account-tag\x00" + account.encode(), "sha256")
    for which in (index_key, pickle.loads(pickle.dumps(index_key))):
        assert which.content_mac(data) == content
        assert which.account_tag(account) == tag
        assert which.content_mac(data) == content  # the pre-keyed states are not consumed
    assert repr(index_key) == "IndexKey(<secret>)"


def test_a_batch_of_nonces_is_random_and_of_the_nonce_size() -> None:
    nonces = new_nonces(2000)
    assert len(nonces) == 2000
    assert {len(n) for n in nonces} == {NONCE_SIZE}
    assert len(set(nonces)) == 2000
    assert new_nonces(0) == []
