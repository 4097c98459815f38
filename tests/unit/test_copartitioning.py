"""Co-partitioning, as the guard's group assigns it: with the range assignor (aiokafka's
own), every member gets the same partition numbers of each account topic, and the
one-partition topics (recipients, orders, order requests) all go to one member.
The guard's decisions depend on it; this pins the assignor's behaviour."""

from __future__ import annotations

import pytest
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.settings import Topics
from sharing_guard.stream.loop import check_copartitioned

T = Topics()
ACCOUNT = [T.transfers, T.consents, T.rights]
SINGLE = [T.recipients, T.orders, T.order_requests]


class Cluster:
    """The one thing the assignor asks of cluster metadata."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self._partitions[topic]))


@given(partitions=st.integers(1, 24), members=st.integers(1, 8))
def test_the_range_assignor_co_partitions_the_account_topics(partitions: int, members: int) -> None:
    counts = {**{t: partitions for t in ACCOUNT}, **{t: 1 for t in SINGLE}}
    subscriptions = {
        f"member-{i:02d}": RangePartitionAssignor.metadata([*ACCOUNT, *SINGLE])
        for i in range(members)
    }
    result = RangePartitionAssignor.assign(Cluster(counts), subscriptions)  # type: ignore[arg-type]
    owners_of_single = set()
    for member, assignment in result.items():
        tps = [TopicPartition(t, p) for t, ps in assignment.assignment for p in ps]
        check_copartitioned(tps, ACCOUNT)  # raises if uneven
        if any(tp.topic in SINGLE for tp in tps):
            assert {tp.topic for tp in tps if tp.topic in SINGLE} == set(SINGLE)
            owners_of_single.add(member)
    assert len(owners_of_single) == 1
    every = [p for a in result.values() for t, ps in a.assignment if t == T.transfers for p in ps]
    assert sorted(every) == list(range(partitions))


def test_an_uneven_assignment_is_refused() -> None:
    tps = [
        TopicPartition(T.transfers, 0),
        TopicPartition(T.consents, 1),
        TopicPartition(T.rights, 0),
    ]
    with pytest.raises(RuntimeError, match="co-partitioned"):
        check_copartitioned(tps, ACCOUNT)
