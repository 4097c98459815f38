"""What the security console reads from a trail, beyond a plain query (no HTTP here).

* :func:`search_trail`: :func:`~audit_sink.trail_read.query_trail` plus a filter by
  **clause**: the store indexes reason codes, not clauses, so the codes the contract files
  under the clause (:data:`audit_sink.words.CLAUSE_CODES`) are asked one by one, and of the
  entries found only those whose leaf names the clause in one of its reasons are kept (a
  code may stand under two clauses). Whether the ``limit`` cut the list is told too.
* :func:`find_entry`: one decision (else governance change) with the clause of each of
  its reasons, the member holding it and that member's latest checkpoint size.
* :func:`member_status`: each member's size, latest stored checkpoint and the time of the
  newest record that checkpoint covers.
* :func:`export_trail`: what ``audit-sink export`` writes: one export per member (a
  sharded trail: ``log/``, ``shards/<p>/``) and the heads notes (``heads/<n>.note``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from sharing_guard.contract.enums import Clause

from audit_sink import bootstrap
from audit_sink.checkpoint import NoteVerifier
from audit_sink.export import export_log
from audit_sink.heads import member_verifier
from audit_sink.keystore import KeyStore
from audit_sink.leaf import EntryType, LeafFormatError, decode_leaf
from audit_sink.query import EntryView, QueryCriteria, entry_views
from audit_sink.sealing import IndexKey
from audit_sink.settings import AuditSinkSettings
from audit_sink.store import LogReader, RecordFilter
from audit_sink.trail import Member, is_sharded
from audit_sink.trail_read import MemberReader, query_trail
from audit_sink.words import codes_of_clause

__all__ = [
    "EntryDetail",
    "ExportCounts",
    "MemberStatus",
    "export_trail",
    "find_entry",
    "member_status",
    "search_trail",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NEWEST_WINDOW: Final = 256
"""How many entries before a checkpoint's size are looked at for the newest record time."""


