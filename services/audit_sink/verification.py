"""A full verification of a stored log, streamed into :class:`~audit_sink.verify.LogVerifier`.

A plain function a command or a server can call. Two ways, one result:

* **In parallel** (logs of at least two segments, when the store can share its snapshot
  and more than one worker is allowed): the index range is cut into aligned segments of
  ``segment_size`` entries (a power of two), which helper processes check on their own
  (:func:`~audit_sink.verify.summarise_segment`: leaf hashes, format, positions, the chain
  and offset order inside the segment, payloads, the segment's Merkle subtrees), each on
  its own connection to the same snapshot. The parent joins their summaries in index order
  (:meth:`~audit_sink.verify.LogVerifier.add_segment`: the chain and offsets across
  boundaries, erasure entries, the roots of every checkpoint). If anything at all is off,
  or a sealed entry lacks its payload without an erasure entry listing it, the parent
  verifies the log again entry by entry in its own snapshot, so a report with problems is
  always exactly the serial one.
* **Serially**: the leaves and the payloads are read from one snapshot with two cursors, in
  index order, and merged chunk by chunk so memory stays bounded by the chunk size.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from queue import Empty, Queue

from audit_sink.checkpoint import NoteVerifier
from audit_sink.store import LogReader, SnapshotRef
from audit_sink.verify import (
    LogVerifier,
    Report,
    SegmentSummary,
    StoredCheckpoint,
    summarise_segment,
)

__all__ = ["DEFAULT_CHUNK", "DEFAULT_SEGMENT", "verify_log"]

DEFAULT_CHUNK = 16384
DEFAULT_SEGMENT = 16384


def verify_log(
    reader: LogReader,
    *,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    trusted_checkpoints: Sequence[str] = (),
    trusted_heads: Sequence[tuple[int, bytes]] = (),
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    segment_size: int = DEFAULT_SEGMENT,
) -> Report:
    """Verify everything the reader's snapshot holds; see :mod:`audit_sink.verify`.

    ``workers`` helper processes check segments in parallel (``0``: one per CPU; ``1``, the
    default: serial). The helpers are forked: call it with ``workers != 1`` only from a
    process with no other thread running (a command line, not a threaded server). The
    cyclic garbage collector is paused meanwhile: the scan allocates millions of
    short-lived tuples and no cycles, and collections would cost a third of the time.
    ``trusted_heads`` are ``(size, root)`` pairs already authenticated elsewhere (a heads
    note of a sharded trail, :mod:`audit_sink.heads`), checked as trusted checkpoints are.
    """
    if segment_size < 1 or segment_size & (segment_size - 1):
        raise ValueError("the segment size must be a power of two")
    workers = workers or os.cpu_count() or 1
    collecting = gc.isenabled()
    gc.disable()
    try:
        if workers > 1:
            report = _verify_parallel(
                reader,
                trusted_keys=trusted_keys,
                origin=origin,
                trusted_checkpoints=trusted_checkpoints,
                trusted_heads=trusted_heads,
                workers=workers,
                segment_size=segment_size,
            )
            if report is not None:
                return report
        return _verify(
            reader,
            trusted_keys=trusted_keys,
            origin=origin,
            trusted_checkpoints=trusted_checkpoints,
            trusted_heads=trusted_heads,
            chunk_size=chunk_size,
        )
    finally:
        if collecting:
            gc.enable()


def _verify_parallel(
    reader: LogReader,
    *,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    trusted_checkpoints: Sequence[str],
    trusted_heads: Sequence[tuple[int, bytes]],
    workers: int,
    segment_size: int,
) -> Report | None:
    """The parallel verification; ``None`` when the serial one must decide."""
    size = reader.size()
    if size < 2 * segment_size:
        return None
    verifier = LogVerifier(
        trusted_keys=trusted_keys,
        origin=origin,
        checkpoints=[StoredCheckpoint(row.size, row.note) for row in reader.checkpoints()],
        trusted_checkpoints=trusted_checkpoints,
        trusted_heads=trusted_heads,
    )
    if reader.payloads_outside(0, size):
        return None  # orphan payloads beyond the log: the serial path reports them
    snapshot = reader.snapshot_ref()
    if snapshot is None:
        return None
    sizes = verifier.target_sizes()
    shares: list[list[tuple[int, int, list[int]]]] = [[] for _ in range(workers)]
    for number, start in enumerate(range(0, size, segment_size)):
        end = min(start + segment_size, size)
        inside = [c for c in sizes if start < c <= end]
        shares[number % workers].append((start, end, inside))
    # Fork: the helpers start at once and inherit the loaded modules; each opens its own
    # connection and never touches the parent's (they end with os._exit, no finalizers).
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_summarise, snapshot, share) for share in shares if share]
        summaries = sorted(
            (summary for future in futures for summary in future.result()),
            key=lambda summary: summary.start,
        )
    for summary in summaries:
        if not verifier.add_segment(summary):
            return None
    if verifier.unexcused_missing():
        return None  # payload-missing is reported from the reader's own snapshot
    return verifier.finish()


def _summarise(
    snapshot: SnapshotRef, share: Sequence[tuple[int, int, list[int]]]
) -> list[SegmentSummary]:
    """A helper process's work: summarise its segments, on its own connection."""
    gc.disable()
    found: list[SegmentSummary] = []
    with snapshot.open() as segments:
        for start, end, sizes in share:
            rows = segments.leaf_rows_between(start, end)
            payloads = segments.payload_rows_between(start, end)
            found.append(summarise_segment(start, end, rows, payloads, sizes))
            del rows, payloads
            if not found[-1].clean:
                break  # the parent will verify serially anyway
    return found


