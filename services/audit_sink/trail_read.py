"""Reading and erasing across a whole trail: one snapshot per member, answers joined.

The command line and the HTTP API ask here, so that a single log and a sharded trail
(:mod:`audit_sink.heads`) give the same answers in the same shapes:

* :func:`member_readers` opens every member read-only and takes a snapshot of each;
* :func:`query_trail`: the entries of every member that match (a single log's by index; a
  sharded trail's by time, then member, then index, each naming its ``shard``; its
  ``limit`` keeps the first of them all in that order);
* :func:`prove_in_trail`: the proof bundle of an event from the member that holds it (its
  checkpoint's origin names the shard);
* :func:`erase_in_trail`: the erasure in every member that holds the account's entries,
  then a heads note with their new heads;
* :func:`latest_heads_note`: the latest heads note, verified with the pinned key.

Snapshots are taken member by member, so they are not one instant of the whole trail: a
query across shards during ingest may see one shard a batch ahead of another. Each
member's answer is exact for its snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

from audit_sink import bootstrap
from audit_sink.checkpoint import NoteVerifier
from audit_sink.heads import (
    HeadsNote,
    MemberHead,
    member_order,
    member_verifier,
    open_heads,
)
from audit_sink.keystore import KeyStore
from audit_sink.proofs import InclusionProof, ProofError, prove_event
from audit_sink.query import EntryView, QueryCriteria, entry_views, query_entries, query_rows
from audit_sink.sealing import IndexKey
from audit_sink.settings import AuditSinkSettings
from audit_sink.store import LogReader, StoreError
from audit_sink.trail import Member, is_sharded, latest_head
from audit_sink.writer import ErasureResult

__all__ = [
    "MemberReader",
    "erase_in_trail",
    "latest_heads_note",
    "member_readers",
    "prove_in_trail",
    "query_trail",
]


@dataclass(frozen=True)
class MemberReader:
    """One member and a read-only snapshot of it."""

    member: Member
    reader: LogReader


@contextmanager
def member_readers(settings: AuditSinkSettings) -> Iterator[list[MemberReader]]:
    """A read-only snapshot of every member, in member order (closed on exit)."""
    with ExitStack() as stack:
        found = []
        for member in bootstrap.discover_members(settings):
            store = bootstrap.open_store(settings, write=False, partition=member.partition)
            stack.callback(store.close)
            found.append(MemberReader(member, stack.enter_context(store.reader())))
        yield found


def query_trail(
    settings: AuditSinkSettings,
    readers: Sequence[MemberReader],
    keys: KeyStore,
    criteria: QueryCriteria,
    index_key: IndexKey | None = None,
) -> list[EntryView]:
    """The record entries matching ``criteria`` in every member, at most ``limit``."""
    if not is_sharded(settings, [r.member for r in readers]):
        return [v for r in readers for v in query_entries(r.reader, keys, criteria, index_key)]
    origin = settings.require_origin()
    # Each member gives its first ``limit`` matching rows by time (no entry opened yet);
    # the first ``limit`` of them all are picked, and only those opened.
    picked = [
        (row.occurred_at, member_order(origin, one.member.origin), row.index, n, row)
        for n, one in enumerate(readers)
        for row in query_rows(one.reader, criteria, index_key, by_time=True)
    ]
    picked.sort(key=lambda item: item[:3])
    if criteria.limit is not None:
        picked = picked[: criteria.limit]
    opened: dict[tuple[int, int], EntryView] = {}
    for n, one in enumerate(readers):
        rows = [item[4] for item in picked if item[3] == n]
        for view in entry_views(one.reader, keys, rows):
            opened[(n, view.index)] = replace(view, sharded=True, shard=one.member.partition)
    return [opened[(item[3], item[2])] for item in picked]


def prove_in_trail(
    readers: Sequence[MemberReader], event_id: str, pinned: NoteVerifier
) -> tuple[Member, InclusionProof]:
    """The proof of the decision (else governance change) about ``event_id`` from the
    member that holds it, under that member's latest checkpoint (``ProofError`` when no
    member holds it or the holder cannot prove it)."""
    for one in readers:
        reader = one.reader
        if reader.find_record(f"DECISION:{event_id}") is None and (
            reader.find_record(f"GOVERNANCE_CHANGE:{event_id}") is None
        ):
            continue
        origin = one.member.origin
        verifier = member_verifier(pinned, origin)
        return one.member, prove_event(reader, event_id, trusted_keys=[verifier], origin=origin)
    raise ProofError("no record of that event in the log")


def latest_heads_note(settings: AuditSinkSettings, pinned: NoteVerifier) -> HeadsNote | None:
    """The latest stored heads note (``None`` when none is stored; ``HeadsError`` when it
    does not verify with the pinned key)."""
    try:
        store = bootstrap.open_heads_store(settings, write=False)
    except StoreError:
        return None
    try:
        latest = store.latest()
    finally:
        store.close()
    if latest is None:
        return None
    return open_heads(latest[1], pinned, settings.require_origin())


def erase_in_trail(
    settings: AuditSinkSettings, keys: KeyStore, account: str
) -> tuple[ErasureResult, int]:
    """Erase ``account`` in every member (each appends its erasure entry and signs; the
    first destroys the key, each deletes its ciphertexts), then publish the new heads of a
    sharded trail. The counts summed, and the number of members with an erasure entry.
    Run again, it completes an interrupted erasure in every member."""
    members = bootstrap.discover_members(settings)
    erased = keys_destroyed = deleted = touched = 0
    last_index: int | None = None
    heads: list[MemberHead] = []
    for member in members:
        store = bootstrap.open_store(settings, partition=member.partition)
        try:
            log = bootstrap.build_log(settings, store, keys, member.partition)
            result = log.erase(account)
            if result.erasure_index is not None:
                touched += 1
                last_index = result.erasure_index
                verifier = bootstrap.signer(settings, store.origin).verifier()
                head = latest_head(store, verifier)  # the erasure signed a checkpoint
                if head is not None and member.partition is not None:
                    heads.append(head)  # the legacy log stays listed as migration left it
        finally:
            store.close()
        erased += result.erased_entries
        keys_destroyed += result.keys_destroyed
        deleted += result.payloads_deleted
    if heads and is_sharded(settings, members):
        publisher = bootstrap.heads_publisher(settings)
        try:
            publisher.publish(*heads)  # one note raising every member erased in
        finally:
            publisher.close()
    return ErasureResult(last_index, erased, keys_destroyed, deleted), touched
