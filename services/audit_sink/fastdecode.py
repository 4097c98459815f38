"""A fast, strict decoder of ``AuditRecord`` single-object encodings (pure, no I/O).

The contract codec (:func:`sharing_guard.codec.contract_registry`) decodes with fastavro,
re-encodes to prove the bytes canonical, then validates with pydantic: about 50 µs a record,
which alone would cap the sink near 20,000 records/s on one core. This module decodes the
one schema the sink reads, ``sharing.AuditRecord``, in a single strict pass (about a fifth of
that) and accepts **exactly** the byte strings the contract codec accepts, with the same
values:

* the marker ``C3 01`` and the AuditRecord fingerprint; anything else (another record type,
  another schema version, a record over the size limit) goes to the contract codec, which
  decides;
* every integer a minimal zig-zag varint within int64 (the codec's re-encoding check rejects
  any other spelling), enum and union indices in range (a negative index would otherwise
  read as another symbol), arrays as one block then the terminator, strings valid UTF-8, no
  trailing byte;
* the timestamp as fastavro reads ``timestamp-millis`` (the epoch plus that many
  milliseconds), which the contract's validation leaves unchanged (it is UTC, in ms);
* enum symbols mapped to the contract's Python enums (the schema's symbols must be exactly
  the enums' values, in order, or the fast path is off), and a reason's clause, an Avro
  string, accepted only if it is a :class:`~sharing_guard.contract.enums.Clause` value (as
  the contract's validation does).

The decoder checks, when built, that the contract schema still has the shape it was written
for; if not (the contract evolved), :class:`AuditDecoder` uses the contract codec for
everything. ``tests/unit/audit/test_audit_fastdecode.py`` compares both decoders on valid
records and on random corruptions of them.

Besides the record, :meth:`AuditDecoder.decode_with_json` returns what
``record.model_dump(mode="json")`` gives, built directly (the writer hashes it for
redelivery checks), without a second pass over the model; :meth:`AuditDecoder.decode_json`
gives only that JSON form (and the instant in milliseconds), without building the model at
all, which is all the writer needs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, NamedTuple

from sharing_guard.codec import HEADER_SIZE, CodecRegistry, DecodeError, contract_registry
from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.decision import Reason
from sharing_guard.contract.enums import Clause, Outcome, ReasonCode

__all__ = ["AuditDecoder", "RecordJson"]

RecordJson = dict[str, Any]
"""A record as ``AuditRecord.model_dump(mode="json")`` gives it."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_STRING: Final = "string"
_OPTIONAL_STRING: Final = ["null", "string"]
_FIELDS: Final = (
    "audit_id",
    "kind",
    "event_id",
    "event_type",
    "occurred_at",
    "account_id",
    "recipient_id",
    "order_ref",
    "actor",
    "outcome",
    "reasons",
    "policy_version",
    "event_json",
)


class _CorruptError(Exception):
    """The bytes are not a canonical encoding (turned into a :class:`DecodeError`)."""


def _symbols(schema: Any, enum: type[StrEnum]) -> bool:
    return (
        isinstance(schema, dict)
        and schema.get("type") == "enum"
        and schema.get("symbols") == [member.value for member in enum]
    )


def _shape_matches(schema: dict[str, Any]) -> bool:
    """Whether the contract schema is the one this decoder was written for."""
    fields = schema.get("fields")
    if not isinstance(fields, list) or [f.get("name") for f in fields] != list(_FIELDS):
        return False
    types = {f["name"]: f["type"] for f in fields}
    reasons = types["reasons"]
    items = reasons.get("items") if isinstance(reasons, dict) else None
    reason_fields = items.get("fields") if isinstance(items, dict) else None
    outcome = types["outcome"]
    return (
        all(types[n] == _STRING for n in ("audit_id", "event_id", "event_type", "event_json"))
        and all(
            types[n] == _OPTIONAL_STRING
            for n in ("account_id", "recipient_id", "order_ref", "actor", "policy_version")
        )
        and _symbols(types["kind"], AuditKind)
        and types["occurred_at"] == {"type": "long", "logicalType": "timestamp-millis"}
        and isinstance(outcome, list)
        and len(outcome) == 2
        and outcome[0] == "null"
        and _symbols(outcome[1], Outcome)
        and isinstance(reasons, dict)
        and reasons.get("type") == "array"
        and isinstance(items, dict)
        and items.get("type") == "record"
        and isinstance(reason_fields, list)
        and [f.get("name") for f in reason_fields] == ["code", "clause"]
        and _symbols(reason_fields[0]["type"], ReasonCode)
        and reason_fields[1]["type"] == _STRING
        and set(AuditRecord.model_fields) == set(_FIELDS)
        and set(Reason.model_fields) == {"code", "clause"}
    )


def _construct_fast(model: type[Any], fields: dict[str, Any]) -> Any:
    """What ``model.model_construct(**fields)`` builds, given every field, without its
    per-field bookkeeping (five times faster). :func:`_fast_construction_matches` checks at
    start-up that both give the same object; otherwise ``model_construct`` is used."""
    built = object.__new__(model)
    setattr_ = object.__setattr__
    setattr_(built, "__dict__", fields)
    setattr_(built, "__pydantic_fields_set__", set(fields))
    setattr_(built, "__pydantic_extra__", None)
    setattr_(built, "__pydantic_private__", None)
    return built