def _verify(
    reader: LogReader,
    *,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    trusted_checkpoints: Sequence[str],
    trusted_heads: Sequence[tuple[int, bytes]],
    chunk_size: int,
) -> Report:
    verifier = LogVerifier(
        trusted_keys=trusted_keys,
        origin=origin,
        checkpoints=[StoredCheckpoint(row.size, row.note) for row in reader.checkpoints()],
        trusted_checkpoints=trusted_checkpoints,
        trusted_heads=trusted_heads,
    )
    for rows, payloads in _prefetched(_merged(reader, chunk_size)):
        verifier.add_leaves(rows)
        verifier.add_payloads(payloads)
    return verifier.finish()


_Pair = tuple[list[tuple[int, bytes, bytes]], list[tuple[int, bytes]]]


def _merged(reader: LogReader, chunk_size: int) -> Iterator[_Pair]:
    """Leaf chunks, each with the payload rows up to its last index (the rest at the end)."""
    payloads = _Merge(reader.payload_chunks(chunk_size))
    for rows in reader.leaf_chunks(chunk_size):
        yield rows, payloads.upto(rows[-1][0])
    yield [], payloads.rest()


def _prefetched(chunks: Iterator[_Pair], depth: int = 2) -> Iterator[_Pair]:
    """Read the next chunks in a thread while this one is checked.

    The database drivers release the GIL while the database works (SQLite's page reads,
    PostgreSQL's server and network), so reading overlaps hashing. The reader is used
    from that one thread only; an error there is re-raised here.
    """
    queue: Queue[_Pair | BaseException | None] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in chunks:
                if stop.is_set():
                    return
                queue.put(item)
        except BaseException as exc:  # handed to the consumer, never lost
            queue.put(exc)
            return
        queue.put(None)

    thread = threading.Thread(target=produce, name="audit-verify-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                queue.get(timeout=0.05)
            except Empty:
                continue
        thread.join()


class _Merge:
    """Hands out payload rows up to a given index, from a chunked, ordered stream."""

    def __init__(self, chunks: Iterator[list[tuple[int, bytes]]]) -> None:
        self._chunks = chunks
        self._buffer: list[tuple[int, bytes]] = []
        self._done = False

    def upto(self, last: int) -> list[tuple[int, bytes]]:
        """The rows with index ``<= last`` not handed out yet."""
        out: list[tuple[int, bytes]] = []
        while True:
            if not self._buffer:
                if self._done:
                    return out
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._done = True
                    return out
                self._buffer = chunk
            if self._buffer[-1][0] <= last:
                out.extend(self._buffer)
                self._buffer = []
                continue
            cut = bisect_right(self._buffer, last, key=lambda row: row[0])
            out.extend(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
            return out

    def rest(self) -> list[tuple[int, bytes]]:
        """Every row not handed out yet."""
        out = self._buffer
        self._buffer = []
        for chunk in self._chunks:
            out.extend(chunk)
        self._done = True
        return out
