"""Verifying a whole trail: every member log, and the heads notes over them.

For a single log this is :func:`audit_sink.verification.verify_log` and nothing more. For
a sharded trail (:mod:`audit_sink.heads`) :func:`verify_trail`:

1. reads the stored heads notes: each must verify with the pinned key (under the heads
   name) and be a successor of the one before it (no member dropped or smaller:
   ``heads-invalid``, ``heads-regression``);
2. sorts the trusted notes given (``--trusted-checkpoint`` files: the archive, a copy held
   elsewhere) by origin: heads notes, and checkpoints of one member or another; a trusted
   heads note must verify, and the latest stored one must be its successor (``heads-rolled-back``);
3. holds every member that any of those notes lists, or any trusted checkpoint names, to
   exist (``member-missing``: a shard deleted);
4. verifies every member log (in parallel processes, one member each), its own trusted
   checkpoints and the heads the latest stored and the trusted heads notes list for it
   passed as trusted: a member smaller than a listed head, or with another root at its
   size, is a ``fork`` or ``truncated`` finding of that member, named by shard and index.

The report names each problem by member (``shard 3``, or ``log`` for the single or legacy
log) and, within it, by entry index, as ``verify`` does for one log.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from audit_sink import bootstrap
from audit_sink.checkpoint import MalformedNoteError, NoteVerifier, parse_note
from audit_sink.heads import (
    HeadsError,
    HeadsNote,
    check_successor,
    heads_origin,
    member_verifier,
    open_heads,
    partition_of,
)
from audit_sink.report import Problem, Report
from audit_sink.settings import AuditSinkSettings
from audit_sink.store import StoreError
from audit_sink.trail import Member, is_sharded
from audit_sink.verification import verify_log

__all__ = ["MemberReport", "TrailProblem", "TrailReport", "verify_trail"]


@dataclass(frozen=True)
class TrailProblem:
    """A problem of the trail as a whole (its heads notes, a member missing)."""

    code: str
    message: str
    member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"code": self.code, "member": self.member, "message": self.message}


@dataclass(frozen=True)
class MemberReport:
    """One member's verification."""

    member: Member
    report: Report

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the member's origin, partition and report."""
        return {
            "origin": self.member.origin,
            "partition": self.member.partition,
            **self.report.to_dict(),
        }


@dataclass(frozen=True)
class TrailReport:
    """The outcome of verifying every member and the heads notes."""

    sharded: bool
    members: tuple[MemberReport, ...]
    problems: tuple[TrailProblem, ...]
    heads_verified: int
    latest_heads: int | None

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong anywhere."""
        return not self.problems and all(m.report.ok for m in self.members)

    @property
    def size(self) -> int:
        """Entries in all members."""
        return sum(m.report.size for m in self.members)

    @property
    def problem_count(self) -> int:
        """Problems in all."""
        return len(self.problems) + sum(m.report.problem_count for m in self.members)

    def first(self) -> tuple[str, Problem | TrailProblem] | None:
        """The first problem: a trail problem first, else the first member's first, with
        the label of the member it concerns."""
        if self.problems:
            problem = self.problems[0]
            return (problem.member or "trail", problem)
        for member in self.members:
            first = member.report.first
            if first is not None:
                return (member.member.label, first)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ok": self.ok,
            "sharded": self.sharded,
            "size": self.size,
            "problem_count": self.problem_count,
            "heads_verified": self.heads_verified,
            "latest_heads": self.latest_heads,
            "problems": [p.to_dict() for p in self.problems],
            "members": [m.to_dict() for m in self.members],
        }


def _note_origin(note: str) -> str | None:
    try:
        return parse_note(note).text.split("\n", 1)[0]
    except MalformedNoteError:
        return None


class _Notes:
    """The trusted notes given, sorted by what they are about."""

    def __init__(self, origin: str, pinned: NoteVerifier, notes: Sequence[str]) -> None:
        self.heads: list[HeadsNote] = []
        self.by_member: dict[str, list[str]] = {}
        self.problems: list[TrailProblem] = []
        for note in notes:
            found = _note_origin(note)
            if found == heads_origin(origin):
                try:
                    self.heads.append(open_heads(note, pinned, origin))
                except HeadsError as exc:
                    self.problems.append(
                        TrailProblem("trusted-heads-invalid", f"a trusted heads note: {exc}")
                    )
                continue
            try:
                partition_of(origin, found or "")
            except ValueError:
                self.problems.append(
                    TrailProblem(
                        "trusted-checkpoint-invalid",
                        "a trusted note is of no log of this trail (origin "
                        f"{(found or '?')[:200]!r})",
                    )
                )
                continue
            assert found is not None
            self.by_member.setdefault(found, []).append(note)


def _stored_heads(
    settings: AuditSinkSettings, pinned: NoteVerifier, problems: list[TrailProblem]
) -> tuple[HeadsNote | None, int, int | None]:
    """The latest stored heads note that verifies (``None`` if none), how many did, and the
    latest one's sequence number."""
    origin = settings.require_origin()
    try:
        store = bootstrap.open_heads_store(settings, write=False)
    except StoreError:
        return None, 0, None
    try:
        stored = store.notes()
    finally:
        store.close()
    latest: HeadsNote | None = None
    latest_seq: int | None = None
    verified = 0
    expected = 1
    for seq, note in stored:
        if seq != expected:
            problems.append(
                TrailProblem("heads-invalid", f"heads note {expected} is missing (next is {seq})")
            )
        expected = seq + 1
        try:
            opened = open_heads(note, pinned, origin)
        except HeadsError as exc:
            problems.append(TrailProblem("heads-invalid", f"heads note {seq}: {exc}"))
            continue
        verified += 1
        if latest is not None:
            for why in check_successor(latest, opened):
                problems.append(TrailProblem("heads-regression", f"heads note {seq}: {why}"))
        latest, latest_seq = opened, seq
    return latest, verified, latest_seq