def _fast_construction_matches() -> bool:
    """Whether :func:`_construct_fast` builds what ``model_construct`` does (pydantic's
    internals may change: then the documented, slower path is taken)."""
    try:
        reason = {"code": ReasonCode.CONSENT, "clause": Clause.THIRD_PARTY_CONSENT}
        fields: dict[str, Any] = dict.fromkeys(_FIELDS)
        fields.update(audit_id="a", kind=AuditKind.DECISION, event_id="e", event_type="t")
        fields.update(occurred_at=_EPOCH, reasons=(Reason(**reason),), event_json="{}")
        pairs = ((Reason, reason), (AuditRecord, fields))
        for model, values in pairs:
            fast, slow = _construct_fast(model, dict(values)), model.model_construct(**values)
            for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__"):
                if getattr(fast, name) != getattr(slow, name):
                    return False
            if fast.__pydantic_private__ != slow.__pydantic_private__ or fast != slow:
                return False
    except Exception:  # any doubt: the documented path
        return False
    return True


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it: minimal (the codec's
    re-encoding check rejects any other spelling) and within int64. Reading past the end
    raises ``IndexError`` (corrupt, for the caller)."""
    byte = data[pos]
    pos += 1
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos
    value = byte & 0x7F
    shift = 7
    while True:
        if shift > 63:
            raise _CorruptError
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    if byte == 0:  # a redundant last byte: not the minimal (canonical) varint
        raise _CorruptError
    result = (value >> 1) ^ -(value & 1)
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise _CorruptError
    return result, pos


def _string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """The string at ``pos`` (``UnicodeDecodeError`` unless UTF-8) and the position after it."""
    byte = data[pos]
    if byte < 0x80:  # a length below 64: one byte
        size = (byte >> 1) ^ -(byte & 1)
        pos += 1
    else:
        size, pos = _varint(data, pos)
    stop = pos + size
    if size < 0 or stop > end:
        raise _CorruptError
    return data[pos:stop].decode("utf-8"), stop


def _optional(data: bytes, pos: int, end: int) -> tuple[str | None, int]:
    """The ``["null", "string"]`` union at ``pos`` and the position after it."""
    branch = data[pos]
    if branch == 0:  # null
        return None, pos + 1
    if branch == 2:  # zig-zag 1: the string branch
        return _string(data, pos + 1, end)
    raise _CorruptError


def _index(data: bytes, pos: int, count: int) -> tuple[int, int]:
    """An enum or union index in ``range(count)`` at ``pos`` and the position after it."""
    value, pos = _varint(data, pos)
    if not 0 <= value < count:
        raise _CorruptError
    return value, pos


_KINDS: Final = tuple(AuditKind)
_OUTCOMES: Final = tuple(Outcome)
_CODES: Final = tuple(ReasonCode)
_CLAUSES: Final = {clause.value: clause for clause in Clause}


class AuditDecoder:
    """Decodes AuditRecord bytes as the contract codec does, fast (see the module doc)."""

    def __init__(self, registry: CodecRegistry | None = None) -> None:
        """Use ``registry`` (default: the contract's) for the header, limit and fallback."""
        self._registry = registry or contract_registry()
        codec = self._registry.codec("AuditRecord")
        self._header = codec.header
        self.fast = _shape_matches(codec.schema)
        self._construct: Any = (
            _construct_fast
            if _fast_construction_matches()
            else lambda model, fields: model.model_construct(**fields)
        )

    def __call__(self, data: bytes) -> AuditRecord:
        """The record (``DecodeError`` for anything else), as the contract codec decodes it."""
        return self.decode_with_json(data)[0]

    def decode_with_json(self, data: bytes) -> tuple[AuditRecord, RecordJson]:
        """The record and its JSON form (``DecodeError`` for anything but an AuditRecord)."""
        fields = self._fields(data)
        if fields is None:
            value = self._decode_slow(data)
            return value, value.model_dump(mode="json")
        return _record(fields, self._construct), _json_form(fields)

    def decode_json(self, data: bytes) -> tuple[RecordJson, int]:
        """The record's JSON form and ``occurred_at`` in milliseconds since the epoch,
        without building the model (``DecodeError`` for anything but an AuditRecord):
        the same JSON as :meth:`decode_with_json`, for the writer, which needs no more."""
        fields = self._fields(data)
        if fields is None:
            value = self._decode_slow(data)
            return value.model_dump(mode="json"), (value.occurred_at - _EPOCH) // _MILLISECOND
        return _json_form(fields), fields.millis

    def _fields(self, data: bytes) -> _Fields | None:
        """The body's values on the fast path, ``None`` when the contract codec decides."""
        if (
            not self.fast
            or not data
            or len(data) > self._registry.max_record_bytes
            or not data.startswith(self._header)
        ):
            return None
        try:
            return _read_body(data, HEADER_SIZE)
        except _CorruptError:
            # The same message as the contract codec's for a corrupt or non-canonical body.
            raise DecodeError(
                "AuditRecord: Avro body is truncated, corrupt or not canonical"
            ) from None

    def _decode_slow(self, data: bytes) -> AuditRecord:
        value = self._registry.decode(data)
        if not isinstance(value, AuditRecord):
            raise DecodeError(f"a {type(value).__name__} record, not an AuditRecord")
        return value


class _Fields(NamedTuple):
    """The values of one AuditRecord body, as read (enums resolved, nothing built yet)."""

    audit_id: str
    kind: AuditKind
    event_id: str
    event_type: str
    millis: int
    occurred_at: datetime
    account_id: str | None
    recipient_id: str | None
    order_ref: str | None
    actor: str | None
    outcome: Outcome | None
    reasons: list[tuple[ReasonCode, Clause, str]]
    """(code, clause, the clause's text) of each reason, in order."""
    policy_version: str | None
    event_json: str


def _read_body(data: bytes, pos: int) -> _Fields:
    """The values of the Avro body at ``pos`` (:class:`_CorruptError` on any bad byte)."""
    try:
        return _read_fields(data, pos, len(data))
    except (IndexError, UnicodeDecodeError):  # read past the end, or not UTF-8
        raise _CorruptError from None


def _read_fields(data: bytes, pos: int, end: int) -> _Fields:
    string = _string
    optional = _optional
    index = _index
    audit_id, pos = string(data, pos, end)
    kind_index, pos = index(data, pos, len(_KINDS))
    event_id, pos = string(data, pos, end)
    event_type, pos = string(data, pos, end)
    millis, pos = _varint(data, pos)
    try:
        occurred_at = _EPOCH + timedelta(milliseconds=millis)
    except OverflowError:
        raise _CorruptError from None
    account_id, pos = optional(data, pos, end)
    recipient_id, pos = optional(data, pos, end)
    order_ref, pos = optional(data, pos, end)
    actor, pos = optional(data, pos, end)
    branch, pos = index(data, pos, 2)
    outcome: Outcome | None = None
    if branch:
        outcome_index, pos = index(data, pos, len(_OUTCOMES))
        outcome = _OUTCOMES[outcome_index]
    reasons: list[tuple[ReasonCode, Clause, str]] = []
    count, pos = _varint(data, pos)
    if count < 0:
        raise _CorruptError  # the codec writes a positive count: a negative one is not canonical
    if count:
        for _ in range(count):
            code_index, pos = index(data, pos, len(_CODES))
            clause_text, pos = string(data, pos, end)
            clause = _CLAUSES.get(clause_text)
            if clause is None:  # the contract's validation refuses any other clause
                raise _CorruptError
            reasons.append((_CODES[code_index], clause, clause_text))
        terminator, pos = _varint(data, pos)
        if terminator != 0:
            raise _CorruptError  # a second block: the codec writes one
    policy_version, pos = optional(data, pos, end)
    event_json, pos = string(data, pos, end)
    if pos != end:
        raise _CorruptError
    return _Fields(
        audit_id,
        _KINDS[kind_index],
        event_id,
        event_type,
        millis,
        occurred_at,
        account_id,
        recipient_id,
        order_ref,
        actor,
        outcome,
        reasons,
        policy_version,
        event_json,
    )


def _json_form(fields: _Fields) -> RecordJson:
    """What ``record.model_dump(mode="json")`` gives for the record of ``fields``."""
    outcome = fields.outcome
    return {
        "audit_id": fields.audit_id,
        "kind": fields.kind._value_,
        "event_id": fields.event_id,
        "event_type": fields.event_type,
        # format_timestamp of a UTC instant: RFC 3339 with milliseconds and "Z"
        "occurred_at": fields.occurred_at.isoformat(timespec="milliseconds")[:-6] + "Z",
        "account_id": fields.account_id,
        "recipient_id": fields.recipient_id,
        "order_ref": fields.order_ref,
        "actor": fields.actor,
        "outcome": None if outcome is None else outcome._value_,
        "reasons": [{"code": code._value_, "clause": text} for code, _, text in fields.reasons],
        "policy_version": fields.policy_version,
        "event_json": fields.event_json,
    }


def _record(fields: _Fields, construct: Any) -> AuditRecord:
    """The :class:`AuditRecord` of ``fields``, as the contract codec decodes it."""
    reasons = tuple(
        construct(Reason, {"code": code, "clause": clause}) for code, clause, _ in fields.reasons
    )
    record: AuditRecord = construct(
        AuditRecord,
        {
            "audit_id": fields.audit_id,
            "kind": fields.kind,
            "event_id": fields.event_id,
            "event_type": fields.event_type,
            "occurred_at": fields.occurred_at,
            "account_id": fields.account_id,
            "recipient_id": fields.recipient_id,
            "order_ref": fields.order_ref,
            "actor": fields.actor,
            "outcome": fields.outcome,
            "reasons": reasons,
            "policy_version": fields.policy_version,
            "event_json": fields.event_json,
        },
    )
    return record
