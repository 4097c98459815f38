"""A sharded trail's writing side: one log per partition, and the heads notes over them.

:class:`TrailWriter` is what the ingest appends to with ``AUDIT_SINK_SHARDING=partition``.
It splits each polled batch by partition and appends each part to that partition's shard
(an ordinary :class:`~audit_sink.writer.AuditLog`, opened on first use), each in its own
transaction with that partition's consumed position, exactly as a single log does. After
each checkpoint a shard signs, :class:`HeadsPublisher` publishes a new heads note
(:mod:`audit_sink.heads`) listing every member's latest head, built from the previous note
under the heads store's lock, so that sinks of one group, each writing its own shards,
publish one sequence of notes in which no member ever shrinks or disappears.

A crash between a shard's commit and its heads note leaves the note behind: the next
checkpoint of that shard (by whichever sink owns it then) publishes it. A shard holding
fewer entries than the latest heads note lists for it has been rolled back: the writer
refuses to open it (:class:`~audit_sink.heads.HeadsError`).

Positions: a partition whose shard holds none resumes where the legacy single log (the
log before a migration to shards) stopped reading it, so migrating loses and repeats
nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import Checkpoint, NoteError, NoteSigner, NoteVerifier, open_checkpoint
from audit_sink.heads import HeadsError, HeadsNote, MemberHead, open_heads, sign_heads
from audit_sink.heads_store import HeadsStore, Latest
from audit_sink.plan import ConsumedRecord
from audit_sink.prepare import Prepared
from audit_sink.settings import AuditSinkSettings
from audit_sink.store import LogStore, TopicPartition
from audit_sink.writer import AppendResult, AuditLog

__all__ = ["HeadsPublisher", "Member", "TrailWriter", "is_sharded", "latest_head"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One log of the trail: its origin, and its partition (``None``: the single log)."""

    origin: str
    partition: int | None

    @property
    def label(self) -> str:
        """How reports name it: ``shard 3``, or ``log`` for the single (legacy) log."""
        return "log" if self.partition is None else f"shard {self.partition}"


def is_sharded(settings: AuditSinkSettings, members: Sequence[Member]) -> bool:
    """Whether the trail is sharded: configured so, or holding shards already."""
    return settings.sharding == "partition" or any(m.partition is not None for m in members)


def latest_head(store: LogStore, verifier: NoteVerifier) -> MemberHead | None:
    """The head (size and root) of the latest checkpoint stored in ``store``, opened with
    ``verifier`` (``HeadsError`` if it does not verify)."""
    with store.reader() as reader:
        rows = reader.checkpoints()
    if not rows:
        return None
    row = rows[-1]
    try:
        checkpoint = open_checkpoint(row.note, [verifier], origin=store.origin)
    except NoteError as exc:
        raise HeadsError(
            f"the latest checkpoint of {store.origin} does not verify: {exc}"
        ) from None
    return MemberHead(store.origin, checkpoint.size, checkpoint.root)


