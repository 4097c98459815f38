"""Full verification of the log: the pure algorithm, fed by any store (no I/O).

A :class:`LogVerifier` is given the signed checkpoints (from the store, and optionally
trusted ones held outside it), then the leaf rows ``(index, leaf bytes, stored leaf hash)``
in index order, chunk by chunk, and the payload rows ``(index, sealed payload)`` in index
order, interleaved in any way (a merge join by index). :meth:`LogVerifier.finish` returns a
:class:`Report`. For every entry it checks:

1. **index continuity**: the stored indices are 0, 1, 2, ... without a gap;
2. **leaf hash**: ``SHA-256(0x00 || leaf)`` equals the stored hash;
3. **format**: the leaf header parses (version 1, a known type, a source for records);
4. **position**: the index inside the leaf equals the stored index (swaps, insertions);
5. **chain**: the leaf's ``prev`` equals the recomputed hash of the entry before it, so an
   edited leaf is pinned even when its stored hash was recomputed;
6. **offset order**: record offsets strictly increase per (topic, partition);
7. **payload**: a sealed entry's payload hashes to the digest in its leaf, or it is listed
   by a later erasure entry ("erased"); otherwise it is "missing";
8. **erasure entries**: they list earlier, sealed, not yet erased entries, in order;
9. **checkpoints**: each is a C2SP signed note signed by the pinned key for the log's
   origin, and its root equals the root recomputed over the first ``size`` leaves (roots
   are folded with :class:`~audit_sink.merkle.CompactRange` in batches). A checkpoint
   beyond the last entry means the log was truncated.

A checkpoint whose root differs pins the divergence to the entries between the last
matching checkpoint and it; given a *trusted* checkpoint (held outside the database), the
same comparison detects truncation, rollback and a consistently rewritten database (a fork),
which no check inside the database can. Holding every leaf, the verifier recomputes the
tree at the trusted size directly: that is exactly what a consistency proof from the
trusted checkpoint to the current tree attests.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import methodcaller
from typing import Final, NamedTuple

from audit_sink.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from audit_sink.leaf import HEADER, HEADER_SIZE, ZERO_HASH, EntryType, LeafFormatError, decode_leaf
from audit_sink.merkle import CompactRange
from audit_sink.report import Problem, ProblemCode, Report, ordered

__all__ = [
    "DEFAULT_MAX_PROBLEMS",
    "LogVerifier",
    "Problem",
    "ProblemCode",
    "Report",
    "SegmentSummary",
    "StoredCheckpoint",
    "summarise_segment",
]

DEFAULT_MAX_PROBLEMS: Final = 1000
_LEAF_PREFIX: Final = b"\x00"
_DIGEST: Final = methodcaller("digest")
_RECORD: Final = int(EntryType.RECORD)
_ANOMALY: Final = int(EntryType.ANOMALY)
_ERASURE: Final = int(EntryType.ERASURE)


class _Columns(NamedTuple):
    """A chunk of leaf rows whose indices, stored hashes and header shapes hold, by column."""

    idxs: tuple[int, ...]
    leaves: tuple[bytes, ...]
    hashes: list[bytes]
    kinds: tuple[int, ...]
    links: tuple[bytes, ...]
    digests: tuple[bytes, ...]
    partitions: tuple[int, ...]
    offsets: tuple[int, ...]
    topic_lens: tuple[int, ...]


def _columns(rows: Sequence[tuple[int, bytes, bytes]], first: int) -> _Columns | None:
    """The columns of ``rows`` (index, leaf, stored hash), or ``None`` unless they are the
    indices from ``first`` on, each stored hash is its leaf's, each header unpacks at format
    version 1 with its own index, and each leaf links the previous row's hash (the first
    row's link and the entry types are the caller's to check). C-level passes only."""
    idxs, leaves, stored = zip(*rows, strict=True)
    count = len(idxs)
    if idxs != tuple(range(first, first + count)):
        return None
    hashes = list(map(_DIGEST, map(hashlib.sha256, map(_LEAF_PREFIX.__add__, leaves))))
    if stored != tuple(hashes):
        return None
    try:
        headers = list(map(HEADER.unpack_from, leaves))
    except struct.error:
        return None
    versions, kinds, seqs, links, digests, partitions, offsets, topic_lens = zip(
        *headers, strict=True
    )
    if versions.count(1) != count or seqs != idxs or links[1:] != tuple(hashes[:-1]):
        return None
    return _Columns(idxs, leaves, hashes, kinds, links, digests, partitions, offsets, topic_lens)


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint note as stored, under the tree size it was stored for."""

    size: int
    note: str


