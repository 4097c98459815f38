"""Making a transfer wait until the state it depends on is applied up to a known point.

The ordering promise (see docs/ordering.md): a state event (consent withdrawal,
restriction, erasure, order revocation) that the broker acknowledged before a transfer
was produced is applied before that transfer is decided. The guard reads the end offset
of the state partitions *after* it received the transfer; every record acknowledged
before the transfer was produced lies below that end offset, so waiting until the state
agents have applied everything below it is enough.

:class:`CatchUp` tracks, per state partition, the next offset not yet applied (a lower
bound), and lets a decider wait until given targets are reached.
"""

import asyncio
from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Partition(NamedTuple):
    """A topic partition."""

    topic: str
    partition: int


class CatchUp:
    """Applied positions of state partitions, and waiting for them."""

    def __init__(self) -> None:
        self._next: dict[Partition, int] = {}
        self._changed = asyncio.Condition()

    def position(self, tp: Partition) -> int | None:
        """The next offset of ``tp`` not yet known to be applied, or ``None`` if unknown."""
        return self._next.get(tp)

    async def advance(self, tp: Partition, next_offset: int) -> None:
        """Record that everything below ``next_offset`` of ``tp`` is applied."""
        async with self._changed:
            if next_offset > self._next.get(tp, -1):
                self._next[tp] = next_offset
                self._changed.notify_all()

    def forget(self, tps: Iterable[Partition]) -> None:
        """Drop positions of partitions this worker no longer owns."""
        for tp in tps:
            self._next.pop(tp, None)

    def reached(self, targets: Mapping[Partition, int]) -> bool:
        """Whether every partition is applied up to (excluding) its target offset."""
        return all(self._next.get(tp, -1) >= end for tp, end in targets.items() if end > 0)

    async def wait(self, targets: Mapping[Partition, int], timeout: float) -> bool:
        """Wait until :meth:`reached`; ``False`` if ``timeout`` seconds pass first."""
        if self.reached(targets):
            return True
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.reached(targets)), timeout
                )
            except TimeoutError:
                return False
        return True
