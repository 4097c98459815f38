"""The trail's history as JSON Lines, for ``sharing-guard what-if`` (``audit-sink history``).

Every record entry becomes one line, in the order the guard emitted it:

* a **decision** is its transfer event (the ``event_json`` the guard recorded, with its
  ``"type"``) carrying, as its last key, ``"recorded"``: the decision that was enforced,
  ``{"outcome", "reasons": [{"code", "clause"}], "policy_version", "order_ref"}``;
* a **governance change** is its event, as is;
* an entry whose sealed identifiers cannot be opened is a **placeholder** with no
  identifier: ``{"type": "Sealed", "event_id", "event_type", "reason", "recorded"}``
  (``recorded`` for decisions only), ``reason`` ``"erased"`` when an erasure entry lists it
  (the account was crypto-shredded) and ``"unavailable"`` when its payload or key is missing
  without one (``audit-sink verify`` reports why).

Identifiers are read only where the trail's sealing allows: a sealed entry's event is taken
from its payload, opened with its subject's key from the key store, as ``query`` does.
Anomaly and erasure entries are not events and are skipped (counted), as are records of
events that ``replay`` does not read (a policy promotion).

**Order.** A single log: index order, which is the order its sink consumed the audit
records, i.e. the guard's (one partition). A sharded trail (``AUDIT_SINK_SHARDING=
partition``): the single log kept from before the migration first (it holds everything
consumed before it), then the shards merged: each shard in index order (its partition's
order, kept exactly), and among the shards the entry that occurred first next (by the
event's ``occurred_at``; ties by partition). **Limit:** the audit topic's partitions have no
common order, and an entry's time is when its event occurred, not when the guard decided it;
so two entries in different shards are put in occurrence order, which can differ from the
order the guard processed them in (a governance change and a transfer that occurred close
together, a late event). Within a shard the order is exact.

Each member is read in one snapshot (:func:`audit_sink.trail_read.member_readers`), in
chunks: memory does not grow with the trail.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sharing_guard.contract.events import EVENT_TYPES

from audit_sink.canonical import CanonicalJsonError, parse_canonical
from audit_sink.keystore import KeyStore
from audit_sink.leaf import EntryType, LeafFormatError, decode_leaf
from audit_sink.sealing import SealError, SubjectKey, open_sealed, payload_aad
from audit_sink.store import LogReader, PayloadRow
from audit_sink.trail_read import MemberReader

__all__ = ["HistoryCounts", "history_lines"]

CHUNK = 2000
_DECISION = "DECISION"


@dataclass
class HistoryCounts:
    """What a history run wrote and skipped (counts only: what the command reports)."""

    members: int = 0
    decisions: int = 0
    governance: int = 0
    sealed_decisions: int = 0
    sealed_governance: int = 0
    unavailable: int = 0
    """Sealed entries, among the placeholders, whose payload or key is missing without an
    erasure entry listing them."""
    other_events: int = 0
    anomalies: int = 0
    erasures: int = 0
    unreadable: int = 0
    """Leaves that do not decode (``audit-sink verify`` names them)."""

    @property
    def lines(self) -> int:
        """Lines written."""
        return self.decisions + self.governance + self.sealed_decisions + self.sealed_governance


def history_lines(
    readers: Sequence[MemberReader], keys: KeyStore, counts: HistoryCounts, chunk: int = CHUNK
) -> Iterator[str]:
    """The history lines of the trail's members (without line ends), in the order of the
    module's doc; ``counts`` is updated as they are produced."""
    counts.members = len(readers)
    for one in readers:
        if one.member.partition is None:
            yield from (line for _, line in _member_lines(one.reader, keys, counts, chunk))
    shards = sorted(
        (r for r in readers if r.member.partition is not None),
        key=lambda r: r.member.partition or 0,
    )
    merged = heapq.merge(
        *(_member_lines(r.reader, keys, counts, chunk) for r in shards), key=itemgetter(0)
    )
    yield from (line for _, line in merged)