@dataclass(frozen=True)
class SegmentSummary:
    """What :func:`summarise_segment` found in the entries ``[start, end)`` of a log.

    ``clean`` is false when anything is off (then nothing else is filled in, and the caller
    verifies the log entry by entry, which pins every problem). Otherwise the checks that
    need no other entry passed, and the rest is what :meth:`LogVerifier.add_segment` needs
    to finish them against the entries before: the ``prev`` of the first entry and the hash
    of the last, the first and last record offset per (topic, partition), the sealed flags,
    the sealed entries without a payload, the erasure entries, and the compact range of the
    segment's leaves (alone) at each checkpoint size inside it and at its end.
    """

    start: int
    end: int
    clean: bool
    first_link: bytes = ZERO_HASH
    last_hash: bytes = ZERO_HASH
    offsets: dict[tuple[bytes, int], tuple[int, int]] = field(default_factory=dict)
    sealed: bytes = b""
    missing: tuple[int, ...] = ()
    erasures: tuple[tuple[int, bytes], ...] = ()
    peaks_at: dict[int, tuple[bytes, ...]] = field(default_factory=dict)
    peaks: tuple[bytes, ...] = ()


def summarise_segment(
    start: int,
    end: int,
    rows: Sequence[tuple[int, bytes, bytes]],
    payloads: Sequence[tuple[int, bytes]],
    sizes: Sequence[int],
) -> SegmentSummary:
    """Check the entries ``[start, end)`` on their own (a helper process's share of a
    parallel verification): continuity, leaf hashes, format, positions, the chain inside
    the segment, record offset order inside it, and the payloads. ``rows`` and
    ``payloads`` are those of the segment in index order; ``sizes`` the checkpoint sizes in
    ``(start, end]``. Column-wise, like the serial fast path; any doubt gives a summary
    that is not ``clean``.
    """
    dirty = SegmentSummary(start, end, clean=False)
    count = end - start
    if count <= 0 or len(rows) != count:
        return dirty
    columns = _columns(rows, start)
    if columns is None:
        return dirty
    idxs, leaves, hashes, kinds, links, digests, partitions, offsets, topic_lens = columns
    if kinds.count(_RECORD) + kinds.count(_ANOMALY) + kinds.count(_ERASURE) != count:
        return dirty
    firsts: dict[tuple[bytes, int], int] = {}
    lasts: dict[tuple[bytes, int], int] = {}
    records = compress(
        zip(leaves, topic_lens, partitions, offsets, strict=True), map(_RECORD.__eq__, kinds)
    )
    for leaf, topic_len, partition, offset in records:
        if not topic_len:
            return dirty
        key = (leaf[HEADER_SIZE : HEADER_SIZE + topic_len], partition)
        last = lasts.get(key)
        if last is None:
            firsts[key] = offset
        elif offset <= last:
            return dirty
        lasts[key] = offset
    sealed = bytes(map(ZERO_HASH.__ne__, digests))
    paid: set[int] = set()
    if payloads:
        paid_idxs, blobs = zip(*payloads, strict=True)
        paid = set(paid_idxs)
        if len(paid) != len(paid_idxs) or min(paid_idxs) < start or max(paid_idxs) >= end:
            return dirty
        expected = tuple(digests[i - start] for i in paid_idxs)
        if ZERO_HASH in expected:  # a payload of an entry that has none
            return dirty
        if tuple(map(_DIGEST, map(hashlib.sha256, blobs))) != expected:
            return dirty
    missing = tuple(sorted(set(compress(idxs, sealed)) - paid))
    erasures = tuple(compress(zip(idxs, leaves, strict=True), map(_ERASURE.__eq__, kinds)))
    local = CompactRange()
    peaks_at: dict[int, tuple[bytes, ...]] = {}
    done = 0
    for size in sizes:
        if not start < size <= end:
            return dirty
        local.extend(hashes[done : size - start])
        done = size - start
        peaks_at[size] = local.peaks
    local.extend(hashes[done:])
    return SegmentSummary(
        start,
        end,
        True,
        links[0],
        hashes[-1],
        {key: (first, lasts[key]) for key, first in firsts.items()},
        sealed,
        missing,
        erasures,
        peaks_at,
        local.peaks,
    )


