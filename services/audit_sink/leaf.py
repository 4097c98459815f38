"""The leaf format, version 1: the exact bytes each Merkle leaf commits to (pure, no I/O).

A leaf is a fixed 88-byte binary header, the source topic, then a canonical JSON body
(:mod:`audit_sink.canonical`). All integers are big-endian::

    offset  size  field
    0       1     version, 0x01
    1       1     entry type: 0x01 record, 0x02 anomaly, 0x03 erasure
    2       8     index: this entry's leaf index (uint64)
    10      32    prev: RFC 6962 leaf hash of entry index-1 (32 zero bytes for index 0)
    42      32    payload digest: SHA-256 of the sealed payload (32 zero bytes: none)
    74      4     source partition (int32; -1 when the entry has no source)
    78      8     source offset (int64; -1 when the entry has no source)
    86      2     topic length L in bytes (uint16; 0 when the entry has no source)
    88      L     source topic, UTF-8
    88+L    rest  body: a canonical JSON object

The header holds everything verification needs per entry, so a verifier reads it with one
``struct`` unpack and never parses JSON except for the (rare) erasure entries. Personal data
never appears in a leaf: it is sealed in the payload, and the leaf only carries the payload's
SHA-256 digest (see :mod:`audit_sink.sealing`).

Bodies by entry type (every key always present; ``null`` when not applicable):

* record: ``actor, audit_id, event_id, event_json, event_type, kind, occurred_at (int, ms
  since the Unix epoch, UTC), order_ref, outcome, policy_version, reasons (list of
  {"clause", "code"}), recipient_id, sealed`` where ``sealed`` lists the fields moved to the
  payload (``["account_id", "event_json"]``, or ``[]`` when the record names no account,
  in which case ``event_json`` is the source event's JSON text).
* anomaly: ``anomaly`` (a code of :class:`AnomalyCode`), ``detail`` (fixed text, never
  record content), ``event_id``, ``related_index`` (the earlier entry it conflicts with).
  The payload, when present, is the sealed raw record bytes.
* erasure: ``erased`` (strictly increasing indices of the entries whose payload keys were
  destroyed), ``erased_at`` (int, ms since the epoch).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from itertools import pairwise
from typing import Any, Final, NamedTuple

from sharing_guard.contract.audit import AuditRecord

from audit_sink.canonical import CanonicalJsonError, canonical_json, parse_canonical

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "LEAF_VERSION",
    "SEALED_FIELDS",
    "ZERO_HASH",
    "AnomalyCode",
    "EntryType",
    "Leaf",
    "LeafFormatError",
    "Source",
    "anomaly_body",
    "decode_leaf",
    "encode_leaf",
    "encode_leaf_bytes",
    "erasure_body",
    "millis",
    "record_body",
    "sealed_plaintext",
]

LEAF_VERSION: Final = 1
HEADER: Final = struct.Struct(">BBQ32s32siqH")
"""version, type, index, prev, payload digest, partition, offset, topic length."""
HEADER_SIZE: Final = HEADER.size
ZERO_HASH: Final = bytes(32)
SEALED_FIELDS: Final = ("account_id", "event_json")
"""The AuditRecord fields sealed in the payload of a record naming an account."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_MAX_TOPIC_BYTES: Final = 0xFFFF
_INT32_MAX: Final = 2**31 - 1
_INT64_MAX: Final = 2**63 - 1


class EntryType(IntEnum):
    """What a log entry is."""

    RECORD = 1
    ANOMALY = 2
    ERASURE = 3


class AnomalyCode(StrEnum):
    """Why the sink logged an anomaly instead of (or besides) a record."""

    EMPTY_RECORD = "empty-record"
    """The Kafka record had no value (a tombstone)."""
    UNDECODABLE = "undecodable"
    """The value is not a valid single-object-encoded AuditRecord."""
    OFFSET_REGRESSION = "offset-regression"
    """An unseen offset below one already stored for the same partition."""
    OFFSET_REWRITTEN = "offset-rewritten"
    """Different bytes at an offset already stored."""
    DUPLICATE_CONFLICT = "duplicate-conflict"
    """A second record with the same audit_id but different content (the first is kept)."""


class LeafFormatError(ValueError):
    """Bytes that are not a well-formed version-1 leaf; the message says why."""


class Source(NamedTuple):
    """Where an entry came from: a Kafka topic, partition and offset (a named tuple: one is
    made per entry)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Leaf:
    """A decoded leaf: its header fields and its parsed body."""

    type: EntryType
    index: int
    prev: bytes
    payload_digest: bytes | None
    source: Source | None
    body: Mapping[str, Any]


def millis(instant: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime (exact integer arithmetic)."""
    return (instant - _EPOCH) // _MS


def encode_leaf(
    entry_type: EntryType,
    *,
    index: int,
    prev: bytes,
    payload_digest: bytes | None,
    source: Source | None,
    body: Mapping[str, Any],
) -> bytes:
    """Return the leaf bytes; ``ValueError`` if a field is out of range."""
    return encode_leaf_bytes(
        entry_type,
        index=index,
        prev=prev,
        payload_digest=payload_digest,
        source=source,
        body=canonical_json(dict(body)),
    )


