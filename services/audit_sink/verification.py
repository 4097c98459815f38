"""A full verification of a stored log, streamed into :class:`~audit_sink.verify.LogVerifier`.

A plain function a command or a server can call. The leaves and the payloads are read
from one snapshot with two cursors, in index order, and merged chunk by chunk so memory
stays bounded by the chunk size.
"""

from __future__ import annotations

import gc
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from queue import Empty, Queue

from audit_sink.checkpoint import NoteVerifier
from audit_sink.store import LogReader
from audit_sink.verify import LogVerifier, Report, StoredCheckpoint

__all__ = ["DEFAULT_CHUNK", "verify_log"]

DEFAULT_CHUNK = 16384


def verify_log(
    reader: LogReader,
    *,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    trusted_checkpoints: Sequence[str] = (),
    chunk_size: int = DEFAULT_CHUNK,
) -> Report:
    """Verify everything the reader's snapshot holds; see :mod:`audit_sink.verify`.

    The cyclic garbage collector is paused meanwhile: the scan allocates millions of
    short-lived tuples and no cycles, and collections would cost a third of the time.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _verify(reader, trusted_keys, origin, trusted_checkpoints, chunk_size)
    finally:
        if collecting:
            gc.enable()


def _verify(
    reader: LogReader,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    trusted_checkpoints: Sequence[str],
    chunk_size: int,
) -> Report:
    verifier = LogVerifier(
        trusted_keys=trusted_keys,
        origin=origin,
        checkpoints=[StoredCheckpoint(row.size, row.note) for row in reader.checkpoints()],
        trusted_checkpoints=trusted_checkpoints,
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
