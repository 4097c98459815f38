"""The wire codec: Avro single-object encoding and the JSON form of every contract record.

Every event, the decision and the audit record survive a round trip through Avro binary and
through JSON unchanged; the wire header is the Avro specification's single-object marker
and the CRC-64-AVRO fingerprint of the writer schema (computed here independently); and
anything that is not a valid record raises :class:`~sharing_guard.codec.DecodeError`, never
another exception, with a message that does not repeat the record's contents.
"""

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from sharing_guard.codec import (
    AvroCodec,
    CodecRegistry,
    DecodeError,
    contract_registry,
    load_avro_schema,
)
from sharing_guard.contract import (
    EVENT_TYPES,
    AuditKind,
    AuditRecord,
    Clause,
    ConsentChanged,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Decision,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    OrderType,
    Outcome,
    Purpose,
    Reason,
    ReasonCode,
    Recipient,
    RecipientDeregistered,
    RecipientRegistered,
    RecipientType,
    SubjectRightsAction,
    SubjectRightsChanged,
    TransferRequested,
    parse_event_json,
)

REGISTRY = contract_registry()
RECORD_NAMES = (*EVENT_TYPES, "Decision", "AuditRecord")
MARKER = b"\xc3\x01"
INT_MAX, LONG_MAX = 2**31 - 1, 2**63 - 1

SECRET = "acc-SECRET-4711"
"""A string that must never show up in a decode error's message."""


# --- strategies: valid contract records ------------------------------------------------

