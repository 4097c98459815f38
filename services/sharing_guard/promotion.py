"""``sharing-guard policy``: check a policy file, see what is in force, promote a version.

``promote`` publishes a :class:`~sharing_guard.contract.policy_events.PolicyPromoted` on
``governance.policy`` (the broker's acknowledgement awaited); every guard worker enforces
it for the transfers produced after that (docs/policy-change.md). The promotion carries
the document, who promoted it and the summary of the what-if report it was reviewed with;
the guard audits it. A rollback is a promotion of the earlier file.

Exit status: 0 done (or nothing to do), 2 refused (invalid file, unreadable report,
broker not reachable), with the reason on stderr.
"""

import argparse
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from sharing_guard.codec import DecodeError, contract_registry
from sharing_guard.contract.policy_events import MAX_WHAT_IF_CHARS, PolicyPromoted
from sharing_guard.core.policy import Policy, PolicyError, check_promotion, parse_policy
from sharing_guard.edge.identifiers import officer_id
from sharing_guard.settings import GuardSettings

EXIT_OK, EXIT_REFUSED = 0, 2
TIMEOUT_S = 30.0


class PromotionError(Exception):
    """The promotion cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class InForce:
    """The latest valid promotion on the topic (``None`` fields: none yet)."""

    version: str | None
    promoted_by: str | None
    occurred_at: datetime | None
    offset: int | None


def add_policy_parser(commands: Any) -> None:
    """The ``policy`` command and its subcommands."""
    policy = commands.add_parser(
        "policy",
        help="check a policy file, show the promoted version, promote a version",
        description="Policy versions: check a file, show what is in force, promote one "
        "(docs/policy-change.md). Broker and topic from SHARING_GUARD_* settings.",
    )
    sub = policy.add_subparsers(dest="policy_command", required=True)
    check = sub.add_parser("check", help="validate a policy file and print its version")
    check.add_argument("file", type=Path)
    sub.add_parser("active", help="print the promoted version in force, who and when")
    promote = sub.add_parser(
        "promote", help="publish a policy version for every worker to enforce from now on"
    )
    promote.add_argument("file", type=Path, help="the policy file to enforce")
    promote.add_argument("--by", required=True, help="who promotes it (an officer id)")
    reviewed = promote.add_mutually_exclusive_group(required=True)
    reviewed.add_argument(
        "--what-if",
        type=Path,
        metavar="REPORT.json",
        help="the JSON report of `sharing-guard what-if` the change was reviewed with",
    )
    reviewed.add_argument(
        "--no-what-if",
        action="store_true",
        help="promote without a what-if report (the trail records that none was given)",
    )


def run_policy(args: argparse.Namespace, settings: GuardSettings | None = None) -> int:
    """Run a ``policy`` subcommand; the exit status."""
    settings = settings or GuardSettings()
    try:
        if args.policy_command == "check":
            policy = _load(args.file)
            print(f"{args.file}: valid, version {policy.version}")
        elif args.policy_command == "active":
            found = in_force(settings)
            if found.version is None:
                print("no version promoted yet: each worker enforces its policy file")
            else:
                when = found.occurred_at.isoformat() if found.occurred_at else "?"
                print(f"{found.version} promoted by {found.promoted_by} at {when}")
        else:
            return _promote(args, settings)
    except PromotionError as exc:
        print(f"sharing-guard policy {args.policy_command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _load(path: Path) -> Policy:
    try:
        return parse_policy(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromotionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except PolicyError as exc:
        raise PromotionError(f"{path}: {exc}") from exc


def what_if_summary(path: Path | None) -> str:
    """The summary kept with a promotion: the report's ``summary`` (its totals), compact
    JSON; or a note that no report was given."""
    if path is None:
        return json.dumps({"what_if": "none given"})
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromotionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise PromotionError(f"{path} is not a JSON what-if report ({exc})") from exc
    if not isinstance(report, dict) or not isinstance(report.get("summary"), dict):
        raise PromotionError(f"{path} is not a JSON what-if report (no 'summary' object)")
    kept = {"summary": report["summary"]}
    for key in ("candidate_version", "baseline_version"):
        if key in report:
            kept[key] = report[key]
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_WHAT_IF_CHARS:
        raise PromotionError(f"the report's summary is over {MAX_WHAT_IF_CHARS} characters")
    return text


def in_force(settings: GuardSettings) -> InForce:
    """Read ``governance.policy`` from its start: the latest promotion the workers accept
    (:func:`~sharing_guard.core.policy.check_promotion`, the rule they apply)."""
    topic = settings.topics.policy
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            enable_auto_commit=False,
            consumer_timeout_ms=2000,
            request_timeout_ms=int(TIMEOUT_S * 1000),
        )
    except KafkaError as exc:
        raise PromotionError(f"broker not reachable: {type(exc).__name__}") from exc
    registry = contract_registry()
    found = InForce(None, None, None, None)
    try:
        if not consumer.partitions_for_topic(topic):
            raise PromotionError(f"topic {topic} does not exist; create it first")
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    try:
                        event = registry.decode(record.value)
                    except DecodeError:
                        continue
                    if not isinstance(event, PolicyPromoted):
                        continue
                    try:
                        check_promotion(event)
                    except PolicyError:
                        continue  # refused by the workers too
                    found = InForce(
                        event.version, event.promoted_by, event.occurred_at, record.offset
                    )
    finally:
        consumer.close()
    return found


def _promote(args: argparse.Namespace, settings: GuardSettings) -> int:
    policy = _load(args.file)
    try:
        by = officer_id(args.by)
    except ValueError as exc:
        raise PromotionError(str(exc)) from exc
    summary = what_if_summary(None if args.no_what_if else args.what_if)
    current = in_force(settings)
    if current.version == policy.version:
        print(f"{policy.version} is already the promoted version: nothing published")
        return EXIT_OK
    event = PolicyPromoted(
        event_id=f"policy-{uuid.uuid4()}",
        occurred_at=datetime.now(UTC),
        policy_name=policy.name,
        version=policy.version,
        document=args.file.read_text(encoding="utf-8"),
        promoted_by=by,
        previous_version=current.version,
        what_if=summary,
    )
    offset = publish(event, settings)
    was = current.version or "each worker's policy file"
    print(
        f"promoted {policy.version} (was {was}) at {settings.topics.policy} offset {offset}; "
        "every worker enforces it for transfers produced from now on"
    )
    return EXIT_OK


def publish(event: PolicyPromoted, settings: GuardSettings) -> int:
    """Produce the promotion, keyed by the policy's name, and wait for the broker's
    acknowledgement; its offset."""
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            acks="all",
            max_request_size=2 * 1024 * 1024,
        )
    except KafkaError as exc:
        raise PromotionError(f"broker not reachable: {type(exc).__name__}") from exc
    try:
        future = producer.send(
            settings.topics.policy,
            key=event.policy_name.encode(),
            value=contract_registry().encode(event),
        )
        metadata = future.get(timeout=TIMEOUT_S)
    except KafkaError as exc:
        raise PromotionError(f"not published: {type(exc).__name__}: {exc}") from exc
    finally:
        producer.close()
    return int(metadata.offset)
