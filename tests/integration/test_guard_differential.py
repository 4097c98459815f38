"""The guard on the real broker decides exactly as ``sharing-guard replay`` does.

A simulated corpus of mixed events goes through Kafka in replay's processing order; the
first decision the guard publishes for each transfer must equal replay's, compared by
``event_id``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from guard_harness import (
    DecisionReader,
    GuardProcess,
    fresh_topics,
    guard_env,
    sequential_runs,
)
from sharing_guard.client import TransferClient
from sharing_guard.contract import Decision, TransferRequested
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import replay
from sharing_guard.simulation import simulate, to_jsonl

pytestmark = pytest.mark.kafka
CORPUS_SIZE = 1200


def test_guard_on_kafka_matches_replay_for_a_mixed_corpus(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    events = simulate(CORPUS_SIZE, seed=7)
    expected = {
        d.event_id: d
        for d in replay(to_jsonl(events).splitlines(), load_policy())
        if isinstance(d, Decision)
    }
    transfer_ids = {e.event_id for e in events if isinstance(e, TransferRequested)}
    assert len(transfer_ids) >= 900

    topics = fresh_topics(kafka_bootstrap)
    worker = GuardProcess(
        guard_env(kafka_bootstrap, topics, f"diff-{topics.transfers[-8:]}", tmp_path / "data"),
        tmp_path / "worker.log",
    ).start()
    reader = DecisionReader(kafka_bootstrap, topics)
    client = TransferClient(kafka_bootstrap, topics=topics)
    try:
        worker.wait_ready()
        for run in sequential_runs(events):
            futures = [client.publish_async(event) for event in run]
            for future in futures:
                future.get(timeout=30)
            if isinstance(run[0], TransferRequested):
                reader.wait_for({e.event_id for e in run})
        got = reader.wait_for(transfer_ids)
    finally:
        client.close()
        reader.close()
        worker.stop()

    mismatches = {k: (expected[k], got[k]) for k in transfer_ids if expected[k] != got[k]}
    assert not mismatches, f"{len(mismatches)} differ, e.g. {next(iter(mismatches.items()))}"
    assert {d.outcome for d in got.values()} == {"ALLOW", "BLOCK"}
