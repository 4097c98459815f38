"""The leaf format v1: exact byte layout, strict decoding, canonical bodies."""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime

import pytest
from audit_sink.canonical import CanonicalJsonError, canonical_json, parse_canonical
from audit_sink.leaf import (
    HEADER_SIZE,
    ZERO_HASH,
    EntryType,
    LeafFormatError,
    Source,
    decode_leaf,
    encode_leaf,
    erasure_body,
    millis,
)

PREV = hashlib.sha256(b"prev").digest()
DIGEST = hashlib.sha256(b"payload").digest()


def sample(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "index": 258,
        "prev": PREV,
        "payload_digest": DIGEST,
        "source": Source("governance.audit", 3, 1_000_000),
        "body": {"b": [1, "\u00e9"], "a": None},
    }
    fields.update(changes)
    return encode_leaf(EntryType.RECORD, **fields)  # type: ignore[arg-type]


def test_the_header_is_laid_out_as_documented() -> None:
    leaf = sample()

    assert HEADER_SIZE == 88
    assert leaf[0] == 1
    assert leaf[1] == 1
    assert leaf[2:10] == (258).to_bytes(8, "big")
    assert leaf[10:42] == PREV
    assert leaf[42:74] == DIGEST
    assert leaf[74:78] == (3).to_bytes(4, "big")
    assert leaf[78:86] == (1_000_000).to_bytes(8, "big")
    assert leaf[86:88] == len(b"governance.audit").to_bytes(2, "big")
    assert leaf[88:104] == b"governance.audit"
    assert leaf[104:] == b'{"a":null,"b":[1,"\\u00e9"]}'


def test_a_leaf_without_source_or_payload_uses_the_documented_placeholders() -> None:
    leaf = encode_leaf(
        EntryType.ERASURE,
        index=0,
        prev=ZERO_HASH,
        payload_digest=None,
        source=None,
        body={"erased": [], "erased_at": 0},
    )

    assert leaf[42:74] == ZERO_HASH
    assert struct.unpack(">iqH", leaf[74:88]) == (-1, -1, 0)
    decoded = decode_leaf(leaf)
    assert (decoded.source, decoded.payload_digest) == (None, None)


def test_decoding_returns_what_was_encoded() -> None:
    decoded = decode_leaf(sample())

    assert decoded.type == EntryType.RECORD
    assert (decoded.index, decoded.prev, decoded.payload_digest) == (258, PREV, DIGEST)
    assert decoded.source == Source("governance.audit", 3, 1_000_000)
    assert decoded.body == {"a": None, "b": [1, "\u00e9"]}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:50], "shorter than its header"),
        (lambda b: b"\x02" + b[1:], "unknown leaf version"),
        (lambda b: b[:1] + b"\x07" + b[2:], "unknown entry type"),
        (lambda b: b[:-1] + b" }", "canonical"),
        (lambda b: b[:88] + b[88:].replace(b'"a":null', b'"a": null'), "canonical"),
        (lambda b: b[:74] + b"\xff\xff\xff\xff" + b[78:], "partition"),
        (lambda b: b[:86] + b"\xff\xff" + b[88:], "shorter than its topic"),
        (lambda b: b[:104] + b"[1]", "not a JSON object"),
    ],
)
def test_malformed_leaves_are_rejected(mutate: object, message: str) -> None:
    with pytest.raises(LeafFormatError, match=message):
        decode_leaf(mutate(sample()))  # type: ignore[operator]


@pytest.mark.parametrize(
    "changes",
    [
        {"prev": b"short"},
        {"payload_digest": ZERO_HASH},
        {"source": Source("", 0, 0)},
        {"source": Source("t" * 70_000, 0, 0)},
        {"source": Source("t", -1, 0)},
        {"source": Source("t", 0, 2**63)},
    ],
)
def test_out_of_range_fields_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"prev|digest|topic|partition"):
        sample(**changes)


def test_canonical_json_is_one_spelling() -> None:
    value = {"z": 1, "a": ["\u00e9", "\U0001f600"], "m": {"y": None, "b": True}}

    text = canonical_json(value)

    assert text == b'{"a":["\\u00e9","\\ud83d\\ude00"],"m":{"b":true,"y":null},"z":1}'
    assert parse_canonical(text) == value
    for other in (b'{"z":1,"a":2}', b'{"a":1,"a":1}', b'{"a": 1}', b'{"a":1.0e0}', b"NaN"):
        with pytest.raises(CanonicalJsonError):
            parse_canonical(other)


def test_times_are_exact_milliseconds_since_the_epoch() -> None:
    instant = datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=UTC)

    assert millis(instant) == 1_793_534_400_123
    assert json.loads(json.dumps(millis(instant))) == 1_793_534_400_123


def test_erasure_bodies_list_increasing_indices() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)

    assert erasure_body([1, 5, 9], at) == {"erased": [1, 5, 9], "erased_at": millis(at)}
    with pytest.raises(ValueError, match="increasing"):
        erasure_body([5, 5], at)