ids = st.text(min_size=1, max_size=24)
texts = st.text(max_size=40)
countries = st.from_regex(r"[A-Z]{2}", fullmatch=True)
zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=zones
)
reasons = st.builds(Reason, code=st.sampled_from(ReasonCode), clause=st.sampled_from(Clause))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The value or ``None``."""
    return st.none() | strategy


def tuples_of(strategy: st.SearchStrategy[Any], min_size: int = 0) -> st.SearchStrategy[Any]:
    """Tuples of up to four values."""
    return st.lists(strategy, min_size=min_size, max_size=4).map(tuple)


recipients = st.builds(
    Recipient, id=ids, type=st.sampled_from(RecipientType), jurisdiction=countries
)

transfers = st.builds(
    TransferRequested,
    event_id=ids,
    occurred_at=instants,
    source_service=ids,
    account_id=ids,
    subject_age=optional(st.integers(min_value=0, max_value=INT_MAX)),
    data_categories=tuples_of(st.sampled_from(DataCategory), min_size=1),
    recipient=recipients,
    purpose=st.sampled_from(Purpose),
    order_ref=optional(ids),
    fraud_case_ref=optional(ids),
    transaction_ref=optional(ids),
    payload_ref=optional(texts),
    size_bytes=optional(st.integers(min_value=0, max_value=LONG_MAX)),
)


@st.composite
def consents(draw: st.DrawFn) -> ConsentChanged:
    """A consent change; a recipient exactly when the scope is third-party sharing."""
    scope = draw(st.sampled_from(ConsentScope))
    return ConsentChanged(
        event_id=draw(ids),
        occurred_at=draw(instants),
        account_id=draw(ids),
        scope=scope,
        recipient_id=draw(ids) if scope is ConsentScope.THIRD_PARTY_SHARING else None,
        status=draw(st.sampled_from(ConsentStatus)),
    )


@st.composite
def orders(draw: st.DrawFn) -> OrderRegistered:
    """A registered order with an ordered validity window."""
    valid_from, valid_until = sorted(
        (draw(instants), draw(instants)), key=lambda instant: instant.astimezone(UTC)
    )
    return OrderRegistered(
        event_id=draw(ids),
        occurred_at=draw(instants),
        order_ref=draw(ids),
        order_type=draw(st.sampled_from(OrderType)),
        authority=draw(ids),
        jurisdiction=draw(countries),
        recipient_id=draw(ids),
        account_ids=draw(tuples_of(ids, min_size=1)),
        data_categories=draw(tuples_of(st.sampled_from(DataCategory))),
        valid_from=valid_from,
        valid_until=valid_until,
        max_disclosures=draw(optional(st.integers(min_value=1, max_value=INT_MAX))),
        registered_by=draw(ids),
    )


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "TransferRequested": transfers,
    "ConsentChanged": consents(),
    "RecipientRegistered": st.builds(
        RecipientRegistered,
        event_id=ids,
        occurred_at=instants,
        recipient_id=ids,
        recipient_type=st.sampled_from(RecipientType),
        jurisdiction=countries,
        permitted_purposes=tuples_of(st.sampled_from(Purpose)),
        agreement_ref=ids,
    ),
    "RecipientDeregistered": st.builds(
        RecipientDeregistered, event_id=ids, occurred_at=instants, recipient_id=ids
    ),
    "SubjectRightsChanged": st.builds(
        SubjectRightsChanged,
        event_id=ids,
        occurred_at=instants,
        account_id=ids,
        action=st.sampled_from(SubjectRightsAction),
    ),
    "OrderRegistered": orders(),
    "OrderApproved": st.builds(
        OrderApproved, event_id=ids, occurred_at=instants, order_ref=ids, approved_by=ids
    ),
    "OrderRevoked": st.builds(
        OrderRevoked,
        event_id=ids,
        occurred_at=instants,
        order_ref=ids,
        revoked_by=ids,
        reason=st.text(min_size=1, max_size=40),
    ),
    "Decision": st.builds(
        Decision,
        event_id=texts,
        outcome=st.sampled_from(Outcome),
        reasons=tuples_of(reasons),
        policy_version=texts,
        order_ref=optional(texts),
    ),
    "AuditRecord": st.builds(
        AuditRecord,
        audit_id=texts,
        kind=st.sampled_from(AuditKind),
        event_id=texts,
        event_type=texts,
        occurred_at=instants,
        account_id=optional(texts),
        recipient_id=optional(texts),
        order_ref=optional(texts),
        actor=optional(texts),
        outcome=optional(st.sampled_from(Outcome)),
        reasons=tuples_of(reasons),
        policy_version=optional(texts),
        event_json=texts,
    ),
}
assert set(STRATEGIES) == set(RECORD_NAMES)

any_record = st.one_of(*STRATEGIES.values())


def parse_json(name: str, text: str) -> BaseModel:
    """The contract's JSON parser for an event; the model's own for the other records."""
    if name in EVENT_TYPES:
        return parse_event_json(text)
    model: type[BaseModel] = {"Decision": Decision, "AuditRecord": AuditRecord}[name]
    return model.model_validate_json(text)


# --- fixed records with a secret in them, for the bad-input cases ----------------------

T = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

EXAMPLES: dict[str, BaseModel] = {
    "TransferRequested": TransferRequested(
        event_id="evt-1",
        occurred_at=T,
        source_service="billing",
        account_id=SECRET,
        subject_age=41,
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        recipient=Recipient(id="rcp-mailer", type=RecipientType.AGENT, jurisdiction="CH"),
        purpose=Purpose.DATA_ANALYSIS,
        payload_ref="s3://outbox/x",
    ),
    "ConsentChanged": ConsentChanged(
        event_id="evt-2",
        occurred_at=T,
        account_id=SECRET,
        scope=ConsentScope.THIRD_PARTY_SHARING,
        recipient_id="rcp-partner",
        status=ConsentStatus.GRANTED,
    ),
    "RecipientRegistered": RecipientRegistered(
        event_id="evt-3",
        occurred_at=T,
        recipient_id="rcp-mailer",
        recipient_type=RecipientType.SUBCONTRACTOR,
        jurisdiction="CH",
        permitted_purposes=(Purpose.CUSTOMER_COMMUNICATIONS,),
        agreement_ref="dpa-7",
    ),
    "RecipientDeregistered": RecipientDeregistered(
        event_id="evt-4", occurred_at=T, recipient_id="rcp-mailer"
    ),
    "SubjectRightsChanged": SubjectRightsChanged(
        event_id="evt-5",
        occurred_at=T,
        account_id=SECRET,
        action=SubjectRightsAction.RESTRICTION_APPLIED,
    ),
    "OrderRegistered": OrderRegistered(
        event_id="evt-6",
        occurred_at=T,
        order_ref="ord-1",
        order_type=OrderType.COURT_ORDER,
        authority="Zug court",
        jurisdiction="CH",
        recipient_id="agency-1",
        account_ids=(SECRET,),
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        valid_from=T,
        valid_until=T + timedelta(days=30),
        max_disclosures=2,
        registered_by="officer-a",
    ),
    "OrderApproved": OrderApproved(
        event_id="evt-7", occurred_at=T, order_ref="ord-1", approved_by="officer-b"
    ),
    "OrderRevoked": OrderRevoked(
        event_id="evt-8",
        occurred_at=T,
        order_ref="ord-1",
        revoked_by="officer-b",
        reason="quashed on appeal",
    ),
    "Decision": Decision(
        event_id=SECRET,
        outcome=Outcome.BLOCK,
        reasons=(Reason(code=ReasonCode.SUBJECT_ERASED, clause=Clause.ERASURE),),
        policy_version="policy@1",
    ),
    "AuditRecord": AuditRecord(
        audit_id="DECISION:evt-1",
        kind=AuditKind.DECISION,
        event_id="evt-1",
        event_type="TransferRequested",
        occurred_at=T,
        account_id=SECRET,
        outcome=Outcome.BLOCK,
        reasons=(Reason(code=ReasonCode.SUBJECT_ERASED, clause=Clause.ERASURE),),
        policy_version="policy@1",
        event_json="{}",
    ),
}
assert set(EXAMPLES) == set(RECORD_NAMES)


def decode_error(data: bytes | None, registry: CodecRegistry = REGISTRY) -> str:
    """Decode ``data``, expecting :class:`DecodeError`; return its message, checked clean."""
    with pytest.raises(DecodeError) as caught:
        registry.decode(data)
    message = str(caught.value)
    assert message
    assert "SECRET" not in message
    return message


def avro_long(value: int) -> bytes:
    """Avro's zig-zag varint encoding of an int or long."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def raw_record(name: str, record: dict[str, Any]) -> bytes:
    """A record written by a producer that bypasses the models: header and fastavro body."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, load_avro_schema(name), record)
    return REGISTRY.codec(name).header + body.getvalue()


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORD_NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_avro_round_trip_returns_an_equal_record(name: str, data: st.DataObject) -> None:
    record = data.draw(STRATEGIES[name])
    assert REGISTRY.decode(REGISTRY.encode(record)) == record


@pytest.mark.parametrize("name", RECORD_NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_json_round_trip_returns_an_equal_record(name: str, data: st.DataObject) -> None:
    record = data.draw(STRATEGIES[name])
    assert parse_json(name, record.model_dump_json()) == record


@settings(max_examples=100, deadline=None)
@given(
    local=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=zones
    ),
    name=st.sampled_from(sorted(EVENT_TYPES)),
)
def test_timestamps_become_the_same_utc_millisecond_in_json_and_avro(
    local: datetime, name: str
) -> None:
    example = EXAMPLES[name]
    built = type(example).model_validate(example.model_dump() | {"occurred_at": local})
    json_text = json.dumps(example.model_dump(mode="json") | {"occurred_at": local.isoformat()})
    foreign = raw_record(name, example.model_dump(exclude={"type"}) | {"occurred_at": local})

    instant: datetime = built.occurred_at  # type: ignore[attr-defined]
    assert instant.utcoffset() == timedelta(0)
    assert instant.microsecond % 1000 == 0
    assert abs(local - instant) < timedelta(milliseconds=1)
    assert parse_event_json(json_text) == built
    assert REGISTRY.decode(REGISTRY.encode(built)) == built
    assert REGISTRY.decode(foreign) == built


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00"],
    ids=["before year 1 in UTC", "after year 9999 in UTC"],
)
def test_json_timestamp_outside_the_utc_range_is_a_validation_error(occurred_at: str) -> None:
    fields = EXAMPLES["RecipientDeregistered"].model_dump(mode="json")
    with pytest.raises(ValidationError):
        parse_event_json(json.dumps(fields | {"occurred_at": occurred_at}))


@pytest.mark.parametrize(
    "occurred_at",
    [1772352000, "1772352000", "2026-03-01", "2026-03-01T08:00:00"],
    ids=["epoch number", "epoch digits", "date only", "no zone"],
)
def test_json_timestamp_must_be_an_rfc3339_string_with_a_zone(occurred_at: object) -> None:
    fields = EXAMPLES["RecipientDeregistered"].model_dump(mode="json")
    with pytest.raises(ValidationError):
        parse_event_json(json.dumps(fields | {"occurred_at": occurred_at}))


# --- the wire header -------------------------------------------------------------------

CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint the Avro specification defines (CRC-64-AVRO)."""
    fp = CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_avro_reference_gives_the_known_fingerprint_of_null() -> None:
    # The value Avro's reference implementations give for the schema "null".
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_record_starts_with_marker_and_little_endian_fingerprint_of_its_schema(
    name: str,
) -> None:
    canonical = to_parsing_canonical_form(load_avro_schema(name)).encode()
    expected = MARKER + crc64_avro(canonical).to_bytes(8, "little")
    assert REGISTRY.encode(EXAMPLES[name])[:10] == expected