@dataclass(frozen=True)
class _Job:
    """One member to verify, with the notes trusted for it."""

    member: Member
    trusted: list[str]
    heads: list[tuple[int, bytes]]


def _verify_member(settings: AuditSinkSettings, job: _Job, vkey: str, workers: int) -> Report:
    """Verify one member (in a helper process: the pinned key travels as its vkey text)."""
    member = job.member
    pinned = NoteVerifier.from_vkey(vkey)
    store = bootstrap.open_store(settings, write=False, partition=member.partition)
    try:
        with store.reader() as reader:
            return verify_log(
                reader,
                trusted_keys=[member_verifier(pinned, member.origin)],
                origin=member.origin,
                trusted_checkpoints=job.trusted,
                trusted_heads=job.heads,
                chunk_size=settings.verify_chunk,
                workers=workers,
            )
    finally:
        store.close()


def verify_trail(
    settings: AuditSinkSettings,
    pinned: NoteVerifier,
    trusted_notes: Sequence[str] = (),
    *,
    workers: int = 1,
) -> TrailReport:
    """Verify every member of the configured trail and its heads notes (module doc).

    ``workers`` > 1 verifies members in that many forked processes (a single log: its
    index ranges, as :func:`~audit_sink.verification.verify_log` does); call it so only
    from a process with no other thread running.
    """
    origin = settings.require_origin()
    members = bootstrap.discover_members(settings)
    sharded = is_sharded(settings, members)
    problems: list[TrailProblem] = []
    notes = _Notes(origin, pinned, trusted_notes if sharded else ())
    if not sharded:  # one log: every trusted note is held against it, as verify_log does
        notes.by_member[origin] = list(trusted_notes)
    problems.extend(notes.problems)
    latest, verified, latest_seq = (
        _stored_heads(settings, pinned, problems) if sharded else (None, 0, None)
    )
    for trusted in notes.heads:
        if latest is None or check_successor(trusted, latest):
            problems.append(
                TrailProblem(
                    "heads-rolled-back",
                    "the stored heads notes are behind a trusted heads note (rolled back)",
                )
            )
            break
    present = {m.origin for m in members}
    listed: dict[str, set[tuple[int, bytes]]] = {}
    for note in [*([latest] if latest is not None else []), *notes.heads]:
        for head in note.heads:
            listed.setdefault(head.origin, set()).add((head.size, head.root))
    for missing in sorted({*listed, *notes.by_member} - present):
        partition = partition_of(origin, missing)
        label = "log" if partition is None else f"shard {partition}"
        problems.append(
            TrailProblem(
                "member-missing",
                f"{label} ({missing}) is listed by a heads note or a trusted checkpoint but "
                "is not in the store (deleted)",
                label,
            )
        )
    if sharded and latest is None and any(m.partition is not None for m in members):
        problems.append(TrailProblem("heads-invalid", "shards exist but no heads note is stored"))
    jobs = [
        _Job(m, notes.by_member.get(m.origin, []), sorted(listed.get(m.origin, ())))
        for m in members
    ]
    processes = min(workers or os.cpu_count() or 1, len(jobs))
    if processes > 1:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            futures = [pool.submit(_verify_member, settings, job, pinned.vkey, 1) for job in jobs]
            reports = [future.result() for future in futures]
    else:
        reports = [_verify_member(settings, job, pinned.vkey, workers) for job in jobs]
    return TrailReport(
        sharded,
        tuple(MemberReport(job.member, r) for job, r in zip(jobs, reports, strict=True)),
        tuple(problems),
        verified,
        latest_seq,
    )