def _reasons(reader: LogReader, indices: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """The (code, clause) of every reason each record leaf holds, by index."""
    found: dict[int, list[tuple[str, str]]] = {}
    for index, leaf in reader.leaves(indices).items():
        try:
            decoded = decode_leaf(leaf)
        except LeafFormatError:
            continue
        if decoded.type != EntryType.RECORD:
            continue
        reasons = decoded.body.get("reasons") or []
        found[index] = [
            (str(r.get("code")), str(r.get("clause"))) for r in reasons if isinstance(r, dict)
        ]
    return found


def _order(view: EntryView) -> tuple[int, ...]:
    """The order of :func:`query_trail`: by index, or (sharded) by time, member, index."""
    if not view.sharded:
        return (view.index,)
    millis = (view.occurred_at - _EPOCH) // timedelta(milliseconds=1)
    member = (0, 0) if view.shard is None else (1, view.shard)
    return (millis, *member, view.index)


def search_trail(
    settings: AuditSinkSettings,
    readers: Sequence[MemberReader],
    keys: KeyStore,
    criteria: QueryCriteria,
    *,
    limit: int,
    clause: Clause | None = None,
    index_key: IndexKey | None = None,
    query: Callable[..., list[EntryView]] = query_trail,
) -> tuple[list[EntryView], bool]:
    """The first ``limit`` record entries matching ``criteria`` (its own limit ignored)
    and ``clause``, and whether more may match (the limit cut the list). ``query`` is
    :func:`~audit_sink.trail_read.query_trail` (a caller may wrap it)."""
    wanted = replace(criteria, limit=limit + 1)  # one more tells whether the limit cut
    if clause is None:
        views = query(settings, readers, keys, wanted, index_key)
        return views[:limit], len(views) > limit
    codes = sorted(codes_of_clause(clause))
    if criteria.reason_code is not None:
        codes = [code for code in codes if code.value == criteria.reason_code]
    found: dict[tuple[int | None, int], EntryView] = {}
    cut = False
    for code in codes:
        views = query(settings, readers, keys, replace(wanted, reason_code=code.value), index_key)
        cut = cut or len(views) > limit
        for view in views:
            found.setdefault((view.shard, view.index), view)
    by_member = {one.member.partition: one.reader for one in readers}
    kept: list[EntryView] = []
    for partition, reader in by_member.items():
        mine = [v for v in found.values() if v.shard == partition]
        reasons = _reasons(reader, [v.index for v in mine])
        kept.extend(v for v in mine if any(c == clause.value for _, c in reasons.get(v.index, ())))
    kept.sort(key=_order)
    return kept[:limit], cut or len(kept) > limit


@dataclass(frozen=True)
class EntryDetail:
    """One record entry, the (code, clause) of each of its reasons, where it is."""

    view: EntryView
    reasons: tuple[tuple[str, str], ...]
    member: Member
    checkpoint_size: int | None
    """The size of the member's latest stored checkpoint (``None``: none yet)."""
    trace_id: str | None = None
    """The W3C trace id its record carried (``None``: none, or not remembered)."""


def find_entry(
    settings: AuditSinkSettings,
    readers: Sequence[MemberReader],
    keys: KeyStore,
    event_id: str,
) -> EntryDetail | None:
    """The decision about ``event_id`` (else its governance change), from the member that
    holds it; ``None`` when no member does."""
    sharded = is_sharded(settings, [one.member for one in readers])
    for one in readers:
        reader = one.reader
        index = reader.find_record(f"DECISION:{event_id}")
        if index is None:
            index = reader.find_record(f"GOVERNANCE_CHANGE:{event_id}")
        if index is None:
            continue
        rows = reader.query_records(RecordFilter(indices=[index]))
        views = entry_views(reader, keys, rows)
        if not views:
            continue
        view = views[0]
        if sharded:
            view = replace(view, sharded=True, shard=one.member.partition)
        checkpoints = reader.checkpoints()
        return EntryDetail(
            view=view,
            reasons=tuple(_reasons(reader, [index]).get(index, ())),
            member=one.member,
            checkpoint_size=checkpoints[-1].size if checkpoints else None,
            trace_id=reader.trace_ids([index]).get(index),
        )
    return None


@dataclass(frozen=True)
class MemberStatus:
    """One member's size and latest stored checkpoint (as stored: ``/verify`` checks it)."""

    member: Member
    size: int
    checkpoint_size: int | None
    checkpoint_note: str | None
    newest_at: datetime | None
    """When the newest record among the last entries its checkpoint covers occurred."""


def _newest(reader: LogReader, size: int) -> datetime | None:
    window = range(max(0, size - _NEWEST_WINDOW), size)
    rows = reader.query_records(RecordFilter(indices=window)) if size else []
    if not rows:
        return None
    return _EPOCH + timedelta(milliseconds=max(row.occurred_at for row in rows))


def member_status(readers: Sequence[MemberReader]) -> list[MemberStatus]:
    """The status of every member, in member order."""
    found = []
    for one in readers:
        checkpoints = one.reader.checkpoints()
        latest = checkpoints[-1] if checkpoints else None
        found.append(
            MemberStatus(
                member=one.member,
                size=one.reader.size(),
                checkpoint_size=None if latest is None else latest.size,
                checkpoint_note=None if latest is None else latest.note,
                newest_at=None if latest is None else _newest(one.reader, latest.size),
            )
        )
    return found


@dataclass(frozen=True)
class ExportCounts:
    """What :func:`export_trail` wrote."""

    size: int
    checkpoints: int
    members: int
    sharded: bool


def export_trail(
    settings: AuditSinkSettings,
    readers: Sequence[MemberReader],
    pinned: NoteVerifier,
    directory: Path,
    *,
    include_payloads: bool = False,
) -> ExportCounts:
    """Export every member (a single log into ``directory`` itself; a sharded trail into
    ``log/`` and ``shards/<p>/``, each checked by its ``verify_export.py`` with the member's
    vkey) and the stored heads notes (``heads/<n>.note``). ``FileExistsError`` when a
    sharded trail's ``directory`` is not empty."""
    sharded = is_sharded(settings, [one.member for one in readers])
    if sharded and directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    size = checkpoints = 0
    for one in readers:
        member = one.member
        target = directory
        if sharded:
            target = directory / "log" if member.partition is None else directory / "shards"
            target = target if member.partition is None else target / str(member.partition)
        summary = export_log(
            one.reader,
            target,
            verifier=member_verifier(pinned, member.origin),
            include_payloads=include_payloads,
            chunk_size=settings.verify_chunk,
        )
        size += summary.size
        checkpoints += summary.checkpoints
    if sharded:
        heads = bootstrap.open_heads_store(settings, write=False)
        try:
            notes = heads.notes()
        finally:
            heads.close()
        (directory / "heads").mkdir(parents=True, exist_ok=True)
        for seq, note in notes:
            (directory / "heads" / f"{seq}.note").write_text(note, "utf-8")
    return ExportCounts(size, checkpoints, len(readers), sharded)
