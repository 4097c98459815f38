"""Kafka administration for ``scripts/kafka.sh``: broker readiness and declared topics.

The topics, their partition counts and configs are declared once, in ``topics.txt`` next to
this file. This module is the only reader of that file: ``scripts/kafka.sh`` runs it as a
command to create the topics, and the integration tests import it to learn what was declared.

Commands (all take ``--bootstrap-server HOST:PORT``)::

    topics.py wait [--cluster-id ID] [--pid PID] [--timeout S]
        Wait until the broker answers a metadata request (DescribeCluster) with an unfenced
        broker and, when given, the expected cluster id; a different cluster id fails at once
        (it is another broker on our port). With --pid, fail as soon as that process exits.
    topics.py create-topics [--file F] [--replication-factor N]
        Create the missing topics in one request and wait for their leaders; for existing
        topics, grow partition counts that are below the declaration and set drifted configs.
        A topic with more partitions than declared is an error (partitions cannot shrink).

Exit status 0 on success, 1 with a message on stderr otherwise. It needs kafka-python
(``make setup`` installs it into ``.venv``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TOPICS_FILE = Path(__file__).with_name("topics.txt")
ALL_PARTITIONS_VAR = "KAFKA_TOPIC_PARTITIONS"

_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    """One declared topic: its name, partition count and topic-level configs."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


class TopicsFileError(ValueError):
    """The topics file (or a partition override) is malformed."""


def partition_override_var(topic: str) -> str:
    """The environment variable that overrides one topic's partition count."""
    return f"{ALL_PARTITIONS_VAR}_{re.sub(r'[^A-Za-z0-9]', '_', topic).upper()}"


