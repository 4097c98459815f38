"""Changing the policy on the real broker: promotion across two workers, a refused
promotion, and shadow mode (docs/policy-change.md).

* **Promotion.** Two workers share the partitions; transfers flow without pause while
  ``sharing-guard policy promote`` publishes a stricter child age. In every transfers
  partition the decisions name the old version up to one offset and the new one from
  there on (one switch, whichever worker owns the partition, never back); every transfer
  produced after the promotion was acknowledged is decided under the new version and by
  its rules; both workers report the new version; the audit topic records who promoted
  what with the what-if summary. Promoting the old file again rolls back the same way.
* **The wait, forced.** With the topic's owner stopped (SIGSTOP) when a promotion is
  acknowledged, the other worker leaves a later transfer undecided until the owner,
  resumed, has applied it, then decides it under the new version; kept stopped past the
  catch-up timeout, the transfer is blocked with GUARD_ERROR, never decided under the old.
* **A refused promotion** (a document that does not hash to the version it claims) goes
  to the dead-letter topic with the reason, and the workers keep the version in force.
* **Shadow mode.** One worker runs a candidate beside the enforced policy over a mixed
  corpus: its enforced decisions are exactly ``replay``'s under the enforced policy, the
  shadow topic holds exactly ``replay``'s decisions under the candidate, and the
  agreement metrics count what the two replays say.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from guard_harness import (
    DecisionReader,
    GuardProcess,
    TopicReader,
    diagnosed,
    fresh_topics,
    guard_env,
    sequential_runs,
)
from kafka import KafkaConsumer, TopicPartition
from sharing_guard.client import TransferClient
from sharing_guard.codec import contract_registry
from sharing_guard.contract import Decision, TransferRequested
from sharing_guard.contract.policy_events import PolicyPromoted
from sharing_guard.core.policy import parse_policy
from sharing_guard.policy_file import load_policy
from sharing_guard.promotion import in_force, publish, run_policy
from sharing_guard.replay import replay
from sharing_guard.settings import GuardSettings, Topics
from sharing_guard.simulation import simulate, to_jsonl
from sharing_guard.stream.kafka_io import DLQ_REASON

pytestmark = pytest.mark.kafka
BUNDLED = Path(__file__).resolve().parents[2] / "services" / "sharing_guard" / "policy.toml"


def stricter(tmp_path: Path, age: int = 16) -> Path:
    """The bundled policy with a higher child age limit (a new version)."""
    text = BUNDLED.read_text(encoding="utf-8").replace(
        "child_age_limit = 13", f"child_age_limit = {age}"
    )
    path = tmp_path / f"policy-child-{age}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def transfer(account: str, age: int = 14) -> TransferRequested:
    """A business-transfer disclosure of a 14-year-old's data: allowed under the bundled
    policy (children are under 13), blocked with CHILD_DATA under a limit of 16."""
    return TransferRequested.model_validate(
        {
            "event_id": f"t-{uuid.uuid4()}",
            "occurred_at": datetime.now(UTC),
            "source_service": "billing",
            "account_id": account,
            "subject_age": age,
            "data_categories": ["PERSONAL_INFORMATION"],
            "recipient": {
                "id": "acquirer-1",
                "type": "BUSINESS_TRANSFER_COUNTERPARTY",
                "jurisdiction": "CH",
            },
            "purpose": "BUSINESS_TRANSFER",
            "transaction_ref": "deal-7",
        }
    )


class Feed:
    """Publishes transfers without pause from a thread; notes each one's partition,
    offset and when its send began and was acknowledged."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.client = TransferClient(bootstrap, topics=topics)
        self.sent: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            event = transfer(f"acct-{number % 48}")
            began = time.monotonic()
            meta = self.client.publish_async(event).get(timeout=30)
            self.sent.append(
                {
                    "event_id": event.event_id,
                    "partition": meta.partition,
                    "offset": meta.offset,
                    "began": began,
                    "acked": time.monotonic(),
                }
            )
            number += 1
            time.sleep(0.01)

    def __enter__(self) -> Feed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.client.close()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus series over the lines that carry all of ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def promote(settings: GuardSettings, path: Path, report: Path) -> None:
    args = argparse.Namespace(
        policy_command="promote", file=path, by="officer.ada", what_if=report, no_what_if=False
    )
    assert run_policy(args, settings) == 0


