"""Sharing one reading of the state's end offsets between batches: a reading serves a
batch only if it was asked for after every record of the batch was in the log (the
consumer had seen a high watermark above them), in the same consumer generation, and
holds every state partition the batch needs; otherwise the state is read afresh."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.stream.end_offsets import Partition, Reading, StateEnds

T0 = Partition("sharing.transfers.requested", 0)
T1 = Partition("sharing.transfers.requested", 1)
C0 = Partition("governance.consents", 0)
C1 = Partition("governance.consents", 1)
R0 = Partition("governance.subject-rights", 0)


def reading(generation: int = 3) -> Reading:
    return Reading(generation, covers={T0: 100, T1: 50}, ends={C0: 7, R0: 9, C1: 2})


def test_a_reading_serves_records_below_the_high_watermark_seen_before_it() -> None:
    assert reading().serves(3, {T0: 99, T1: 49}, [C0, R0])


def test_a_record_at_or_above_that_high_watermark_needs_a_new_reading() -> None:
    assert not reading().serves(3, {T0: 100}, [C0])
    assert not reading().serves(3, {T0: 5, T1: 50}, [C0])


def test_an_input_partition_the_reading_saw_no_high_watermark_of_needs_a_new_reading() -> None:
    other = Partition("sharing.transfers.requested", 2)
    assert not reading().serves(3, {other: 0}, [C0])


def test_another_generation_or_a_state_partition_not_read_needs_a_new_reading() -> None:
    assert not reading().serves(4, {T0: 1}, [C0])
    assert not reading().serves(3, {T0: 1}, [Partition("governance.consents", 5)])


@given(
    generation=st.integers(0, 3),
    offsets=st.dictionaries(st.sampled_from([T0, T1]), st.integers(0, 200), max_size=2),
    state=st.lists(st.sampled_from([C0, C1, R0, Partition("governance.consents", 4)])),
)
def test_serves_exactly_when_every_condition_holds(
    generation: int, offsets: dict[Partition, int], state: list[Partition]
) -> None:
    r = reading()
    expected = (
        generation == r.generation
        and all(offset < r.covers[tp] for tp, offset in offsets.items())
        and set(state) <= set(r.ends)
    )
    assert r.serves(generation, offsets, state) is expected


def test_state_ends_reads_once_and_shares_the_reading_while_it_covers_the_batches() -> None:
    asked: list[list[Partition]] = []
    answers = iter([{C0: 10, R0: 4, C1: 6}, {C0: 12, R0: 5, C1: 6}])

    async def read(partitions: list[Partition]) -> dict[Partition, int]:
        asked.append(partitions)
        return next(answers)

    async def scenario() -> None:
        ends = StateEnds(read)
        assert ends.reuse(1, {T0: 0}, [C0]) is None  # nothing read yet
        first = await ends.read(1, {T0: 40, T1: 8}, [C0, R0, C1], [C0, R0])
        assert first == {C0: 10, R0: 4}  # only the state asked for
        # A later batch below both high watermarks: the same reading, no request.
        assert ends.reuse(1, {T0: 39, T1: 7}, [C1]) == {C1: 6}
        assert ends.reuse(1, {T0: 40}, [C0]) is None  # produced after the reading, maybe
        assert ends.reuse(2, {T0: 1}, [C0]) is None  # a rebalance since
        second = await ends.read(1, {T0: 60}, [C0, R0], [C0])
        assert second == {C0: 12}
        assert ends.reuse(1, {T0: 59}, [R0]) == {R0: 5}
        assert ends.reuse(1, {T1: 0}, [R0]) is None  # T1 not seen before this reading
        assert (ends.requests, ends.shared) == (2, 2)

    asyncio.run(scenario())
    assert asked == [[C0, R0, C1], [C0, R0]]