def encode_leaf_bytes(  # noqa: PLR0917 - by position from the writer, once per entry
    entry_type: EntryType,
    index: int,
    prev: bytes,
    payload_digest: bytes | None,
    source: Source | None,
    body: bytes,
) -> bytes:
    """:func:`encode_leaf` with the body already in canonical JSON (the caller's duty).

    Its arguments may be given by position (the writer calls it once per entry)."""
    if len(prev) != 32:
        raise ValueError("prev must be a 32-byte hash")
    if payload_digest is not None and (len(payload_digest) != 32 or payload_digest == ZERO_HASH):
        raise ValueError("payload digest must be a non-zero 32-byte hash")
    if source is None:
        topic, partition, offset = b"", -1, -1
    else:
        topic = source.topic.encode("utf-8")
        partition, offset = source.partition, source.offset
        if not topic or len(topic) > _MAX_TOPIC_BYTES:
            raise ValueError("source topic must be 1 to 65535 UTF-8 bytes")
        if not 0 <= partition <= _INT32_MAX or not 0 <= offset <= _INT64_MAX:
            raise ValueError("source partition or offset out of range")
    header = HEADER.pack(
        LEAF_VERSION,
        int(entry_type),
        index,
        prev,
        payload_digest or ZERO_HASH,
        partition,
        offset,
        len(topic),
    )
    return header + topic + body


def decode_leaf(data: bytes) -> Leaf:
    """Parse leaf bytes strictly (:class:`LeafFormatError` on anything unexpected)."""
    if len(data) < HEADER_SIZE:
        raise LeafFormatError(f"leaf of {len(data)} bytes is shorter than its header")
    version, type_code, index, prev, digest, partition, offset, topic_len = HEADER.unpack_from(data)
    if version != LEAF_VERSION:
        raise LeafFormatError(f"unknown leaf version {version}")
    try:
        entry_type = EntryType(type_code)
    except ValueError:
        raise LeafFormatError(f"unknown entry type {type_code}") from None
    body_start = HEADER_SIZE + topic_len
    if len(data) < body_start:
        raise LeafFormatError("leaf is shorter than its topic")
    source: Source | None
    if topic_len == 0:
        if partition != -1 or offset != -1:
            raise LeafFormatError("a leaf without a topic must have partition and offset -1")
        source = None
    else:
        if partition < 0 or offset < 0:
            raise LeafFormatError("a leaf with a topic needs a partition and an offset >= 0")
        try:
            topic = data[HEADER_SIZE:body_start].decode("utf-8")
        except UnicodeDecodeError:
            raise LeafFormatError("leaf topic is not UTF-8") from None
        source = Source(topic, partition, offset)
    try:
        body = parse_canonical(data[body_start:])
    except CanonicalJsonError as exc:
        raise LeafFormatError(f"leaf body: {exc}") from None
    if not isinstance(body, dict):
        raise LeafFormatError("leaf body is not a JSON object")
    return Leaf(entry_type, index, prev, None if digest == ZERO_HASH else digest, source, body)


def record_body(record: AuditRecord, *, sealed: bool) -> dict[str, Any]:
    """The leaf body of a record; ``sealed`` moves account_id and event_json to the payload."""
    return {
        "actor": record.actor,
        "audit_id": record.audit_id,
        "event_id": record.event_id,
        "event_json": None if sealed else record.event_json,
        "event_type": record.event_type,
        "kind": record.kind.value,
        "occurred_at": millis(record.occurred_at),
        "order_ref": record.order_ref,
        "outcome": None if record.outcome is None else record.outcome.value,
        "policy_version": record.policy_version,
        "reasons": [{"clause": r.clause.value, "code": r.code.value} for r in record.reasons],
        "recipient_id": record.recipient_id,
        "sealed": list(SEALED_FIELDS) if sealed else [],
    }


def sealed_plaintext(record: AuditRecord) -> bytes:
    """The plaintext sealed for a record: canonical JSON of its personal fields."""
    return canonical_json({"account_id": record.account_id, "event_json": record.event_json})


def anomaly_body(
    code: AnomalyCode, detail: str, event_id: str | None, related_index: int | None
) -> dict[str, Any]:
    """The leaf body of an anomaly entry (``detail`` must hold no record content)."""
    return {
        "anomaly": code.value,
        "detail": detail,
        "event_id": event_id,
        "related_index": related_index,
    }


def erasure_body(erased: Sequence[int], erased_at: datetime) -> dict[str, Any]:
    """The leaf body of an erasure entry; ``erased`` must be strictly increasing."""
    if any(b <= a for a, b in pairwise(erased)):
        raise ValueError("erased indices must be strictly increasing")
    return {"erased": list(erased), "erased_at": millis(erased_at)}
