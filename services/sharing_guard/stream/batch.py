"""One pass of the guard's input loop: what it changes, what it produces, what it commits.

A :class:`Batch` collects, while the records of one ``getmany`` are processed:

* the **changelog writes**, per changelog partition and in order. Reads during the batch
  see them (:meth:`Batch.get`): a consent withdrawn earlier in the batch, a disclosure
  spent by an earlier transfer, a decision already made for a repeated ``event_id``;
* the **outputs** (decisions, routed requests, audit records, dead letters, order-stage
  forwards), produced only once every changelog write is acknowledged;
* the decisions, for their spans and metrics once they are out;
* per input partition, the **offset to commit**: the one after the last record
  processed, committed once the outputs are acknowledged too.
"""

from dataclasses import dataclass, field
from typing import Any

from sharing_guard.stream.outbox import Outbox
from sharing_guard.stream.store import LocalStore, Write

ChangelogPartition = tuple[str, int]
InputPartition = tuple[str, int]


@dataclass
class Batch:
    """Changes, outputs and offsets of one pass; see the module docstring."""

    store: LocalStore
    changes: dict[ChangelogPartition, list[Write]] = field(default_factory=dict)
    outputs: Outbox = field(default_factory=Outbox)
    commits: dict[InputPartition, int] = field(default_factory=dict)
    decided: list[tuple[Any, Any, bool, Any]] = field(default_factory=list)
    """(pending transfer, decision, duplicate, open span) of every decision published."""
    _overlay: dict[tuple[str, int, bytes], bytes | None] = field(default_factory=dict)

    def get(self, changelog: str, part: int, key: bytes) -> bytes | None:
        """The value of ``key`` as this batch leaves it (its own writes, else the store)."""
        overlay_key = (changelog, part, key)
        if overlay_key in self._overlay:
            return self._overlay[overlay_key]
        return self.store.get(changelog, part, key)

    def write(self, changelog: str, part: int, write: Write) -> None:
        """Queue a changelog write; later reads in the batch see it."""
        self.changes.setdefault((changelog, part), []).append(write)
        self._overlay[(changelog, part, write.key)] = write.value

    def processed(self, topic: str, part: int, offset: int) -> None:
        """The record at ``offset`` of the input partition is processed."""
        where = (topic, part)
        self.commits[where] = max(self.commits.get(where, 0), offset + 1)
