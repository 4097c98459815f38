"""Queries of record entries, with personal fields opened where their key still exists.

A plain function a command or a server can call. Filtering by account uses the keyed tag
of the account id (:meth:`~audit_sink.sealing.IndexKey.account_tag`), so only a holder of
the index key can search by account, and an erased account is not found any more (its
payload rows, which carried the tag, are gone). Every other filter runs on non-personal
columns. Each entry's personal fields are shown decrypted when its payload and key exist,
``erased`` when the entry was erased, and ``unavailable`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from audit_sink.canonical import CanonicalJsonError, parse_canonical
from audit_sink.keystore import KeyStore
from audit_sink.leaf import EntryType, LeafFormatError, decode_leaf, millis
from audit_sink.sealing import IndexKey, SealError, open_sealed, payload_aad
from audit_sink.store import LogReader, PayloadRow, RecordFilter, RecordRow

__all__ = [
    "EntryView",
    "InstantError",
    "PersonalStatus",
    "QueryCriteria",
    "entry_views",
    "parse_instant",
    "query_entries",
    "query_rows",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InstantError(ValueError):
    """A time filter that is not an RFC 3339 instant with a zone (the message says which)."""


def parse_instant(text: str | None) -> datetime | None:
    """The instant a time filter names (``None`` for none): RFC 3339 with a zone.

    ``InstantError`` (its message completes "FILTER ...") when ``text`` is not an instant,
    has no zone (a zoneless time would be read in some machine's local time), or lies
    outside the years 1 to 9999 once in UTC. The instant is returned in UTC.
    """
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InstantError("is not an RFC 3339 instant") from None
    if value.tzinfo is None:
        raise InstantError("needs a time zone")
    try:  # 0001-01-01T00:00+01:00 is before the first UTC instant: nothing can render it
        return value.astimezone(UTC)
    except OverflowError:
        raise InstantError("is outside the years 1 to 9999 in UTC") from None


class PersonalStatus(StrEnum):
    """What happened to an entry's personal fields."""

    CLEAR = "clear"
    """The record named no account; nothing was sealed."""
    OPENED = "opened"
    """Sealed, and decrypted with the subject's key."""
    ERASED = "erased"
    """The subject was erased: key destroyed, payload deleted."""
    UNAVAILABLE = "unavailable"
    """Sealed, but the payload or key is missing or does not open (run verify)."""


@dataclass(frozen=True)
class QueryCriteria:
    """Which records to list; every given criterion must hold."""

    account_id: str | None = None
    recipient_id: str | None = None
    outcome: str | None = None
    reason_code: str | None = None
    order_ref: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    limit: int | None = None


@dataclass(frozen=True)
class EntryView:
    """One record entry as shown to an operator."""

    index: int
    kind: str
    audit_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    personal: PersonalStatus
    account_id: str | None
    recipient_id: str | None
    order_ref: str | None
    actor: str | None
    outcome: str | None
    reasons: tuple[str, ...]
    policy_version: str | None
    event_json: str | None
    sharded: bool = False
    """Whether the entry comes from a sharded trail (then ``shard`` names its member)."""
    shard: int | None = None
    """The partition of the shard holding it (``None``: the single or legacy log)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; erased personal fields read ``"<erased>"``. Entries of a
        sharded trail also carry ``shard`` (their index counts within that member)."""
        hidden = f"<{self.personal.value}>"
        sealed = self.personal in (PersonalStatus.ERASED, PersonalStatus.UNAVAILABLE)
        where: dict[str, Any] = {"shard": self.shard} if self.sharded else {}
        return {
            **where,
            "index": self.index,
            "kind": self.kind,
            "audit_id": self.audit_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "personal": self.personal.value,
            "account_id": hidden if sealed else self.account_id,
            "recipient_id": self.recipient_id,
            "order_ref": self.order_ref,
            "actor": self.actor,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "policy_version": self.policy_version,
            "event_json": hidden if sealed else self.event_json,
        }


def query_entries(
    reader: LogReader,
    keys: KeyStore,
    criteria: QueryCriteria,
    index_key: IndexKey | None = None,
) -> list[EntryView]:
    """The record entries matching ``criteria``, by index (``index_key`` for an account)."""
    return entry_views(reader, keys, query_rows(reader, criteria, index_key))


def query_rows(
    reader: LogReader,
    criteria: QueryCriteria,
    index_key: IndexKey | None = None,
    *,
    by_time: bool = False,
) -> list[RecordRow]:
    """The record rows matching ``criteria``, by index (or ``by_time``: by time, then
    index), nothing opened (``index_key`` for an account)."""
    indices: list[int] | None = None
    if criteria.account_id is not None:
        if index_key is None:
            raise ValueError("searching by account needs the index key")
        indices = reader.payload_indices_for_tag(index_key.account_tag(criteria.account_id))
    return reader.query_records(
        RecordFilter(
            indices=indices,
            recipient_id=criteria.recipient_id,
            outcome=criteria.outcome,
            reason_code=criteria.reason_code,
            order_ref=criteria.order_ref,
            occurred_from=_millis(criteria.occurred_from),
            occurred_to=_millis(criteria.occurred_to),
            limit=criteria.limit,
            by_time=by_time,
        )
    )


def entry_views(reader: LogReader, keys: KeyStore, rows: Sequence[RecordRow]) -> list[EntryView]:
    """The entries of ``rows`` (of :func:`query_rows`), personal fields opened where their
    key still exists, in the order of ``rows``."""
    wanted = [row.index for row in rows]
    leaves = reader.leaves(wanted)
    payloads = reader.payloads(wanted)
    erased = reader.erased(wanted)
    subject_keys = keys.keys({p.key_id for p in payloads.values()})
    found = {k: v.key for k, v in subject_keys.items()}
    return [
        _view(row, leaves.get(row.index), payloads.get(row.index), row.index in erased, found)
        for row in rows
    ]


def _millis(instant: datetime | None) -> int | None:
    return None if instant is None else millis(instant)


def _view(
    row: RecordRow,
    leaf: bytes | None,
    payload: PayloadRow | None,
    erased: bool,
    keys: Mapping[str, bytes],
) -> EntryView:
    body: Mapping[str, Any] = {}
    if leaf is not None:
        try:
            decoded = decode_leaf(leaf)
            if decoded.type == EntryType.RECORD:
                body = decoded.body
        except LeafFormatError:
            body = {}
    account_id: str | None = None
    event_json = body.get("event_json")
    if not body.get("sealed"):
        status = PersonalStatus.CLEAR if body else PersonalStatus.UNAVAILABLE
    elif erased:
        status = PersonalStatus.ERASED
    else:
        status = PersonalStatus.UNAVAILABLE
        key = None if payload is None else keys.get(payload.key_id)
        if payload is not None and key is not None:
            try:
                fields = parse_canonical(open_sealed(key, payload.sealed, payload_aad(row.index)))
                account_id, event_json = fields["account_id"], fields["event_json"]
                status = PersonalStatus.OPENED
            except (SealError, CanonicalJsonError, KeyError, TypeError):
                status = PersonalStatus.UNAVAILABLE
    reasons = body.get("reasons") or []
    return EntryView(
        index=row.index,
        kind=row.kind,
        audit_id=row.audit_id,
        event_id=row.event_id,
        event_type=str(body.get("event_type", "")),
        occurred_at=_EPOCH + timedelta(milliseconds=row.occurred_at),
        personal=status,
        account_id=account_id,
        recipient_id=row.recipient_id,
        order_ref=row.order_ref,
        actor=body.get("actor"),
        outcome=row.outcome,
        reasons=tuple(str(r.get("code")) for r in reasons if isinstance(r, dict)),
        policy_version=body.get("policy_version"),
        event_json=event_json if isinstance(event_json, str) else None,
    )
