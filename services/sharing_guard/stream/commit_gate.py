"""Which input offsets a worker may commit: only those of records whose effects are durable.

Faust commits the offsets of acknowledged messages, and it acknowledges some messages
that never reached an agent: a message caught in a stream's buffer while flow control is
suspended, or fetched in an earlier rebalance generation, is *skipped and acknowledged*.
Its table writes go through a buffer that is not flushed before a commit. Either way a
crash can leave a committed offset above a record whose decision, table change or audit
record never reached the broker, and the record is never read again.

:class:`CommitGate` keeps, per input partition, the next offset the worker expects and
the records processed since the last commit with the futures of their outputs (table
changelog writes, decisions, audit records). The offset it reports as committable never
passes a record that was not processed, or whose outputs the broker has not acknowledged,
or a hole: a record that arrived at an offset above the expected one reports the hole,
which the worker reads back from the broker and processes first (a hole can also be real:
compaction and transaction markers leave offsets empty). A hole with nothing after it
(Faust fetched the rest of a partition and delivered none of it) is found by the worker's
sweep, which compares the consumer's position with the expected offset.

Only bookkeeping here: no I/O, no clock. The worker decides what to read and when.
"""

from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from sharing_guard.stream.catchup import Partition


class Output(Protocol):
    """The future of one produced record (an ``asyncio.Future`` in practice)."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


class Span(NamedTuple):
    """Offsets ``[first, end)`` of a partition."""

    first: int
    end: int


def _succeeded(output: Output) -> bool:
    return output.done() and not output.cancelled() and output.exception() is None


class CommitGate:
    """Per input partition: the next expected offset and what may be committed."""

    def __init__(self) -> None:
        self._expected: dict[Partition, int] = {}
        self._pending: dict[Partition, deque[tuple[int, tuple[Output, ...]]]] = {}
        self._committable: dict[Partition, int] = {}

    def tracking(self, tp: Partition) -> bool:
        """Whether the expected offset of ``tp`` is known (see :meth:`start`)."""
        return tp in self._expected

    def expected(self, tp: Partition) -> int:
        """The next offset of ``tp`` to process: every record below it was processed."""
        return self._expected[tp]

    def start(self, tp: Partition, offset: int) -> None:
        """Begin tracking ``tp`` at ``offset``: the committed offset the consumer resumed
        from (or the log start when nothing was committed)."""
        self._expected[tp] = offset
        self._pending[tp] = deque()
        self._committable.pop(tp, None)

    def forget(self, tps: Iterable[Partition]) -> None:
        """Stop tracking partitions this worker no longer owns (a rebalance)."""
        for tp in tps:
            self._expected.pop(tp, None)
            self._pending.pop(tp, None)
            self._committable.pop(tp, None)

    def holes(self, tp: Partition, offsets: Iterable[int]) -> list[Span]:
        """The offsets between the expected one and the highest of ``offsets`` (records of
        ``tp`` about to be processed) that are not among them: records Faust never
        delivered, or offsets left empty by compaction. Read them back from the broker and
        pass them to :meth:`processed` as ``read_back``."""
        expected = self._expected[tp]
        found = []
        for offset in sorted(set(offsets)):
            if offset > expected:
                found.append(Span(expected, offset))
            expected = max(expected, offset + 1)
        return found

    def processed(
        self,
        tp: Partition,
        offsets: Iterable[int],
        outputs: Sequence[Output],
        read_back: Iterable[Span] = (),
    ) -> None:
        """Records of ``tp`` at ``offsets`` are processed and ``outputs`` are the futures
        of what they produced; ``read_back`` are spans read from the broker, whose records
        are among ``offsets`` (the rest of a span holds none). Processing must follow on
        from the expected offset: what lies beyond a gap does not advance it."""
        marks = sorted([(o, o + 1) for o in offsets] + [tuple(s) for s in read_back])
        before = expected = self._expected[tp]
        for first, end in marks:
            if first > expected:
                break
            expected = max(expected, end)
        if expected > before:
            self._expected[tp] = expected
            self._pending[tp].append((expected, tuple(outputs)))

    def committable(self, tp: Partition) -> int | None:
        """The highest offset of ``tp`` that may be committed now, or ``None``."""
        pending = self._pending.get(tp)
        if pending is None:
            return None
        while pending and all(_succeeded(o) for o in pending[0][1]):
            self._committable[tp] = pending.popleft()[0]
        return self._committable.get(tp)

    def failed(self, tp: Partition) -> BaseException | None:
        """The first error among the unacknowledged outputs of ``tp``, if one failed."""
        for _, outputs in self._pending.get(tp, ()):
            for output in outputs:
                if output.done() and not output.cancelled() and output.exception() is not None:
                    return output.exception()
        return None


class Sweep:
    """Partitions whose undelivered records nothing will reveal: the consumer fetched past
    the offset the gate expects next (``position > expected``) and that offset has not
    moved since the previous observation. An untracked partition counts as expecting
    offset -1 (nothing delivered yet in this generation)."""

    def __init__(self) -> None:
        self._marks: dict[Partition, int] = {}

    def stale(self, tp: Partition, position: int | None, expected: int | None) -> bool:
        """Observe ``tp``; whether its records up to ``position`` should be read back."""
        mark = -1 if expected is None else expected
        found = position is not None and position > mark and self._marks.get(tp) == mark
        self._marks[tp] = mark
        return found

    def forget(self, tps: Iterable[Partition]) -> None:
        """Start afresh for partitions assigned or revoked (a rebalance)."""
        for tp in tps:
            self._marks.pop(tp, None)