def _member_lines(
    reader: LogReader, keys: KeyStore, counts: HistoryCounts, chunk: int
) -> Iterator[tuple[int, str]]:
    """(occurred_at in ms, line) for each record entry of one member, in index order."""
    for rows in reader.leaf_chunks(chunk):
        bodies: list[tuple[int, Mapping[str, Any]]] = []
        for index, raw, _ in rows:
            leaf = bytes(raw)
            kind = leaf[1] if len(leaf) > 1 else 0
            if kind == EntryType.ANOMALY:
                counts.anomalies += 1
                continue
            if kind == EntryType.ERASURE:
                counts.erasures += 1
                continue
            try:
                decoded = decode_leaf(leaf)
            except LeafFormatError:
                counts.unreadable += 1
                continue
            bodies.append((index, decoded.body))
        sealed = [index for index, body in bodies if body.get("sealed")]
        payloads = reader.payloads(sealed) if sealed else {}
        erased = reader.erased(sealed) if sealed else set()
        found = keys.keys({p.key_id for p in payloads.values()}) if payloads else {}
        for index, body in bodies:
            line = _line(
                index,
                body=body,
                payload=payloads.get(index),
                erased=index in erased,
                keys=found,
                counts=counts,
            )
            if line is not None:
                yield int(body.get("occurred_at") or 0), line


def _recorded(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "outcome": body.get("outcome"),
        "reasons": [
            {"code": r.get("code"), "clause": r.get("clause")}
            for r in body.get("reasons") or []
            if isinstance(r, dict)
        ],
        "policy_version": body.get("policy_version"),
        "order_ref": body.get("order_ref"),
    }


def _opened(index: int, payload: PayloadRow | None, keys: Mapping[str, SubjectKey]) -> str | None:
    """The sealed event JSON of an entry, or ``None`` when it does not open."""
    key = None if payload is None else keys.get(payload.key_id)
    if payload is None or key is None:
        return None
    try:
        fields = parse_canonical(open_sealed(key.key, payload.sealed, payload_aad(index)))
    except (SealError, CanonicalJsonError):
        return None
    text = fields.get("event_json") if isinstance(fields, dict) else None
    return text if isinstance(text, str) else None


def _line(
    index: int,
    *,
    body: Mapping[str, Any],
    payload: PayloadRow | None,
    erased: bool,
    keys: Mapping[str, SubjectKey],
    counts: HistoryCounts,
) -> str | None:
    event_type = str(body.get("event_type") or "")
    decision = body.get("kind") == _DECISION
    if event_type not in EVENT_TYPES:
        counts.other_events += 1
        return None
    recorded = _recorded(body) if decision else None
    text: str | None
    if body.get("sealed"):
        text = None if erased else _opened(index, payload, keys)
    else:
        event_json = body.get("event_json")
        text = event_json if isinstance(event_json, str) else None
    event: Any = None
    if text is not None:
        try:
            event = json.loads(text)
        except ValueError:
            event = None
    if not isinstance(event, dict):
        return _placeholder(
            body, event_type, "erased" if erased else "unavailable", recorded, counts
        )
    event.setdefault("type", event_type)
    if recorded is None:
        counts.governance += 1
    else:
        event.pop("recorded", None)
        event["recorded"] = recorded  # the last key: what-if reads it without a second parse
        counts.decisions += 1
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _placeholder(
    body: Mapping[str, Any],
    event_type: str,
    reason: str,
    recorded: dict[str, Any] | None,
    counts: HistoryCounts,
) -> str:
    if reason == "unavailable":
        counts.unavailable += 1
    line: dict[str, Any] = {
        "type": "Sealed",
        "event_id": body.get("event_id"),
        "event_type": event_type,
        "reason": reason,
    }
    if recorded is None:
        counts.sealed_governance += 1
    else:
        line["recorded"] = recorded
        counts.sealed_decisions += 1
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))