def audited_promotions(bootstrap: str, topics: Topics) -> list[dict[str, Any]]:
    """Every promotion the guard audited, read from every partition of the audit topic to
    its end, oldest first."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    registry = contract_registry()
    found = []
    try:
        parts = [
            TopicPartition(topics.audit, p) for p in consumer.partitions_for_topic(topics.audit)
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    audit = registry.decode(record.value)
                    if audit.event_type == "PolicyPromoted":
                        found.append(audit)
    finally:
        consumer.close()
    return [
        {"actor": r.actor, "kind": r.kind.value, **json.loads(r.event_json)}
        for r in sorted(found, key=lambda r: r.occurred_at)
    ]


def test_a_promotion_switches_every_partition_once_across_two_workers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    app_id = f"promote-{topics.transfers[-8:]}"
    old, new = load_policy(), parse_policy(stricter(tmp_path).read_text())
    report = tmp_path / "what-if.json"
    report.write_text(json.dumps({"summary": {"transfers": 10, "changed": 4}}))
    settings = GuardSettings(bootstrap_servers=kafka_bootstrap, topics=topics)
    workers = start_workers(kafka_bootstrap, topics, tmp_path, app_id)
    reader = DecisionReader(kafka_bootstrap, topics)
    try:
        with diagnosed(*workers):
            for worker in workers:
                worker.wait_ready()
            with Feed(kafka_bootstrap, topics) as feed:
                time.sleep(4)
                promoted_at = time.monotonic()
                promote(settings, stricter(tmp_path), report)
                promoted_acked = time.monotonic()
                time.sleep(4)
                rollback_at = time.monotonic()
                promote(settings, BUNDLED, report)
                rollback_acked = time.monotonic()
                time.sleep(3)
            sent = list(feed.sent)
            got = reader.wait_for([s["event_id"] for s in sent], timeout_s=120)
            metrics = [w.metrics() for w in workers]
    finally:
        reader.close()
        for worker in workers:
            worker.stop()

    by_partition: dict[int, list[tuple[int, str]]] = {}
    for s in sent:
        by_partition.setdefault(s["partition"], []).append(
            (s["offset"], got[s["event_id"]].policy_version)
        )
    assert sorted(by_partition) == list(range(6))
    for partition, decided in by_partition.items():
        versions = [version for _, version in sorted(decided)]
        switches = [(a, b) for a, b in itertools.pairwise(versions) if a != b]
        # old ... old, new ... new, old ... old: one switch per promotion, never back early.
        assert switches == [(old.version, new.version), (new.version, old.version)], (
            f"partition {partition}: {switches}"
        )
    for s in sent:
        decision = got[s["event_id"]]
        if promoted_acked < s["began"] and s["acked"] < rollback_at:
            assert decision.policy_version == new.version
            assert [r.code for r in decision.reasons] == ["CHILD_DATA"]
        elif s["acked"] < promoted_at or s["began"] > rollback_acked:
            assert decision.policy_version == old.version
            assert decision.outcome == "ALLOW"
    for text in metrics:  # both workers, the topic's owner and the other, switched back
        assert metric(text, "sharing_guard_policy", role="enforced", version=old.version) == 1

    promotions = audited_promotions(kafka_bootstrap, topics)
    assert [p["version"] for p in promotions] == [new.version, old.version]
    assert promotions[0]["previous_version"] is None
    assert promotions[1]["previous_version"] == new.version
    for promotion in promotions:
        assert promotion["actor"] == "officer.ada"
        assert promotion["promoted_by"] == "officer.ada"
        assert promotion["kind"] == "GOVERNANCE_CHANGE"
        assert json.loads(promotion["what_if"]) == {"summary": {"changed": 4, "transfers": 10}}


def test_a_promotion_whose_document_does_not_match_its_version_is_refused(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    settings = GuardSettings(bootstrap_servers=kafka_bootstrap, topics=topics)
    worker = GuardProcess(
        guard_env(kafka_bootstrap, topics, f"refuse-{topics.transfers[-8:]}", tmp_path / "d"),
        tmp_path / "worker.log",
    ).start()
    reader = DecisionReader(kafka_bootstrap, topics)
    dead = TopicReader(kafka_bootstrap, topics.dlq)
    client = TransferClient(kafka_bootstrap, topics=topics)
    forged = PolicyPromoted(
        event_id="policy-forged",
        occurred_at=datetime.now(UTC),
        policy_name="cloudsigma-privacy",
        version=load_policy().version.replace("@", "@0"),  # not the document's hash
        document=stricter(tmp_path).read_text(),
        promoted_by="mallory",
        what_if="{}",
    )
    try:
        with diagnosed(worker):
            worker.wait_ready()
            publish(forged, settings)
            events = [transfer(f"acct-{n}") for n in range(30)]
            for event in events:
                client.publish_async(event).get(timeout=30)
            got = reader.wait_for([e.event_id for e in events])
            deadline = time.monotonic() + 30
            while not dead.poll() and time.monotonic() < deadline:
                pass
            letters = dead.records
            refused = worker.counter("sharing_guard_policy_refused_total")
            seen_in_force = in_force(settings).version  # what `policy active` reports
    finally:
        client.close()
        reader.close()
        dead.close()
        worker.stop()
    assert {d.policy_version for d in got.values()} == {load_policy().version}
    assert {d.outcome for d in got.values()} == {"ALLOW"}
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    reason = headers[DLQ_REASON].decode()
    assert "policy promotion refused" in reason
    assert "claims" in reason
    assert refused == 1
    assert seen_in_force is None  # the command applies the workers' rule: none in force


def test_shadow_mode_decides_beside_the_policy_and_changes_nothing_enforced(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    events = simulate(900, seed=11)
    candidate_path = stricter(tmp_path, age=16)
    enforced, candidate = load_policy(), parse_policy(candidate_path.read_text())
    lines = to_jsonl(events).splitlines()
    expected = {d.event_id: d for d in replay(lines, enforced) if isinstance(d, Decision)}
    expected_shadow = {d.event_id: d for d in replay(lines, candidate) if isinstance(d, Decision)}
    agree = Counter(
        "agree"
        if (a.outcome, a.codes) == (expected_shadow[k].outcome, expected_shadow[k].codes)
        else "disagree"
        for k, a in expected.items()
    )
    assert agree["agree"] > 0, agree
    assert agree["disagree"] > 0, agree
    transfer_ids = set(expected)

    topics = fresh_topics(kafka_bootstrap)
    env = guard_env(kafka_bootstrap, topics, f"shadow-{topics.transfers[-8:]}", tmp_path / "d")
    env["SHARING_GUARD_SHADOW_POLICY_FILE"] = str(candidate_path)
    worker = GuardProcess(env, tmp_path / "worker.log").start()
    reader = DecisionReader(kafka_bootstrap, topics)
    shadow = TopicReader(kafka_bootstrap, topics.shadow)
    client = TransferClient(kafka_bootstrap, topics=topics)
    registry = contract_registry()
    try:
        with diagnosed(worker):
            worker.wait_ready()
            for run in sequential_runs(events):
                for future in [client.publish_async(event) for event in run]:
                    future.get(timeout=30)
                if isinstance(run[0], TransferRequested):
                    reader.wait_for({e.event_id for e in run})
            got = reader.wait_for(transfer_ids)
            shadowed: dict[str, tuple[Decision, dict[str, bytes]]] = {}
            deadline = time.monotonic() + 60
            while len(shadowed) < len(transfer_ids) and time.monotonic() < deadline:
                for record in shadow.poll():
                    decision = registry.decode(record.value)
                    shadowed.setdefault(decision.event_id, (decision, dict(record.headers)))
            metrics = worker.metrics()
    finally:
        client.close()
        reader.close()
        shadow.close()
        worker.stop()

    assert got == {k: expected[k] for k in transfer_ids}  # enforcement untouched
    assert {k: d for k, (d, _) in shadowed.items()} == expected_shadow
    for event_id, (decision, headers) in shadowed.items():
        agrees = (decision.outcome, decision.codes) == (got[event_id].outcome, got[event_id].codes)
        assert headers["guard.agrees"] == (b"1" if agrees else b"0")
        assert headers["guard.enforced_version"] == enforced.version.encode()

    assert (
        metric(metrics, "sharing_guard_shadow_decisions_total", agreement="agree") == agree["agree"]
    )
    assert (
        metric(metrics, "sharing_guard_shadow_decisions_total", agreement="disagree")
        == agree["disagree"]
    )
    child_only_in_shadow = sum(
        1
        for k, d in expected_shadow.items()
        if "CHILD_DATA" in d.codes and "CHILD_DATA" not in expected[k].codes
    )
    assert child_only_in_shadow > 0
    assert (
        metric(
            metrics,
            "sharing_guard_shadow_disagreement_reasons_total",
            code="CHILD_DATA",
            only_in="shadow",
        )
        == child_only_in_shadow
    )
    policy = "sharing_guard_policy"
    assert metric(metrics, policy, role="shadow", version=candidate.version) == 1
    assert metric(metrics, policy, role="enforced", version=enforced.version) == 1


def promotion_of(path: Path) -> PolicyPromoted:
    """The promotion ``policy promote`` would publish for ``path``."""
    policy = parse_policy(path.read_text())
    return PolicyPromoted(
        event_id=f"policy-{uuid.uuid4()}",
        occurred_at=datetime.now(UTC),
        policy_name=policy.name,
        version=policy.version,
        document=path.read_text(),
        promoted_by="officer.ada",
        what_if="{}",
    )


def start_workers(
    bootstrap: str, topics: Topics, tmp_path: Path, app_id: str, **env: str
) -> list[GuardProcess]:
    """Two workers of one group, each with its own data directory and ``env`` added."""
    workers = []
    for n in (0, 1):
        environment = guard_env(bootstrap, topics, app_id, tmp_path / f"data-{n}")
        environment.update(env)
        workers.append(GuardProcess(environment, tmp_path / f"worker-{n}.log").start())
    return workers


def owned(metrics_text: str, topic: str) -> set[int]:
    """The partitions of ``topic`` a worker owns, from its lag gauge."""
    found = set()
    for line in metrics_text.splitlines():
        if line.startswith("sharing_guard_consumer_lag{") and f'topic="{topic}"' in line:
            found.add(int(line.split('partition="', 1)[1].split('"', 1)[0]))
    return found


def owner_and_account(
    workers: list[GuardProcess], client: TransferClient, reader: DecisionReader, topics: Topics
) -> tuple[int, str]:
    """Which worker owns ``governance.policy``, and an account whose transfers the other
    one decides (learnt from a first transfer of 48 accounts and the lag gauges)."""
    partition_of = {}
    warm = [transfer(f"acct-{n}") for n in range(48)]
    for event in warm:
        partition_of[event.account_id] = client.publish_async(event).get(30).partition
    reader.wait_for([e.event_id for e in warm])
    time.sleep(2)  # the lag gauges are measured every second
    texts = [w.metrics() for w in workers]
    owner = next(n for n in (0, 1) if owned(texts[n], topics.policy) == {0})
    theirs = owned(texts[1 - owner], topics.transfers)
    assert theirs, "the other worker owns no transfers partition"
    return owner, next(a for a, p in partition_of.items() if p in theirs)


def test_a_worker_waits_for_the_promotion_its_transfer_came_after(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Forces the wait of a worker that does not own ``governance.policy``: the owner is
    stopped (SIGSTOP) when a promotion is acknowledged, then a transfer of the other
    worker's partitions is produced. The other worker must not decide it under the old
    version: it waits until the owner, resumed, has applied the promotion, then decides it
    under the new one. A second transfer, produced while the owner stays stopped past the
    catch-up timeout, is blocked with GUARD_ERROR (fail closed), never decided under the
    old version."""
    topics = fresh_topics(kafka_bootstrap)
    app_id = f"wait-{topics.transfers[-8:]}"
    new = parse_policy(stricter(tmp_path).read_text())
    settings = GuardSettings(bootstrap_servers=kafka_bootstrap, topics=topics)
    workers = start_workers(
        kafka_bootstrap,
        topics,
        tmp_path,
        app_id,
        SHARING_GUARD_SESSION_TIMEOUT_S="60",  # a stopped owner keeps its partitions
        SHARING_GUARD_CATCH_UP_TIMEOUT_S="8",
    )
    reader = DecisionReader(kafka_bootstrap, topics)
    client = TransferClient(kafka_bootstrap, topics=topics)
    try:
        with diagnosed(*workers):
            for worker in workers:
                worker.wait_ready()
            owner, account = owner_and_account(workers, client, reader, topics)
            owner_process = workers[owner].process
            assert owner_process is not None
            owner_process.send_signal(signal.SIGSTOP)
            try:
                publish(promotion_of(stricter(tmp_path)), settings)
                waiting = transfer(account)
                client.publish_async(waiting).get(timeout=30)
                time.sleep(3)
                early = dict(reader.first)
            finally:
                owner_process.send_signal(signal.SIGCONT)
            decided = reader.wait_for([waiting.event_id])[waiting.event_id]

            owner_process.send_signal(signal.SIGSTOP)
            try:
                publish(promotion_of(stricter(tmp_path, age=17)), settings)
                late = transfer(account)
                client.publish_async(late).get(timeout=30)
                blocked = reader.wait_for([late.event_id], timeout_s=40)[late.event_id]
            finally:
                owner_process.send_signal(signal.SIGCONT)
    finally:
        client.close()
        reader.close()
        for worker in workers:
            worker.stop()

    assert waiting.event_id not in early  # it waited for the stopped owner
    assert decided.policy_version == new.version
    assert [r.code for r in decided.reasons] == ["CHILD_DATA"]
    assert [r.code for r in blocked.reasons] == ["GUARD_ERROR"]
    assert blocked.policy_version == new.version  # the version in force, not the pending one
