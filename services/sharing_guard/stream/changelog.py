"""The guard's changelogs: compacted topics that hold its state, and restoring them.

Three changelogs, named after the application id:

* ``<app>-account-state-changelog``, one partition per account partition: the consents and
  rights of the accounts of transfers partition *p*, the decisions of its transfers
  and the governance event ids it has seen, all in partition *p*.
* ``<app>-orders-state-changelog``, one partition: orders, their spent quota, the decisions
  of the order stage and the order event ids seen.
* ``<app>-recipients-state-changelog``, one partition: registered recipients, the
  recipient and policy event ids seen, and the promoted policy versions
  (:mod:`sharing_guard.stream.policies`). Written by the worker that owns
  ``governance.recipients`` and ``governance.policy``, read by every worker (each needs
  every recipient and the policy in force).

A record's key names what it holds (``consent:…``, ``decision:…``, see :class:`Kind`);
its value is the entry's bytes, or none (a tombstone) when the entry is removed. An
idempotency entry carries its expiry (epoch ms) in the header ``guard.expires_at``.

:class:`Restorer` brings a :class:`~sharing_guard.stream.store.LocalStore` partition up
to a changelog's end: from the store's own position when the changelog still continues
it, from the changelog's start otherwise (a new or lost store, a recreated topic, or a
store older than the changelog's tombstones are kept).
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from sharing_guard.stream.store import LocalStore, Write

log = logging.getLogger(__name__)

EXPIRES_HEADER = "guard.expires_at"


class Kind(StrEnum):
    """What a changelog entry holds (the prefix of its key)."""

    CONSENT = "consent"
    RIGHTS = "rights"
    RECIPIENT = "recipient"
    ORDER = "order"
    DECISION = "decision"
    SEEN = "seen"
    POLICY = "policy"


def entry_key(kind: Kind, key: str) -> bytes:
    """The changelog (and store) key of an entry."""
    return f"{kind.value}:{key}".encode()


STATE_PREFIXES = tuple(
    f"{kind.value}:".encode()
    for kind in (Kind.CONSENT, Kind.RIGHTS, Kind.RECIPIENT, Kind.ORDER, Kind.POLICY)
)
"""Key prefixes of state records (not idempotency entries)."""


@dataclass(frozen=True, slots=True)
class Changelogs:
    """The changelog topic names of one application."""

    account: str
    orders: str
    recipients: str

    @classmethod
    def of(cls, app_id: str) -> "Changelogs":
        """The changelogs of application ``app_id``."""
        return cls(
            account=f"{app_id}-account-state-changelog",
            orders=f"{app_id}-orders-state-changelog",
            recipients=f"{app_id}-recipients-state-changelog",
        )


def write_of(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> Write:
    """The store write a changelog record stands for."""
    expires = next((v for k, v in headers if k == EXPIRES_HEADER), None)
    return Write(key or b"", value, int(expires) if expires else None)


def expiry_headers(expires_at: int | None) -> list[tuple[str, bytes]]:
    """The headers of a changelog record whose entry expires at ``expires_at``."""
    return [] if expires_at is None else [(EXPIRES_HEADER, str(expires_at).encode())]


class Restorer:
    """Reads changelog partitions into the local store, on a group-less client.

    ``max_age_ms``: a store partition whose position has not moved for longer than this
    is rebuilt from the changelog's start, since tombstones older than the changelog's
    ``delete.retention.ms`` may be gone and could no longer remove what it holds.
    """

    def __init__(self, bootstrap: str, store: LocalStore, max_age_ms: int) -> None:
        self._bootstrap = bootstrap.split(",")
        self._store = store
        self._max_age_ms = max_age_ms
        self._client: AIOKafkaConsumer | None = None
        self.restored = 0
        """Changelog records read into the store since the worker started."""

    async def _started(self) -> AIOKafkaConsumer:
        if self._client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=50,
            )
            await client.start()
            self._client = client
        return self._client

    async def close(self) -> None:
        """Stop the client, if it was started."""
        if self._client is not None:
            await self._client.stop()
            self._client = None

    async def restore(self, tps: Sequence[tuple[str, int]], timeout_s: float) -> int:
        """Bring each changelog partition in ``tps`` up to its current end; the number of
        records read. Raises ``TimeoutError`` if that takes longer than ``timeout_s``."""
        if not tps:
            return 0
        client = await self._started()
        wanted = [TopicPartition(topic, part) for topic, part in tps]
        starts = await client.beginning_offsets(wanted)
        ends = await client.end_offsets(wanted)
        now_ms = int(time.time() * 1000)
        read = 0
        for tp in wanted:
            start, end = int(starts[tp]), int(ends[tp])
            position = self._store.position(tp.topic, tp.partition)
            updated = self._store.updated_ms(tp.topic, tp.partition) or 0
            if (
                position is None
                or position < start
                or position > end
                or now_ms - updated > self._max_age_ms
            ):
                if position is not None:
                    log.warning(
                        "changelog %s/%d does not continue the local store (at %d; the "
                        "changelog holds %d..%d); rebuilding it from the changelog",
                        tp.topic,
                        tp.partition,
                        position,
                        start,
                        end,
                    )
                self._store.reset(tp.topic, tp.partition, start, now_ms)
                position = start
            if position < end:
                count = await self._read(client, tp, position, end, timeout_s)
                read += count
                log.info(
                    "restored %s/%d: %d record(s) from offset %d",
                    tp.topic,
                    tp.partition,
                    count,
                    position,
                )
        self.restored += read
        return read

    async def follow(self, tp: tuple[str, int], end: int, timeout_s: float) -> int:
        """Read changelog partition ``tp`` from the store's position up to ``end`` (a
        partition restored before, e.g. the recipients changelog that other workers
        write); the number of records read."""
        position = self._store.position(*tp)
        if position is None or position >= end:
            return 0
        client = await self._started()
        read = await self._read(client, TopicPartition(*tp), position, end, timeout_s)
        self.restored += read
        return read

    async def _read(
        self, client: AIOKafkaConsumer, tp: TopicPartition, first: int, end: int, timeout_s: float
    ) -> int:
        client.assign([tp])
        client.seek(tp, first)
        deadline = time.monotonic() + timeout_s
        read = 0
        try:
            while (position := await client.position(tp)) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"restoring {tp.topic}/{tp.partition} at {position}")
                fetched = await client.getmany(tp, timeout_ms=500, max_records=10_000)
                records = fetched.get(tp, [])
                if not records:
                    continue
                writes = [write_of(r.key, r.value, r.headers) for r in records]
                next_offset = await client.position(tp)
                self._store.apply(
                    tp.topic, tp.partition, next_offset, writes, int(time.time() * 1000)
                )
                read += len(records)
                await asyncio.sleep(0)  # let heartbeats and the web server through
            if self._store.position(tp.topic, tp.partition) != position:
                # Offsets without records at the end (compaction): nothing to apply.
                self._store.apply(tp.topic, tp.partition, position, [], int(time.time() * 1000))
        finally:
            # Paused, not unsubscribed (aiokafka's stop() can hang after that); the next
            # read assigns what it needs.
            client.pause(tp)
        log.debug("read %d record(s) of %s/%d from offset %d", read, tp.topic, tp.partition, first)
        return read