@dataclass
class _Target:
    """A root to compare at one tree size: from the store or trusted."""

    size: int
    root: bytes
    trusted: bool


@dataclass
class _State:
    expected: int = 0
    prev: bytes = ZERO_HASH
    offsets: dict[tuple[bytes, int], int] = field(default_factory=dict)
    sealed: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)
    early: dict[int, bytes] = field(default_factory=dict)
    erased_by: dict[int, int] = field(default_factory=dict)
    chain_pending: int | None = None


class LogVerifier:
    """Verifies a log streamed in index order; see the module docstring for the checks."""

    def __init__(
        self,
        *,
        trusted_keys: Sequence[NoteVerifier],
        origin: str,
        checkpoints: Iterable[StoredCheckpoint],
        trusted_checkpoints: Sequence[str] = (),
        trusted_heads: Sequence[tuple[int, bytes]] = (),
        max_problems: int = DEFAULT_MAX_PROBLEMS,
    ) -> None:
        """Verify the checkpoints' signatures now; leaves and payloads are fed afterwards.
        ``trusted_heads`` are ``(size, root)`` pairs authenticated elsewhere (a sharded
        trail's heads notes), held to as trusted checkpoints are."""
        self._keys = tuple(trusted_keys)
        self._origin = origin
        self._max = max_problems
        self._problems: list[Problem] = []
        self._count = 0
        self._tree = CompactRange()
        self._s = _State()
        self._targets: list[_Target] = []
        self._last_good = 0
        self._verified = 0
        self._latest: Checkpoint | None = None
        self._trusted_sizes: list[int] = []
        for stored in checkpoints:
            self._add_stored_checkpoint(stored)
        for note in trusted_checkpoints:
            self._add_trusted_checkpoint(note)
        for size, root in trusted_heads:
            self._trusted_sizes.append(size)
            if size > 0:
                self._targets.append(_Target(size, root, trusted=True))
        self._targets.sort(key=lambda t: (t.size, t.trusted))

    # -- problems ------------------------------------------------------------------------

    def _problem(self, problem: Problem) -> None:
        self._count += 1
        if len(self._problems) < self._max:
            self._problems.append(problem)

    # -- checkpoints ---------------------------------------------------------------------

    def _add_stored_checkpoint(self, stored: StoredCheckpoint) -> None:
        try:
            checkpoint = open_checkpoint(stored.note, self._keys, origin=self._origin)
        except NoteError as exc:
            self._problem(
                Problem(
                    ProblemCode.CHECKPOINT_INVALID,
                    f"checkpoint {stored.size} is not a checkpoint of this log signed by the "
                    f"pinned key: {exc}",
                    checkpoint_size=stored.size,
                )
            )
            return
        if checkpoint.size != stored.size:
            self._problem(
                Problem(
                    ProblemCode.CHECKPOINT_INVALID,
                    f"checkpoint stored for size {stored.size} is signed for size "
                    f"{checkpoint.size}",
                    checkpoint_size=stored.size,
                )
            )
            return
        self._verified += 1
        if self._latest is None or checkpoint.size > self._latest.size:
            self._latest = checkpoint
        if checkpoint.size > 0:
            self._targets.append(_Target(checkpoint.size, checkpoint.root, trusted=False))

    def _add_trusted_checkpoint(self, note: str) -> None:
        try:
            checkpoint = open_checkpoint(note, self._keys, origin=self._origin)
        except NoteError as exc:
            self._problem(
                Problem(
                    ProblemCode.TRUSTED_CHECKPOINT_INVALID,
                    f"the trusted checkpoint is not a checkpoint of this log signed by the "
                    f"pinned key: {exc}",
                )
            )
            return
        self._trusted_sizes.append(checkpoint.size)
        if checkpoint.size > 0:
            self._targets.append(_Target(checkpoint.size, checkpoint.root, trusted=True))

    def _check_targets(self) -> None:
        """Compare the root at the current tree size with every target of that size."""
        size = self._tree.size
        root = self._tree.root()
        matched = True
        while self._targets and self._targets[0].size == size:
            target = self._targets.pop(0)
            if target.root == root:
                continue
            matched = False
            where = f"the first divergent entry is in [{self._last_good}, {size})"
            if target.trusted:
                code = ProblemCode.FORK
                message = (
                    f"the first {size} entries are not those of the trusted checkpoint {size} "
                    f"(rewritten or forked log); {where}"
                )
            else:
                code = ProblemCode.ROOT_MISMATCH
                message = (
                    f"the first {size} entries do not hash to the root signed in checkpoint "
                    f"{size}; {where}"
                )
            self._problem(
                Problem(
                    code,
                    message,
                    index=self._last_good,
                    range_end=size,
                    checkpoint_size=size,
                    bound=True,
                )
            )
        if matched:
            self._last_good = size

    def _extend_tree(self, hashes: list[bytes]) -> None:
        """Append leaf hashes, stopping at every checkpoint size to compare roots."""
        tree = self._tree
        position = 0
        total = len(hashes)
        targets = self._targets
        while targets and targets[0].size <= tree.size + total - position:
            cut = targets[0].size - tree.size
            if cut > 0:
                tree.extend(hashes[position : position + cut])
                position += cut
            self._check_targets()
        if position < total:
            tree.extend(hashes[position:] if position else hashes)

    # -- segments (parallel verification) ------------------------------------------------

    def target_sizes(self) -> list[int]:
        """The checkpoint sizes to compare roots at (signed and trusted), ascending."""
        return sorted({target.size for target in self._targets})

    def add_segment(self, summary: SegmentSummary) -> bool:
        """Take the next segment's summary instead of its rows; ``False`` if it, or how it
        joins the entries before, is not intact.

        ``summary.start`` must be the current size and a multiple of a power of two at
        least the segment's length (so that its compact range joins the tree's). On
        ``False`` this verifier is spent: verify entry by entry instead, which reports
        every problem exactly.
        """
        s = self._s
        start, end = summary.start, summary.end
        if not summary.clean or start != s.expected or s.chain_pending is not None:
            return False
        if summary.first_link != s.prev:
            return False
        last_offsets = s.offsets
        if any(first <= last_offsets.get(key, -1) for key, (first, _) in summary.offsets.items()):
            return False
        targets = self._targets
        while targets and targets[0].size <= end:
            size = targets[0].size
            local = summary.peaks_at.get(size)
            if local is None:
                return False
            tree = self._tree.copy()
            tree.extend_range(size - start, local)
            root = tree.root()
            while targets and targets[0].size == size:
                if targets.pop(0).root != root:
                    return False
            self._last_good = size
        s.sealed.extend(summary.sealed)
        problems = self._count
        for idx, leaf in summary.erasures:
            self._erasure(idx, leaf)
        if self._count != problems:
            return False
        s.pending.update(dict.fromkeys(summary.missing, ZERO_HASH))
        last_offsets.update({key: last for key, (_, last) in summary.offsets.items()})
        self._tree.extend_range(end - start, summary.peaks)
        s.expected = end
        s.prev = summary.last_hash
        return True

    def unexcused_missing(self) -> int:
        """Sealed entries seen without a payload and not listed by an erasure entry."""
        s = self._s
        return sum(1 for idx in s.pending if idx not in s.erased_by)

    # -- leaves --------------------------------------------------------------------------

    def add_leaves(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Feed the next leaf rows ``(index, leaf, stored leaf hash)``, in index order."""
        if not rows:
            return
        hashes = self._fast(rows)
        if hashes is None:
            hashes = self._slow(rows)
        self._extend_tree(hashes)

    def _fast(self, rows: Sequence[tuple[int, bytes, bytes]]) -> list[bytes] | None:
        """Check a chunk column by column; ``None`` (state untouched) if anything is off.

        An intact chunk costs one pass of C-level ``map``/``zip``/tuple comparisons plus a
        short loop for the offsets; any doubt (a mismatch, an erasure entry, a pending chain
        break) sends the chunk to :meth:`_slow`, which pins each problem to its entry.
        """
        s = self._s
        if s.chain_pending is not None:
            return None
        columns = _columns(rows, s.expected)
        if columns is None:
            return None
        idxs, leaves, hashes, kinds, links, digests, partitions, offsets, topic_lens = columns
        count = len(idxs)
        if links[0] != s.prev or kinds.count(_RECORD) + kinds.count(_ANOMALY) != count:
            return None
        last_offsets = s.offsets
        updates: dict[tuple[bytes, int], int] = {}
        records = compress(
            zip(leaves, topic_lens, partitions, offsets, strict=True), map(_RECORD.__eq__, kinds)
        )
        for leaf, topic_len, partition, offset in records:
            if not topic_len:
                return None
            key = (leaf[HEADER_SIZE : HEADER_SIZE + topic_len], partition)
            last = updates.get(key)
            if last is None:
                last = last_offsets.get(key, -1)
            if offset <= last:
                return None
            updates[key] = offset
        sealed_pairs = list(
            compress(zip(idxs, digests, strict=True), map(ZERO_HASH.__ne__, digests))
        )
        early = s.early
        if early and any(early.get(i, d) != d for i, d in sealed_pairs):
            return None
        last_offsets.update(updates)
        s.sealed.extend(map(ZERO_HASH.__ne__, digests))
        if early:
            for i, d in sealed_pairs:
                if early.pop(i, None) is None:
                    s.pending[i] = d
        else:
            s.pending.update(sealed_pairs)
        s.expected += count
        s.prev = hashes[-1]
        return hashes

    def _slow(self, rows: Sequence[tuple[int, bytes, bytes]]) -> list[bytes]:  # noqa: PLR0915
        """Check a chunk entry by entry, reporting every problem at its index."""
        s = self._s
        sha = hashlib.sha256
        unpack = HEADER.unpack_from
        hashes: list[bytes] = []
        append = hashes.append
        expected = s.expected
        prev = s.prev
        sealed = s.sealed
        pending = s.pending
        early = s.early
        offsets = s.offsets
        for idx, leaf, stored in rows:
            h = sha(b"\x00" + leaf).digest()
            if idx != expected:
                self._gap(expected, idx)
            if h != stored:
                self._problem(
                    Problem(
                        ProblemCode.LEAF_HASH_MISMATCH,
                        f"entry {idx}: the stored leaf hash does not match the leaf bytes",
                        index=idx,
                    )
                )
            try:
                version, kind, seq, link, digest, partition, offset, topic_len = unpack(leaf)
            except struct.error:
                version = kind = 0
            if version != 1 or not _RECORD <= kind <= _ERASURE:
                self._malformed(idx, "unknown leaf version or entry type, or short header")
                sealed.append(0)
                self._link(idx, prev, prev)
                prev = h
                append(h)
                expected = idx + 1
                continue
            if seq != idx:
                self._problem(
                    Problem(
                        ProblemCode.MISPLACED_ENTRY,
                        f"entry stored at {idx} is entry {seq} (entries swapped, inserted or "
                        "removed)",
                        index=min(idx, seq),
                    )
                )
            if link != prev or s.chain_pending is not None:
                self._link(idx, link, prev, misplaced=seq != idx)
            if digest != ZERO_HASH:
                sealed.append(1)
                actual = early.pop(idx, None)
                if actual is None:
                    pending[idx] = digest
                elif actual != digest:
                    self._payload_mismatch(idx)
            else:
                sealed.append(0)
            if kind == _RECORD:
                if topic_len == 0:
                    self._malformed(idx, "a record entry without a source")
                else:
                    key = (leaf[HEADER_SIZE : HEADER_SIZE + topic_len], partition)
                    last = offsets.get(key, -1)
                    if offset <= last:
                        self._offset_order(idx, key, offset, last)
                    else:
                        offsets[key] = offset
            elif kind == _ERASURE:
                self._erasure(idx, leaf)
            prev = h
            append(h)
            expected = idx + 1
        s.expected = expected
        s.prev = prev
        return hashes

    def _gap(self, expected: int, idx: int) -> None:
        if idx > expected:
            self._s.sealed.extend(bytes(idx - expected))
        self._problem(
            Problem(
                ProblemCode.MISSING_ENTRIES,
                f"entries [{expected}, {idx}) are missing (deleted rows)",
                index=expected,
                range_end=idx,
            )
        )

    def _malformed(self, idx: int, why: str) -> None:
        self._problem(Problem(ProblemCode.MALFORMED_LEAF, f"entry {idx}: {why}", index=idx))

    def _link(self, idx: int, link: bytes, prev: bytes, misplaced: bool = False) -> None:
        """Attribute chain breaks: the edited entry is the one inconsistent with a neighbour.

        A lone break between ``idx - 1`` and ``idx`` means entry ``idx - 1`` was edited (its
        successor committed to its old hash); breaks on both sides of ``idx`` mean ``idx``
        itself was replaced; a misplaced entry is already reported as such.
        """
        s = self._s
        broken = link != prev
        pending = s.chain_pending
        s.chain_pending = None
        if pending is not None:
            if broken and idx == pending + 2:
                self._chain_problem(idx - 1)
                return
            self._chain_problem(pending)
        if broken and not misplaced and idx > 0:
            s.chain_pending = idx - 1

    def _chain_problem(self, blamed: int) -> None:
        self._problem(
            Problem(
                ProblemCode.CHAIN_BREAK,
                f"entry {blamed} is not the entry its neighbours were chained to (edited "
                "after it was appended, even if its stored hash was recomputed)",
                index=blamed,
            )
        )

    def _flush_chain(self) -> None:
        s = self._s
        if s.chain_pending is not None:
            self._chain_problem(s.chain_pending)
            s.chain_pending = None

    def _offset_order(self, idx: int, key: tuple[bytes, int], offset: int, last: int) -> None:
        self._problem(
            Problem(
                ProblemCode.OFFSET_ORDER,
                f"entry {idx}: offset {offset} of partition {key[1]} does not follow offset "
                f"{last} of an earlier record entry",
                index=idx,
            )
        )

    def _payload_mismatch(self, idx: int) -> None:
        self._problem(
            Problem(
                ProblemCode.PAYLOAD_MISMATCH,
                f"entry {idx}: the stored payload does not hash to the digest in the leaf",
                index=idx,
            )
        )

    def _erasure(self, idx: int, leaf: bytes) -> None:
        s = self._s
        try:
            body = decode_leaf(leaf).body
        except LeafFormatError as exc:
            self._malformed(idx, f"erasure entry: {exc}")
            return
        erased = body.get("erased")
        if (
            not isinstance(erased, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in erased)
            or not isinstance(body.get("erased_at"), int)
        ):
            self._bad_erasure(idx, "its body is not a list of indices and a time")
            return
        previous = -1
        for target in erased:
            if target <= previous or target >= idx or target < 0:
                self._bad_erasure(idx, "its indices are not increasing earlier entries")
                return
            previous = target
            if target >= len(s.sealed) or not s.sealed[target]:
                self._bad_erasure(idx, f"it lists entry {target}, which has no payload")
                return
            if target in s.erased_by:
                self._bad_erasure(idx, f"entry {target} was already erased")
                return
        for target in erased:
            s.erased_by[target] = idx

    def _bad_erasure(self, idx: int, why: str) -> None:
        self._problem(Problem(ProblemCode.BAD_ERASURE, f"erasure entry {idx}: {why}", index=idx))

    # -- payloads ------------------------------------------------------------------------

    def add_payloads(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Feed payload rows ``(index, sealed payload)`` in index order."""
        s = self._s
        sha = hashlib.sha256
        pending = s.pending
        early = s.early
        for idx, blob in rows:
            actual = sha(blob).digest()
            expected = pending.pop(idx, None)
            if expected is None:
                early[idx] = actual
            elif expected != actual:
                self._payload_mismatch(idx)

    # -- the end -------------------------------------------------------------------------

    def finish(self) -> Report:
        """Close the checks that need the whole log and return the report."""
        s = self._s
        self._flush_chain()
        size = self._tree.size
        end = s.expected
        for target in self._targets:
            code = ProblemCode.FORK if target.trusted else ProblemCode.TRUNCATED
            which = "trusted checkpoint" if target.trusted else "checkpoint"
            self._problem(
                Problem(
                    code,
                    f"the log ends at {end} entries but the {which} {target.size} covers "
                    f"{target.size} (truncated or rolled back)",
                    index=end,
                    range_end=target.size,
                    checkpoint_size=target.size,
                )
            )
        self._targets.clear()
        for idx in sorted(s.pending):
            if idx not in s.erased_by:
                self._problem(
                    Problem(
                        ProblemCode.PAYLOAD_MISSING,
                        f"entry {idx}: its payload is missing and no erasure entry lists it",
                        index=idx,
                    )
                )
        for idx in sorted(s.early):
            self._problem(
                Problem(
                    ProblemCode.ORPHAN_PAYLOAD,
                    f"a payload is stored for entry {idx}, which has no sealed payload",
                    index=idx,
                )
            )
        problems = ordered(self._problems)
        signed = self._latest.size if self._latest is not None else 0
        return Report(
            size=size,
            problems=problems,
            problem_count=self._count,
            erased=len(s.erased_by),
            checkpoints_verified=self._verified,
            latest_checkpoint=self._latest,
            trusted_sizes=tuple(self._trusted_sizes),
            unsigned_tail=max(0, size - signed),
        )
