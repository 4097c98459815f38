"""The commit gate: an offset becomes committable only when every record below it was
processed and its outputs acknowledged; records Faust never delivered show up as holes."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.stream.catchup import Partition
from sharing_guard.stream.commit_gate import CommitGate, Span, Sweep

TP = Partition("sharing.transfers.requested", 3)


@dataclass
class Ack:
    """A produced record's future: pending, acknowledged, or failed."""

    finished: bool = False
    error: BaseException | None = None

    def done(self) -> bool:
        return self.finished

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self.error


def gate_at(offset: int) -> CommitGate:
    gate = CommitGate()
    gate.start(TP, offset)
    return gate


def test_nothing_is_committable_before_a_record_is_processed() -> None:
    gate = gate_at(40)
    assert gate.tracking(TP)
    assert gate.committable(TP) is None
    assert gate.committable(Partition("other", 0)) is None


def test_an_offset_is_committable_once_its_outputs_are_acknowledged() -> None:
    gate = gate_at(40)
    first, second = Ack(), Ack()
    gate.processed(TP, [40, 41], [first, second])
    assert gate.committable(TP) is None
    first.finished = True
    assert gate.committable(TP) is None
    second.finished = True
    assert gate.committable(TP) == 42


def test_a_later_batch_waits_for_an_earlier_one() -> None:
    gate = gate_at(0)
    early, late = Ack(), Ack(finished=True)
    gate.processed(TP, [0, 1], [early])
    gate.processed(TP, [2], [late])
    assert gate.committable(TP) is None
    early.finished = True
    assert gate.committable(TP) == 3


def test_a_failed_output_never_becomes_committable_and_is_reported() -> None:
    gate = gate_at(0)
    broken = Ack(finished=True, error=RuntimeError("NotEnoughReplicas"))
    gate.processed(TP, [0], [broken])
    gate.processed(TP, [1], [Ack(finished=True)])
    assert gate.committable(TP) is None
    assert isinstance(gate.failed(TP), RuntimeError)


def test_holes_name_every_offset_not_delivered() -> None:
    gate = gate_at(10)
    assert gate.holes(TP, [10, 11, 12]) == []
    assert gate.holes(TP, [12, 13, 15]) == [Span(10, 12), Span(14, 15)]
    assert gate.holes(TP, [7, 8]) == []  # redeliveries below the expected offset


def test_records_beyond_a_hole_do_not_advance_the_gate() -> None:
    gate = gate_at(10)
    gate.processed(TP, [10, 11, 13, 14], [])
    assert gate.committable(TP) == 12
    # 13 and 14 are read again with the hole: processing them twice is idempotent.
    assert gate.holes(TP, [15]) == [Span(12, 15)]


def test_a_span_read_back_covers_its_empty_offsets() -> None:
    """Compaction leaves offsets empty: a read-back span with no record at 11 still counts."""
    gate = gate_at(10)
    gate.processed(TP, [10, 12, 13], [], read_back=[Span(11, 12)])
    assert gate.committable(TP) == 14


def test_forgetting_a_partition_stops_its_commits_until_restarted() -> None:
    gate = gate_at(0)
    gate.processed(TP, [0], [])
    gate.forget([TP])
    assert not gate.tracking(TP)
    assert gate.committable(TP) is None
    gate.start(TP, 5)
    gate.processed(TP, [5], [])
    assert gate.committable(TP) == 6


@given(
    n=st.integers(min_value=1, max_value=120),
    dropped=st.sets(st.integers(min_value=0, max_value=119)),
    cuts=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=40),
    acked_late=st.sets(st.integers(min_value=0, max_value=40)),
)
def test_the_committed_offset_never_passes_an_unprocessed_record(
    n: int, dropped: set[int], cuts: list[int], acked_late: set[int]
) -> None:
    """Records 0..n-1 arrive in batches, some never delivered (Faust skipped them); the
    worker reads holes back as the gate reports them. At every step the committable
    offset is at most the lowest offset not yet processed with acknowledged outputs, and
    at the end every record was processed and everything is committable."""
    gate = gate_at(0)
    delivered = [o for o in range(n) if o not in dropped]
    done: set[int] = set()
    pending: list[tuple[list[int], Ack]] = []
    position = 0
    batch_no = 0
    while position < len(delivered):
        size = cuts[batch_no % len(cuts)]
        batch = delivered[position : position + size]
        position += size
        holes = gate.holes(TP, batch)
        back = [o for span in holes for o in range(span.first, span.end)]
        ack = Ack(finished=batch_no not in acked_late)
        gate.processed(TP, batch + back, [ack], read_back=holes)
        pending.append((batch + back, ack))
        batch_no += 1
        durable = {o for offsets, a in pending if a.finished for o in offsets}
        done = durable
        lowest_open = min((o for o in range(n) if o not in done), default=n)
        committable = gate.committable(TP)
        assert committable is None or committable <= lowest_open
    for _, ack in pending:
        ack.finished = True
    if delivered:
        processed = {o for offsets, _ in pending for o in offsets}
        assert processed == set(range(max(delivered) + 1))
        assert gate.committable(TP) == max(delivered) + 1


def test_the_sweep_reads_back_a_tail_that_no_later_record_reveals() -> None:
    """The consumer fetched up to 1,664 and nothing arrived: stale on the second look."""
    sweep = Sweep()
    assert not sweep.stale(TP, 1_664, 900)  # a first look proves nothing: it may be in flight
    assert sweep.stale(TP, 1_664, 900)


def test_the_sweep_leaves_a_partition_alone_while_it_progresses_or_is_done() -> None:
    sweep = Sweep()
    assert not sweep.stale(TP, 1_664, 900)
    assert not sweep.stale(TP, 1_700, 1_000)  # the gate moved: records are flowing
    assert not sweep.stale(TP, 1_700, 1_700)  # everything fetched was processed
    assert not sweep.stale(TP, 1_700, 1_700)
    assert not sweep.stale(TP, None, 1_700)  # no position known (a reset under way)


def test_the_sweep_covers_a_partition_nothing_was_delivered_from() -> None:
    sweep = Sweep()
    assert not sweep.stale(TP, 12, None)
    assert sweep.stale(TP, 12, None)


def test_a_rebalance_restarts_the_sweeps_observation() -> None:
    sweep = Sweep()
    sweep.stale(TP, 50, 10)
    sweep.forget([TP])
    assert not sweep.stale(TP, 50, 10)


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.one_of(st.none(), st.integers(0, 100))),
        min_size=1,
        max_size=30,
    )
)
def test_the_sweep_is_stale_only_when_behind_and_unmoved(
    looks: list[tuple[int, int | None]],
) -> None:
    sweep = Sweep()
    previous: int | None = None
    for i, (position, expected) in enumerate(looks):
        mark = -1 if expected is None else expected
        stale = sweep.stale(TP, position, expected)
        assert stale == (i > 0 and position > mark and previous == mark)
        previous = mark