class HeadsPublisher:
    """Publishes heads notes: the latest note with some members' heads raised.

    Heads are *offered* after each checkpoint and published at most every ``every_s``
    seconds (``0``: at once), all pending ones in one note; :meth:`flush` publishes what is
    pending (at an idle checkpoint and at a stop). A heads note may lag its shards (it is a
    lower bound); it never runs ahead of them.
    """

    def __init__(
        self,
        *,
        origin: str,
        store: HeadsStore,
        signer: NoteSigner,
        archive: CheckpointArchive,
        legacy: MemberHead | None = None,
        every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wire the heads store and the signer named after the heads origin; ``legacy`` is
        the frozen single log's head, listed from the first note on."""
        self._origin = origin
        self._store = store
        self._signer = signer
        self._verifier = signer.verifier()
        self._archive = archive
        self._legacy = legacy
        self._every_s = every_s
        self._clock = clock
        self._pending: dict[str, MemberHead] = {}
        self._last: float | None = None
        self.published = 0

    def latest(self) -> HeadsNote | None:
        """The latest stored heads note, verified (``HeadsError`` if it does not verify)."""
        latest = self._store.latest()
        return None if latest is None else open_heads(latest[1], self._verifier, self._origin)

    def offer(self, head: MemberHead) -> Latest:
        """Take a member's new head; publish what is pending if it is time."""
        self._pending[head.origin] = head
        now = self._clock()
        if self._last is not None and now - self._last < self._every_s:
            return None
        return self.flush()

    def publish(self, *heads: MemberHead) -> Latest:
        """Publish one note listing ``heads`` (and whatever is pending) now."""
        self._pending.update((head.origin, head) for head in heads)
        return self.flush()

    def flush(self) -> Latest:
        """Publish one note raising every pending head (nothing if the latest note lists
        them all already); archive it after the commit. A pending head below the one listed
        is stale (another sink has the shard now, and has published it further) and is left
        out; ``HeadsError`` if the latest note lists a member at the same size with another
        root (a fork)."""
        pending, self._pending = self._pending, {}
        self._last = self._clock()
        if not pending:
            return None

        def build(latest: Latest) -> str | None:
            heads: dict[str, MemberHead] = {}
            if latest is not None:
                heads = open_heads(latest[1], self._verifier, self._origin).by_origin()
            if self._legacy is not None:
                heads.setdefault(self._legacy.origin, self._legacy)
            changed = latest is None
            for head in pending.values():
                listed = heads.get(head.origin)
                if listed is not None and listed.size >= head.size:
                    if listed.size == head.size and listed.root != head.root:
                        raise HeadsError(f"{head.origin} has another root at size {head.size}")
                    continue
                heads[head.origin] = head
                changed = True
            return sign_heads(self._origin, heads.values(), self._signer) if changed else None

        stored = self._store.publish(build)
        if stored is not None:
            self.published += 1
            try:
                self._archive.write(*stored)
            except OSError as exc:
                _log.error("heads note %d not archived (%s)", stored[0], type(exc).__name__)
        return stored

    def check_not_behind(self, origin: str, size: int) -> None:
        """``HeadsError`` when the latest heads note lists ``origin`` with more than ``size``
        entries: that member was rolled back (or its store replaced) since it was listed."""
        latest = self.latest()
        listed = None if latest is None else latest.by_origin().get(origin)
        if listed is not None and listed.size > size:
            raise HeadsError(
                f"{origin} holds {size} entries but heads note lists {listed.size}: the shard "
                "was rolled back; refusing to write to it"
            )

    def close(self) -> None:
        """Publish what is pending, then close the heads store."""
        try:
            self.flush()
        finally:
            self._store.close()


class TrailWriter:
    """Appends polled batches to the shards of their partitions; see the module doc."""

    def __init__(
        self,
        open_shard: Callable[[int], AuditLog],
        heads: HeadsPublisher,
        legacy_positions: Mapping[TopicPartition, int],
    ) -> None:
        """Wire how a partition's shard writer is opened, the heads publisher and the
        positions the legacy single log had stored (empty without one)."""
        self._open_shard = open_shard
        self._heads = heads
        self._legacy_positions = dict(legacy_positions)
        self._shards: dict[int, AuditLog] = {}
        self._sizes: dict[int, int] = {}  # each written shard's size after its last batch

    def shard(self, partition: int) -> AuditLog:
        """The writer of ``partition``'s shard (opened on first use, and then held to the
        latest heads note: a shard behind it was rolled back, and is not written to)."""
        log = self._shards.get(partition)
        if log is None:
            log = self._open_shard(partition)
            try:
                with log.store.reader() as reader:
                    size = reader.size()
                self._heads.check_not_behind(log.origin, size)
            except BaseException:
                log.store.close()
                raise
            self._shards[partition] = log
        return log

    def positions_for(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to resume each partition: its shard's stored position, else the legacy
        log's, else nowhere (from the beginning)."""
        found: dict[TopicPartition, int] = {}
        for topic, partition in partitions:
            stored = self.shard(partition).committed_positions().get((topic, partition))
            if stored is None:
                stored = self._legacy_positions.get((topic, partition))
            if stored is not None:
                found[(topic, partition)] = stored
        return found

    def append_batch(
        self,
        batch: Sequence[ConsumedRecord],
        positions: Mapping[TopicPartition, int],
        prepared: Sequence[Prepared] | None = None,
    ) -> AppendResult:
        """Append each partition's records to its shard (one transaction each), then
        publish the heads of the shards that signed. The result joins theirs; its
        ``size`` is the sum of the sizes of the shards this writer has written to."""
        parts: dict[int, list[int]] = {}
        for i, record in enumerate(batch):
            parts.setdefault(record.partition, []).append(i)
        results = []
        for partition, picked in parts.items():
            log = self.shard(partition)
            result = log.append_batch(
                [batch[i] for i in picked],
                {tp: o for tp, o in positions.items() if tp[1] == partition},
                None if prepared is None else [prepared[i] for i in picked],
            )
            signed = result.checkpoint
            if signed is not None:
                self._heads.offer(MemberHead(log.origin, signed.size, signed.root))
            results.append(result)
            self._sizes[partition] = result.size
        return AppendResult(
            appended=tuple(e for r in results for e in r.appended),
            skipped=tuple(s for r in results for s in r.skipped),
            size=sum(self._sizes.values()),
            checkpoint=next((r.checkpoint for r in reversed(results) if r.checkpoint), None),
            archived=all(r.archived for r in results),
        )

    def checkpoint(self) -> Checkpoint | None:
        """Sign every open shard's unsigned entries and publish their heads; the last
        checkpoint signed (``None`` if no shard had unsigned entries)."""
        signed = None
        for log in self._shards.values():
            checkpoint = log.checkpoint()
            if checkpoint is not None:
                signed = checkpoint
                self._heads.offer(MemberHead(log.origin, checkpoint.size, checkpoint.root))
        self._heads.flush()
        return signed

    def close(self) -> None:
        """Publish the pending heads, close every shard's store and the heads store."""
        try:
            self._heads.close()
        finally:
            for log in self._shards.values():
                log.store.close()
            self._shards.clear()