def test_distinct_schemas_have_distinct_fingerprints() -> None:
    headers = {REGISTRY.codec(name).header for name in RECORD_NAMES}
    assert len(headers) == len(RECORD_NAMES)


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [None, b"", b"\x00", b"garbage that is not avro", MARKER, b"\xc3\x02" + b"\x00" * 20],
    ids=["none", "empty", "one byte", "garbage", "marker only", "wrong marker"],
)
def test_decode_rejects_input_that_is_not_single_object_encoding(data: bytes | None) -> None:
    decode_error(data)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_decode_rejects_every_truncation_of_a_valid_record(name: str) -> None:
    encoded = REGISTRY.encode(EXAMPLES[name])
    for end in range(len(encoded)):
        decode_error(encoded[:end])


@pytest.mark.parametrize("name", RECORD_NAMES)
@pytest.mark.parametrize("trailer", [b"\x00", b"\x02x", SECRET.encode()])
def test_decode_rejects_trailing_bytes_after_a_record(name: str, trailer: bytes) -> None:
    decode_error(REGISTRY.encode(EXAMPLES[name]) + trailer)


def test_decode_rejects_an_unknown_schema_fingerprint() -> None:
    body = REGISTRY.encode(EXAMPLES["TransferRequested"])[10:]
    known = {REGISTRY.codec(name).header[2:] for name in RECORD_NAMES}
    unknown = next(fp for fp in (bytes([n]) * 8 for n in range(256)) if fp not in known)
    message = decode_error(MARKER + unknown + body)
    assert "fingerprint" in message


