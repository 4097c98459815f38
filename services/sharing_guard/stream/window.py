"""How long idempotency entries live: the idempotency window, from the inputs' retention.

A record can be delivered again (a crash, a rebalance, a reset of the group's offsets)
only while its topic still holds it. The guard keeps the decision of a transfer, and the
id of a governance event it applied, for as long as that is possible, and no longer:

* A record is deleted with its log segment, ``retention.ms`` after the segment's newest
  record; a segment stays open for at most ``segment.ms``. So a record can be held for
  up to ``retention.ms + segment.ms`` after it was appended: the default window.
* A window shorter than the topic's ``retention.ms`` is refused (a redelivery could then
  meet an expired entry and be decided afresh); so is a transfers (or order-requests)
  topic that keeps records forever (``retention.ms=-1``): its entries could never expire.
* Governance topics are commonly kept forever (they are the history the state is folded
  from). Their seen-ids expire with the window when their retention fits in it, and are
  kept for good otherwise (governance events are few next to transfers).

Outside the window a transfer with an old ``event_id`` can only come from a producer
sending it anew: it is decided afresh, on the state of then (docs/ordering.md).
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class WindowError(ValueError):
    """The configured window cannot keep the contract's promise for these topics."""


@dataclass(frozen=True, slots=True)
class Retention:
    """A topic's ``retention.ms`` (``-1``: forever) and ``segment.ms``."""

    retention_ms: int
    segment_ms: int

    @property
    def forever(self) -> bool:
        """Whether the topic keeps records without a time limit."""
        return self.retention_ms < 0

    @property
    def longest_hold_ms(self) -> int:
        """The longest a record can stay in the topic after it was appended."""
        return self.retention_ms + self.segment_ms


@dataclass(frozen=True, slots=True)
class Window:
    """The idempotency window (ms) and, per input topic, how long its entries live
    (``None``: kept for good)."""

    window_ms: int
    expiry_ms: Mapping[str, int | None]

    def expires_at(self, topic: str, now_ms: int) -> int | None:
        """When an entry made now for a record of ``topic`` expires (``None``: never, also
        for a topic the window does not know)."""
        ttl = self.expiry_ms.get(topic)
        return None if ttl is None else now_ms + ttl


def idempotency_window(
    retention: Mapping[str, Retention],
    transient: Sequence[str],
    configured_s: float | None,
) -> Window:
    """The window for ``retention`` (every input topic's), ``transient`` naming the topics
    whose entries must expire (transfers, order requests); ``configured_s`` overrides the
    default. Raises :class:`WindowError` when the promise cannot hold."""
    for topic in transient:
        if retention[topic].forever:
            raise WindowError(
                f"topic {topic} keeps records forever (retention.ms=-1): a redelivery is "
                "possible at any time, so its idempotency entries could never expire; give "
                "it a retention (docs/operations.md, 'Idempotency window')"
            )
    longest = max(retention[topic].retention_ms for topic in transient)
    if configured_s is None:
        window_ms = max(retention[topic].longest_hold_ms for topic in transient)
    else:
        window_ms = round(configured_s * 1000)
        if window_ms < longest:
            raise WindowError(
                f"the idempotency window ({window_ms} ms) is shorter than the retention of "
                f"the inputs ({longest} ms): a redelivered transfer could be decided afresh; "
                "set SHARING_GUARD_IDEMPOTENCY_WINDOW_S to at least the retention"
            )
        hold = max(retention[topic].longest_hold_ms for topic in transient)
        if window_ms < hold:
            log.warning(
                "idempotency window %d ms: a record can stay up to %d ms (retention.ms + "
                "segment.ms) if its segment is not rolled earlier",
                window_ms,
                hold,
            )
    expiry: dict[str, int | None] = {}
    for topic, kept in retention.items():
        expiry[topic] = (
            window_ms if not kept.forever and kept.longest_hold_ms <= window_ms else None
        )
    for topic in transient:
        expiry[topic] = window_ms
    return Window(window_ms, expiry)


async def read_retention(bootstrap: str, topics: Sequence[str]) -> dict[str, Retention]:
    """``retention.ms`` and ``segment.ms`` of each topic, as the broker applies them
    (the topic's own setting or the broker's default). Raises ``LookupError`` for a topic
    the broker does not know."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    await admin.start()
    try:
        responses = await _describe(admin, topics)
    finally:
        await admin.close()
    found: dict[str, Retention] = {}
    for response in responses:
        for resource in response.resources:
            error_code, message, _type, name, entries = resource[:5]
            if error_code:
                raise LookupError(f"cannot read the configuration of topic {name}: {message}")
            values = {entry[0]: entry[1] for entry in entries}
            found[name] = Retention(_ms(values, "retention.ms"), _ms(values, "segment.ms"))
    missing = [topic for topic in topics if topic not in found]
    if missing:
        raise LookupError(f"the broker did not describe topics {missing}")
    return found


async def _describe(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[Any]:
    """The broker's DescribeConfigs answers for ``topics``; ``LookupError`` if it gives
    none (a broker without the API closes the connection)."""
    try:
        return list(
            await admin.describe_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        topic,
                        {"retention.ms": None, "segment.ms": None},
                    )
                    for topic in topics
                ]
            )
        )
    except KafkaError as exc:
        raise LookupError(
            f"the broker did not describe the inputs' configs ({type(exc).__name__}); the "
            "idempotency window cannot be checked against their retention (a broker without "
            "DescribeConfigs: see SHARING_GUARD_CHECK_RETENTION in docs/operations.md)"
        ) from exc


def _ms(values: Mapping[str, Any], name: str) -> int:
    value = values.get(name)
    if value is None:
        raise LookupError(f"the broker did not report {name}")
    return int(value)