def _positive_int(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise TopicsFileError(f"{what}: expected a positive integer, got {text!r}")
    return int(text)


def _parse_configs(text: str, where: str) -> dict[str, str]:
    if text == "-":
        return {}
    configs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TopicsFileError(f"{where}: config {item!r} is not key=value")
        configs[key] = value
    return configs


def load_topic_specs(
    path: Path = DEFAULT_TOPICS_FILE, environ: Mapping[str, str] | None = None
) -> list[TopicSpec]:
    """Read the declared topics, with the partition overrides found in ``environ``.

    ``KAFKA_TOPIC_PARTITIONS_<NAME>`` beats ``KAFKA_TOPIC_PARTITIONS``, which beats the file.
    Raises :class:`TopicsFileError` on a malformed line, a duplicate name or a bad override.
    """
    env = os.environ if environ is None else environ
    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        columns = line.split()
        if len(columns) not in (2, 3):
            raise TopicsFileError(f"{where}: expected 'name partitions [configs]', got {raw!r}")
        name = columns[0]
        if name in seen:
            raise TopicsFileError(f"{where}: topic {name!r} declared twice")
        seen.add(name)
        partitions = _positive_int(columns[1], f"{where}: partitions of {name}")
        for var in (ALL_PARTITIONS_VAR, partition_override_var(name)):
            if env.get(var):
                partitions = _positive_int(env[var], var)
        configs = _parse_configs(columns[2] if len(columns) == 3 else "-", where)
        specs.append(TopicSpec(name, partitions, configs))
    return specs


def _admin(bootstrap: str, timeout_s: float) -> Any:
    from kafka import KafkaAdminClient

    timeout_ms = max(1000, int(timeout_s * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="sharing-guard-kafka-sh",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        # Retry a refused connection soon: while the broker starts, the port opens late.
        reconnect_backoff_max_ms=250,
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_ready(
    bootstrap: str, timeout_s: float, cluster_id: str | None = None, pid: int | None = None
) -> str | None:
    """Wait until the broker at ``bootstrap`` is ready; return None, or why it is not."""
    deadline = time.monotonic() + timeout_s
    last_problem = "no attempt made"
    while True:
        if pid is not None and not _process_alive(pid):
            return f"the broker process {pid} exited"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"not ready after {timeout_s:g} s: {last_problem}"
        admin = None
        try:
            admin = _admin(bootstrap, min(remaining, 3.0))
            cluster = admin.describe_cluster()
        except Exception as exc:  # any failure to connect or answer means "not yet"
            last_problem = f"{type(exc).__name__}: {exc}"
        else:
            found = cluster.get("cluster_id")
            if cluster_id and found != cluster_id:
                return (
                    f"{bootstrap} answers with cluster id {found!r}, expected {cluster_id!r}: "
                    "another broker is listening on this port"
                )
            brokers = [b for b in cluster.get("brokers", []) if not b.get("is_fenced")]
            if brokers and cluster.get("controller_id", -1) >= 0:
                return None
            last_problem = f"no unfenced broker or controller yet: {cluster}"
        finally:
            if admin is not None:
                admin.close()
        time.sleep(0.25)


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def _describe(admin: Any, names: Sequence[str]) -> dict[str, int]:
    """Partition counts of the existing topics among ``names``."""
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(list(names)):
        if topic["error_code"] == _UNKNOWN_TOPIC:
            continue
        if topic["error_code"]:
            raise RuntimeError(f"describing {topic['name']}: error code {topic['error_code']}")
        counts[topic["name"]] = len(topic["partitions"])
    return counts


def ensure_topics(
    bootstrap: str, specs: Sequence[TopicSpec], replication_factor: int = 1
) -> list[str]:
    """Make the broker's topics match ``specs`` as far as Kafka allows; return a report.

    Creates missing topics (waiting for their partition leaders), adds partitions where a
    topic has fewer than declared, and sets declared configs whose value differs. Raises
    RuntimeError when a topic has more partitions than declared or a request fails.
    """
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

    admin = _admin(bootstrap, 30.0)
    try:
        existing = _describe(admin, [s.name for s in specs])
        report: list[str] = []
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = admin.create_topics(
                {
                    s.name: {
                        "num_partitions": s.partitions,
                        "replication_factor": replication_factor,
                        "configs": dict(s.configs),
                    }
                    for s in missing
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
        for spec in specs:
            if spec.name not in existing:
                report.append(f"{spec.name}: created, {_partitions(spec.partitions)}")
                continue
            have = existing[spec.name]
            if have > spec.partitions:
                raise RuntimeError(
                    f"{spec.name} has {have} partitions, {spec.partitions} declared; partitions "
                    "cannot shrink (scripts/kafka.sh reset wipes the broker)"
                )
            status = f"{spec.name}: exists, {_partitions(have)}"
            if have < spec.partitions:
                admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
                status = f"{spec.name}: grown from {have} to {spec.partitions} partitions"
            if spec.configs:
                resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)
                current = admin.describe_configs([resource])["topic"][spec.name]
                drifted = {
                    key: value
                    for key, value in spec.configs.items()
                    if current.get(key, {}).get("value") != value
                }
                if drifted:
                    admin.alter_configs(
                        [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=drifted)],
                        incremental=True,
                    )
                    status += f", configs set: {', '.join(sorted(drifted))}"
            report.append(status)
        return report
    finally:
        admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-server", default="127.0.0.1:19092")
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait", help="wait until the broker is ready")
    wait.add_argument("--cluster-id")
    wait.add_argument("--pid", type=int)
    wait.add_argument("--timeout", type=float, default=60.0)
    create = commands.add_parser("create-topics", help="create the declared topics")
    create.add_argument("--file", type=Path, default=DEFAULT_TOPICS_FILE)
    create.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args(argv)

    if args.command == "wait":
        problem = wait_ready(args.bootstrap_server, args.timeout, args.cluster_id, args.pid)
        if problem:
            print(f"topics.py: {problem}", file=sys.stderr)
            return 1
        return 0
    from kafka.errors import KafkaError

    try:
        specs = load_topic_specs(args.file)
        report = ensure_topics(args.bootstrap_server, specs, args.replication_factor)
    except (TopicsFileError, RuntimeError, OSError, KafkaError) as exc:
        print(f"topics.py: {exc}", file=sys.stderr)
        return 1
    for line in report:
        print(f"topics.py: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
