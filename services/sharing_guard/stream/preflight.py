"""What a guard worker checks against the broker before it joins its group.

* The input topics exist (the shadow topic too, with a shadow policy), the account
  topics have ``account_partitions`` partitions each (co-partitioned), and recipients,
  orders, order requests and policy promotions have one.
* The idempotency window fits the inputs' retention (:mod:`sharing_guard.stream.window`).
* The changelog topics exist, compacted, with the partition counts the state needs; the
  worker creates the missing ones (``SHARING_GUARD_CHANGELOG_REPLICATION`` replicas).

Any failure is a :class:`PreflightError` with a message for the operator; the worker
then exits without having consumed or produced anything.
"""

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from sharing_guard.settings import GuardSettings
from sharing_guard.stream.changelog import Changelogs
from sharing_guard.stream.window import (
    Window,
    WindowError,
    idempotency_window,
    read_retention,
)

log = logging.getLogger(__name__)


class PreflightError(RuntimeError):
    """The broker's topics do not fit this worker's settings."""


def changelog_configs(settings: GuardSettings) -> dict[str, str]:
    """The topic configs of the changelogs: compacted, tombstones kept as long as a kept
    local store may lag behind (``store_max_age_s``)."""
    return {
        "cleanup.policy": "compact",
        "delete.retention.ms": str(int(settings.store_max_age_s * 1000)),
    }


async def preflight(settings: GuardSettings) -> Window:
    """Check the topics and create the changelogs; the idempotency window in force."""
    t = settings.topics
    n = settings.account_partitions
    expected = {
        t.transfers: n,
        t.consents: n,
        t.rights: n,
        t.recipients: 1,
        t.orders: 1,
        t.order_requests: 1,
        t.policy: 1,
    }
    if settings.shadow_policy_file is not None:
        expected[t.shadow] = n
    changelogs = Changelogs.of(settings.app_id)
    wanted_changelogs = {changelogs.account: n, changelogs.orders: 1, changelogs.recipients: 1}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","))
    await admin.start()
    try:
        counts = await partition_counts(admin, [*expected, *wanted_changelogs])
        _check_inputs(expected, counts)
        missing = [name for name in wanted_changelogs if name not in counts]
        if missing:
            await _create(admin, {name: wanted_changelogs[name] for name in missing}, settings)
        for name, partitions in wanted_changelogs.items():
            if name in counts and counts[name] != partitions:
                raise PreflightError(
                    f"changelog {name} has {counts[name]} partitions, the state needs "
                    f"{partitions} (was SHARING_GUARD_ACCOUNT_PARTITIONS changed?)"
                )
    finally:
        await admin.close()
    if not settings.check_retention:
        window = unchecked_window(settings, [t.transfers, t.order_requests])
    else:
        try:
            retention = await read_retention(settings.bootstrap_servers, list(expected))
            window = idempotency_window(
                retention, [t.transfers, t.order_requests], settings.idempotency_window_s
            )
        except (WindowError, LookupError) as exc:
            raise PreflightError(str(exc)) from exc
    log.warning(
        "idempotency window %.0f s; governance event ids kept for good on: %s",
        window.window_ms / 1000,
        ", ".join(sorted(k for k, v in window.expiry_ms.items() if v is None)) or "none",
    )
    return window


def unchecked_window(settings: GuardSettings, transient: list[str]) -> Window:
    """The window set explicitly, not checked against the broker
    (``SHARING_GUARD_CHECK_RETENTION=false``): the transient topics' entries expire with
    it, governance ids are kept for good."""
    if settings.idempotency_window_s is None:
        raise PreflightError(
            "SHARING_GUARD_CHECK_RETENTION=false needs SHARING_GUARD_IDEMPOTENCY_WINDOW_S: "
            "without the broker's retention there is no default window"
        )
    window_ms = round(settings.idempotency_window_s * 1000)
    log.warning(
        "idempotency window %d ms NOT checked against the inputs' retention "
        "(SHARING_GUARD_CHECK_RETENTION=false)",
        window_ms,
    )
    return Window(window_ms, {topic: window_ms for topic in transient})


def _check_inputs(expected: Mapping[str, int], counts: Mapping[str, int]) -> None:
    for name, partitions in expected.items():
        if name not in counts:
            raise PreflightError(f"input topic {name} does not exist; create it first")
        if counts[name] != partitions:
            raise PreflightError(
                f"topic {name} has {counts[name]} partitions, expected {partitions} "
                "(account topics are co-partitioned: SHARING_GUARD_ACCOUNT_PARTITIONS)"
            )


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition counts of those of ``names`` that exist. Only existing topics are
    described: a broker that creates topics on a metadata request (Tansu does) would
    otherwise create the missing ones with its default partition count."""
    existing = set(await admin.list_topics())
    names = [name for name in names if name in existing]
    if not names:
        return {}
    described = await admin.describe_topics(names)
    counts = {}
    for topic in described:
        if topic.get("error_code", 0) == 0:
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _create(
    admin: AIOKafkaAdminClient, wanted: Mapping[str, int], settings: GuardSettings
) -> None:
    configs = changelog_configs(settings)
    with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
        await admin.create_topics(
            [
                NewTopic(name, partitions, settings.changelog_replication, topic_configs=configs)
                for name, partitions in wanted.items()
            ]
        )
    for _ in range(300):  # until every partition has a leader (KRaft answers at once)
        described = await admin.describe_topics(list(wanted))
        if all(
            t.get("error_code", 0) == 0
            and len(t["partitions"]) == wanted[t["topic"]]
            and all(p.get("leader", -1) >= 0 for p in t["partitions"])
            for t in described
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise PreflightError(f"changelog topics {sorted(wanted)} created but not ready in 30 s")
    log.warning("created changelog topics %s", ", ".join(sorted(wanted)))