def test_decode_rejects_a_record_over_the_default_size_limit() -> None:
    decode_error(REGISTRY.encode(EXAMPLES["RecipientDeregistered"]) + b"\x00" * (1024 * 1024))


def test_decode_rejects_a_valid_record_over_a_configured_size_limit() -> None:
    encoded = REGISTRY.encode(EXAMPLES["TransferRequested"])
    small = CodecRegistry(
        {"TransferRequested": AvroCodec(TransferRequested)}, max_record_bytes=len(encoded) - 1
    )
    decode_error(encoded, small)


MISLABELLED = [
    (writer, claimed) for writer in RECORD_NAMES for claimed in RECORD_NAMES if writer != claimed
]


@pytest.mark.parametrize(
    ("writer", "claimed"), MISLABELLED, ids=[f"{w} as {c}" for w, c in MISLABELLED]
)
def test_decode_rejects_a_record_body_under_another_schemas_fingerprint(
    writer: str, claimed: str
) -> None:
    body = REGISTRY.encode(EXAMPLES[writer])[10:]
    decode_error(REGISTRY.codec(claimed).header + body)


def _subject_rights_with_action_index(index: int) -> bytes:
    encoded = REGISTRY.encode(EXAMPLES["SubjectRightsChanged"])
    symbols = load_avro_schema("SubjectRightsChanged")["fields"][-1]["type"]["symbols"]
    # ``action`` is the last field; its index (< 64) is one zig-zag byte.
    assert encoded[-1:] == avro_long(symbols.index("RESTRICTION_APPLIED"))
    return encoded[:-1] + avro_long(index)


@pytest.mark.parametrize("index", [3, 64, 2**40, -1, -3], ids=lambda index: f"index {index}")
def test_decode_rejects_an_enum_index_outside_the_symbols(index: int) -> None:
    decode_error(_subject_rights_with_action_index(index))


@pytest.mark.parametrize("branch", [2, 7, -1], ids=lambda branch: f"branch {branch}")
def test_decode_rejects_a_union_branch_index_outside_the_union(branch: int) -> None:
    encoded = REGISTRY.encode(EXAMPLES["TransferRequested"])
    # ``size_bytes`` (["null", "long"]) is the last field; null is the one byte 00.
    assert encoded[-1:] == b"\x00"
    decode_error(encoded[:-1] + avro_long(branch) + avro_long(5))


