"""Waiting for topics to exist before a kafka-python consumer joins its group.

A group consumer that subscribes while its topic has no partition metadata yet (the topic
is missing, or just created and not yet visible) can be left with no partitions after
the topic appears: with kafka-python 3.0 no rebalance followed within a minute, although
metadata was refreshed every 10 s (seen in CI with the audit sink). The audit sink and
the alerts process therefore join their groups only once every topic they read has
partitions. The check runs on a group-less probe client of its own: asking the group
consumer itself before it subscribes changed which thread ran its rebalance callbacks.

Waiting is not always enough: the group's leader assigns from its own metadata, which can
still lack a topic another client already sees. The audit sink (its group's only writer)
therefore also joins again when a rebalance left it no partition of a topic that has some
(:func:`topics_exist`).
"""

import logging
import threading
from collections.abc import Sequence

from kafka import KafkaConsumer

log = logging.getLogger(__name__)
NOTE_EVERY_S = 10.0
"""How often a consumer still waiting for its topics says so."""


def _probe(bootstrap_servers: Sequence[str], security_protocol: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=list(bootstrap_servers),
        group_id=None,
        enable_auto_commit=False,
        security_protocol=security_protocol,
        client_id="topic-wait",
    )


def topics_exist(
    bootstrap_servers: Sequence[str], topics: Sequence[str], *, security_protocol: str = "PLAINTEXT"
) -> bool:
    """Whether each of ``topics`` has partitions now (asked once, on a probe client)."""
    probe = _probe(bootstrap_servers, security_protocol)
    try:
        return all(probe.partitions_for_topic(t) for t in topics)
    finally:
        probe.close()


def await_topics(
    bootstrap_servers: Sequence[str],
    topics: Sequence[str],
    stop: threading.Event,
    *,
    security_protocol: str = "PLAINTEXT",
    poll_s: float = 0.5,
) -> bool:
    """Wait until each of ``topics`` has partitions, logging the missing ones every
    ``NOTE_EVERY_S``; ``False`` if ``stop`` was set first."""
    probe = _probe(bootstrap_servers, security_protocol)
    try:
        waited = 0.0
        while not stop.is_set():
            missing = [t for t in topics if not probe.partitions_for_topic(t)]
            if not missing:
                return True
            if waited % NOTE_EVERY_S < poll_s:
                log.warning("waiting for topics to exist: %s", ", ".join(missing))
            stop.wait(poll_s)
            waited += poll_s
        return False
    finally:
        probe.close()
