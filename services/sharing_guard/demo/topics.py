"""The demo's topics: their names, creating the missing ones, removing private ones.

On a broker the demo started, the guard uses the contract's default topic names. On a
broker that was already running, every name gets a private suffix (``.demo-<run id>``) so
the demo never reads or writes anybody else's records, and :func:`remove_private_topics`
deletes them again at the end together with the worker's changelog topics (named after
its private application id).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient

from sharing_guard.settings import Topics

ACCOUNT_PARTITIONS = 6
"""Partitions of the account-keyed topics (they must all match: co-partitioning)."""

ACCOUNT_KEYED = frozenset(
    {"transfers", "consents", "rights", "decisions", "approved", "blocked", "shadow"}
)
SINGLE_PARTITION = frozenset({"recipients", "orders", "order_requests", "dlq", "policy"})
AUDIT_PARTITIONS = 3

_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """The topic names the guard and the demo use, and whether they are private."""

    topics: Topics
    suffix: str = ""

    @property
    def private(self) -> bool:
        """True when the names carry the run's suffix (and are removed at the end)."""
        return bool(self.suffix)

    def partitions(self) -> dict[str, int]:
        """Each topic name with the partition count the guard needs."""
        return {
            name: _partitions_of(field)
            for field, name in self.topics.model_dump().items()
            if isinstance(name, str)
        }

    def env(self) -> dict[str, str]:
        """The worker's ``SHARING_GUARD_TOPICS__*`` variables."""
        return {
            f"SHARING_GUARD_TOPICS__{field.upper()}": name
            for field, name in self.topics.model_dump().items()
        }

    def describe(self) -> str:
        """A few words for the screen."""
        if self.private:
            return f"private set, every name ending in .{self.suffix} (removed at the end)"
        return "the contract's default names (sharing.transfers.requested, sharing.decisions, ...)"


def _partitions_of(field: str) -> int:
    if field in ACCOUNT_KEYED:
        return ACCOUNT_PARTITIONS
    if field in SINGLE_PARTITION:
        return 1
    return AUDIT_PARTITIONS


def plan_topics(suffix: str = "") -> TopicPlan:
    """Default names, or every name with ``.<suffix>`` appended."""
    if not suffix:
        return TopicPlan(Topics())
    names = {field: f"{name}.{suffix}" for field, name in Topics().model_dump().items()}
    return TopicPlan(Topics(**names), suffix)


def admin_client(bootstrap: str, timeout_s: float = 15.0) -> Any:
    """A kafka-python admin client for ``bootstrap``."""
    return KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="sharing-guard-demo",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )


def differences(
    wanted: Mapping[str, int], existing: Mapping[str, int]
) -> tuple[list[str], list[str]]:
    """The topics to create, and a complaint for each existing one with another
    partition count than ``wanted``."""
    missing = [name for name in wanted if name not in existing]
    wrong = [
        f"{name} has {existing[name]} partitions, the guard needs {count}"
        for name, count in wanted.items()
        if name in existing and existing[name] != count
    ]
    return missing, wrong


def _existing(admin: Any, names: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        if topic["error_code"] == _UNKNOWN_TOPIC:
            continue
        if topic["error_code"]:
            raise RuntimeError(f"describing {topic['name']}: error code {topic['error_code']}")
        found[topic["name"]] = len(topic["partitions"])
    return found


def ensure_topics(bootstrap: str, plan: TopicPlan) -> list[str]:
    """Create the plan's missing topics (one replica each) and return their names.

    Raises ``RuntimeError`` when an existing topic has another partition count than the
    guard needs, or when creating one fails.
    """
    wanted = plan.partitions()
    admin = admin_client(bootstrap)
    try:
        missing, wrong = differences(wanted, _existing(admin, list(wanted)))
        if wrong:
            raise RuntimeError("; ".join(wrong))
        if missing:
            response = admin.create_topics(
                {
                    name: {"num_partitions": wanted[name], "replication_factor": 1}
                    for name in missing
                },
                raise_errors=False,
                wait_for_metadata=True,
            )
            failures = [
                f"{t['name']}: {t['error_message'] or t['error_code']}"
                for t in response["topics"]
                if t["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if failures:
                raise RuntimeError("creating topics failed: " + "; ".join(failures))
        return missing
    finally:
        admin.close()


def remove_private_topics(bootstrap: str, plan: TopicPlan, app_id: str) -> int:
    """Delete the plan's private topics, the worker's internal ones and the consumer groups
    of the run (the worker's, ``app_id``, and those named ``<app_id>-...``: the audit sink's
    and the alerts service's); return how many topics. Call it once the worker has
    stopped. Does nothing for default names: those are never removed.
    """
    if not plan.private:
        return 0
    admin = admin_client(bootstrap)
    try:
        ours = set(plan.partitions())
        names = [
            name
            for name in admin.list_topics()
            if name in ours or name.startswith(f"{app_id}-") or name.startswith(f"{app_id}.")
        ]
        if names:
            admin.delete_topics(names)
        groups = [
            group["group_id"]
            for group in admin.list_groups()
            if group["group_id"] == app_id or group["group_id"].startswith(f"{app_id}-")
        ]
        admin.delete_groups(groups or [app_id])  # errors come back, not raised
        return len(names)
    finally:
        admin.close()
