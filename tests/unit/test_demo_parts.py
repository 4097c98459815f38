"""The demo's counting, topic naming and worker environment (no Kafka needed)."""

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sharing_guard.contract import Decision, Outcome, Reason, ReasonCode
from sharing_guard.contract.enums import Clause
from sharing_guard.demo.feed import is_duplicate
from sharing_guard.demo.guard import worker_env
from sharing_guard.demo.story import story
from sharing_guard.demo.tally import Tally, describe, latest_kinds, rate_over
from sharing_guard.demo.topics import differences, plan_topics
from sharing_guard.explain import explain
from sharing_guard.policy_file import load_policy
from sharing_guard.settings import GuardSettings, Topics


def decision(event_id: str, outcome: Outcome, *codes: ReasonCode) -> Decision:
    return Decision(
        event_id=event_id,
        outcome=outcome,
        reasons=tuple(Reason(code=c, clause=Clause.DEFAULT_DENY) for c in codes),
        policy_version="p@1",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tally_counts_each_event_once() -> None:
    clock = Clock()
    tally = Tally(lambda d: d.event_id, clock=clock)
    tally.sent(transfers=4, governance=2)
    allow = decision("e1", Outcome.ALLOW, ReasonCode.PROCESSOR)
    block = decision("e2", Outcome.BLOCK, ReasonCode.CONSENT_MISSING, ReasonCode.CHILD_DATA)
    tally.record([(allow, False), (block, False), (allow, True), (allow, False)])
    snap = tally.snapshot()
    assert snap.decided == 2
    assert snap.duplicates == 2
    assert snap.outcome("ALLOW") == 1
    assert snap.outcome("BLOCK") == 1
    assert dict(snap.codes) == {"PROCESSOR": 1, "CONSENT_MISSING": 1, "CHILD_DATA": 1}
    assert snap.in_flight == 0
    assert tally.in_flight() == 0


def test_a_decision_is_shown_with_each_clause_behind_it() -> None:
    """A promotional offer allowed rests on the processor's function and the consent: the
    line says both, where it once read ``ALLOW PROCESSOR PROCESSOR``."""
    promo = Decision(
        event_id="e1",
        outcome=Outcome.ALLOW,
        reasons=(
            Reason(code=ReasonCode.PROCESSOR, clause=Clause.PROCESSOR_PURPOSE),
            Reason(code=ReasonCode.PROCESSOR, clause=Clause.MARKETING_CONSENT),
        ),
        policy_version="p@1",
    )
    assert describe(promo) == (
        "ALLOW PROCESSOR [C-PROCESSOR-PURPOSE] + PROCESSOR [C-MARKETING-CONSENT]"
    )
    text = explain(promo, load_policy())
    assert text.count("Allowed to a registered processor") == 1  # the code's words once
    assert "C-MARKETING-CONSENT:" in text  # and the consent clause, in words


def test_story_lines_of_calls_and_alerts(tmp_path: Path) -> None:
    tally = Tally(lambda d: d.event_id)
    steps = story(1, datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    vdd = next(s for s in steps if s.alert)
    tally.expect(vdd)
    register = next(c for s in steps for c in s.calls)
    tally.desk(register, 1, 201)
    waiting = {line.event_id: line for line in tally.snapshot().story}
    assert waiting[f"alert-{vdd.transfer.event_id}"].got is None
    tally.alerted("some-other-transfer", "VDD_EGRESS_BLOCKED")
    tally.alerted(vdd.transfer.event_id, "VDD_EGRESS_BLOCKED")
    snap = tally.snapshot()
    lines = {line.label: line for line in snap.story}
    assert snap.alerts == 2
    alert = lines[f"alert to the security team: {vdd.label}"]
    assert (alert.got, alert.as_expected) == ("webhook VDD_EGRESS_BLOCKED", True)
    call = lines[register.label]
    assert (call.got, call.as_expected) == ("HTTP 201", True)
    tally.desk(register, 1, 500, "internal error")
    assert tally.snapshot().story_failed == 1


def test_rate_over_a_window() -> None:
    assert rate_over([1.0, 1.5, 2.0, 2.5], now=2.5, window_s=1.0) == 2.0
    assert rate_over([], now=5, window_s=2) == 0.0
    assert rate_over([1.0], now=1.0, window_s=0) == 0.0


def test_tally_rate_and_peak_follow_the_clock() -> None:
    clock = Clock()
    tally = Tally(lambda d: d.event_id, clock=clock)
    clock.now += 2
    tally.record([(decision(f"e{i}", Outcome.ALLOW), False) for i in range(100)])
    assert tally.snapshot().rate == 50.0  # 100 decisions over the 2 s window
    clock.now += 10
    snap = tally.snapshot()
    assert snap.rate == 0.0
    assert snap.peak_rate == 50.0
    assert snap.elapsed_s == 12


def test_recent_decisions_are_one_per_kind_newest_first() -> None:
    a1 = decision("a1", Outcome.ALLOW, ReasonCode.PROCESSOR)
    b1 = decision("b1", Outcome.BLOCK, ReasonCode.CONSENT_MISSING)
    a2 = decision("a2", Outcome.ALLOW, ReasonCode.PROCESSOR)
    c1 = decision("c1", Outcome.BLOCK, ReasonCode.VDD_EGRESS_FORBIDDEN)
    assert [d.event_id for d in latest_kinds([a1, b1, a2, c1], 3)] == ["c1", "a2", "b1"]
    assert [d.event_id for d in latest_kinds([a1, b1, a2, c1], 1)] == ["c1"]


def test_duplicate_header() -> None:
    assert is_duplicate([("guard.duplicate", b"1")])
    assert not is_duplicate([("guard.duplicate", b"0"), ("other", b"1")])
    assert not is_duplicate(None)


def test_default_and_private_topic_names() -> None:
    default = plan_topics()
    assert not default.private
    assert default.topics == Topics()
    private = plan_topics("demo-abc")
    assert private.private
    names = private.topics.model_dump().values()
    assert all(name.endswith(".demo-abc") for name in names)
    assert private.topics.order_requests == "sharing.order-requests.demo-abc"
    partitions = private.partitions()
    assert partitions["sharing.transfers.requested.demo-abc"] == 6
    assert partitions["sharing.decisions.demo-abc"] == 6
    assert partitions["sharing.order-requests.demo-abc"] == 1
    assert partitions["legal.orders.demo-abc"] == 1
    assert len(partitions) == len(Topics.model_fields)


def test_partition_differences() -> None:
    missing, wrong = differences({"a": 6, "b": 1, "c": 3}, {"a": 6, "b": 2})
    assert missing == ["c"]
    assert wrong == ["b has 2 partitions, the guard needs 1"]


def test_worker_environment_is_private_and_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_topics("demo-x")
    base = {
        "PATH": "/bin",
        "SHARING_GUARD_APP_ID": "someone-else",
        "SHARING_GUARD_POLICY_FILE": "p",
    }
    env = worker_env(
        base,
        bootstrap="127.0.0.1:1",
        app_id="sharing-guard-demo-x",
        data_dir=tmp_path,
        port=4242,
        topics=plan.env(),
    )
    assert env["PATH"] == "/bin"
    assert "SHARING_GUARD_POLICY_FILE" not in env
    for key in list(os.environ):
        if key.startswith("SHARING_GUARD_") or key == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("SHARING_GUARD_"):
            monkeypatch.setenv(key, value)
    settings = GuardSettings()  # what the worker reads from the environment it is given
    assert settings.app_id == "sharing-guard-demo-x"
    assert settings.bootstrap_servers == "127.0.0.1:1"
    assert settings.web_port == 4242
    assert settings.data_dir == tmp_path
    assert settings.policy_file is None
    assert settings.topics == plan.topics


def test_the_embedded_broker_gets_an_explicit_unchecked_window(tmp_path: Path) -> None:
    def env_for(base: dict[str, str]) -> dict[str, str]:
        return worker_env(
            base,
            bootstrap="127.0.0.1:1",
            app_id="sharing-guard-demo-x",
            data_dir=tmp_path,
            port=4242,
            topics=plan_topics("demo-x").env(),
        )

    assert "SHARING_GUARD_CHECK_RETENTION" not in env_for({})  # checked on Apache Kafka
    tansu = env_for({"DEMO_UNCHECKED_WINDOW_S": "86400"})
    assert tansu["SHARING_GUARD_CHECK_RETENTION"] == "false"
    assert tansu["SHARING_GUARD_IDEMPOTENCY_WINDOW_S"] == "86400"