def _transfer_record(**changes: Any) -> dict[str, Any]:
    return EXAMPLES["TransferRequested"].model_dump(exclude={"type"}) | changes


INVALID_BODIES: dict[str, Callable[[], bytes]] = {
    "no data categories": lambda: raw_record(
        "TransferRequested", _transfer_record(data_categories=[])
    ),
    "country not alpha-2": lambda: raw_record(
        "TransferRequested",
        _transfer_record(recipient={"id": "rcp", "type": "AGENT", "jurisdiction": "SECRET-LAND"}),
    ),
    "negative age": lambda: raw_record("TransferRequested", _transfer_record(subject_age=-1)),
    "empty event id": lambda: raw_record("TransferRequested", _transfer_record(event_id="")),
    "third-party consent without recipient": lambda: raw_record(
        "ConsentChanged",
        EXAMPLES["ConsentChanged"].model_dump(exclude={"type"}) | {"recipient_id": None},
    ),
    "marketing consent naming a recipient": lambda: raw_record(
        "ConsentChanged",
        EXAMPLES["ConsentChanged"].model_dump(exclude={"type"})
        | {"scope": "MARKETING", "recipient_id": "SECRET-partner"},
    ),
    "order window reversed": lambda: raw_record(
        "OrderRegistered",
        EXAMPLES["OrderRegistered"].model_dump(exclude={"type"})
        | {"valid_from": T + timedelta(days=1), "valid_until": T},
    ),
    "order without accounts": lambda: raw_record(
        "OrderRegistered",
        EXAMPLES["OrderRegistered"].model_dump(exclude={"type"}) | {"account_ids": []},
    ),
    "zero disclosures": lambda: raw_record(
        "OrderRegistered",
        EXAMPLES["OrderRegistered"].model_dump(exclude={"type"}) | {"max_disclosures": 0},
    ),
}


@pytest.mark.parametrize("build", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_decode_rejects_valid_avro_that_breaks_the_contract(build: Callable[[], bytes]) -> None:
    decode_error(build())


# --- decode never fails any other way --------------------------------------------------

contract_models = tuple(type(example) for example in EXAMPLES.values())


def _decoded_or_decode_error(data: bytes) -> None:
    try:
        decoded = REGISTRY.decode(data)
    except DecodeError:
        return
    assert isinstance(decoded, contract_models)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_returns_a_record_or_raises_decode_error(data: bytes) -> None:
    _decoded_or_decode_error(data)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(RECORD_NAMES), body=st.binary(max_size=200))
def test_decode_of_arbitrary_body_under_a_known_header_returns_a_record_or_raises(
    name: str, body: bytes
) -> None:
    _decoded_or_decode_error(REGISTRY.codec(name).header + body)


@settings(max_examples=300, deadline=None)
@given(
    record=any_record,
    position=st.integers(min_value=0),
    byte=st.integers(min_value=0, max_value=255),
    edit=st.sampled_from(["replace", "insert", "delete"]),
)
def test_decode_of_a_corrupted_record_returns_a_record_or_raises_decode_error(
    record: BaseModel, position: int, byte: int, edit: str
) -> None:
    encoded = bytearray(REGISTRY.encode(record))
    at = 2 + position % (len(encoded) - 2)
    if edit == "replace":
        encoded[at] = byte
    elif edit == "insert":
        encoded.insert(at, byte)
    else:
        del encoded[at]
    _decoded_or_decode_error(bytes(encoded))


def test_an_int_wider_than_32_bits_is_a_decode_error_not_a_crash() -> None:
    """fastavro reads a varint above 2**31 into an "int" field and then cannot write it back;
    the codec must report that as a bad record (so the guard dead-letters it), not raise
    whatever fastavro raised."""
    encoded = REGISTRY.encode(EXAMPLES["TransferRequested"])
    age = b"\x02" + avro_long(41)  # union branch 1 (int), then 41
    assert encoded.count(age) == 1
    widened = encoded.replace(age, b"\x02" + avro_long(2**31))
    with pytest.raises(DecodeError, match="out of its type's range"):
        REGISTRY.decode(widened)
