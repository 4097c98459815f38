"""The demo's scripted story, replayed offline, is decided exactly as it says; the traffic
threads play it in an order that keeps it so."""

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sharing_guard.contract import Event, Outcome, ReasonCode, TransferRequested
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.core.policy import Policy
from sharing_guard.demo.story import ORDER_QUOTA, story
from sharing_guard.demo.tally import Tally
from sharing_guard.demo.traffic import Traffic, due
from sharing_guard.explain import explain
from sharing_guard.policy_file import load_policy

BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def test_every_step_is_decided_as_expected(policy: Policy) -> None:
    state = GovernanceState()
    for item in story(1, BASE):
        for event in item.effects:  # its governance and what its officers' calls publish
            state = step(state, event, policy).state
        result = step(state, item.transfer, policy)
        state = result.state
        assert result.decision is not None
        assert item.satisfied_by(result.decision.outcome, result.decision.codes), item.label


def test_the_story_covers_the_scripted_codes() -> None:
    expected = [(item.outcome, item.code) for item in story(1, BASE)]
    for code in (
        ReasonCode.CONSENT_MISSING,
        ReasonCode.CONSENT_WITHDRAWN,
        ReasonCode.VDD_EGRESS_FORBIDDEN,
        ReasonCode.ORDER_NOT_APPROVED,
        ReasonCode.ORDER_QUOTA_EXHAUSTED,
    ):
        assert (Outcome.BLOCK, code) in expected
    codes = [code for _, code in expected]
    order_steps = codes[codes.index(ReasonCode.ORDER_NOT_APPROVED) :]
    assert order_steps == [
        ReasonCode.ORDER_NOT_APPROVED,
        *[ReasonCode.ORDER] * ORDER_QUOTA,
        ReasonCode.ORDER_QUOTA_EXHAUSTED,
    ]


def test_steps_that_change_earlier_decisions_wait_for_them(policy: Policy) -> None:
    """Sending a ``waits`` step before the earlier steps are decided would change them."""
    steps = story(1, BASE)
    waiting = [i for i, item in enumerate(steps) if item.waits]
    assert waiting, "the withdrawal and the second approval must wait"
    for index in waiting:
        state = GovernanceState()
        events: list[Event] = [e for item in steps[: index + 1] for e in item.effects]
        for event in events:  # everything up to the waiting step applied first
            state = step(state, event, policy).state
        changed = [
            item.label
            for item in steps[:index]
            if not _decided_as_expected(state, item.transfer, item, policy)
        ]
        assert changed, f"step {index} need not wait"


def _decided_as_expected(
    state: GovernanceState, transfer: TransferRequested, item: Any, policy: Policy
) -> bool:
    decision = step(state, transfer, policy).decision
    assert decision is not None
    return bool(item.satisfied_by(decision.outcome, decision.codes))


def test_runs_use_their_own_ids_and_time_moves_on() -> None:
    one, two = story(1, BASE), story(2, BASE)
    ids = [e.event_id for s in one + two for e in (*s.effects, s.transfer)]
    assert len(ids) == len(set(ids))
    assert {s.transfer.account_id for s in one}.isdisjoint({s.transfer.account_id for s in two})
    times = [e.occurred_at for s in one for e in (*s.effects, s.transfer)]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    assert all(s.run == 2 for s in two)


def test_the_officers_calls_go_through_the_order_service_with_four_eyes() -> None:
    calls = [(c.officer, c.action, c.expect) for s in story(1, BASE) for c in s.calls]
    assert calls == [
        ("officer-anna", "register", 201),
        ("officer-anna", "approve", 409),  # her own order: four eyes
        ("officer-bruno", "approve", 200),
    ]
    register = story(1, BASE)[5].calls[0]
    body = register.body()
    assert body is not None
    assert "/" in body["order_ref"]  # a court's case number
    assert "registered_by" not in body  # the service takes the officer from the token
    vdd = [s for s in story(1, BASE) if s.alert]
    assert [s.code for s in vdd] == [ReasonCode.VDD_EGRESS_FORBIDDEN]


def test_due_keeps_a_steady_rate() -> None:
    assert due(0.0, 200, 0) == 0
    assert due(1.0, 200, 150) == 50
    assert due(0.5, 200, 150) == 0


class _LedgerClient:
    """A stand-in for TransferClient: decides at once with the offline engine."""

    def __init__(self, tally: Tally, policy: Policy) -> None:
        self.tally = tally
        self.policy = policy
        self.state = GovernanceState()
        self.lock = threading.Lock()
        self.order: list[str] = []

    def publish(self, event: Event) -> None:
        with self.lock:
            result = step(self.state, event, self.policy)
            self.state = result.state
            self.order.append(event.event_id)
        if result.decision is not None:
            self.tally.record([(result.decision, result.duplicate)])

    def publish_async(self, event: Event) -> Any:
        self.publish(event)
        return _Future()


class _Future:
    def add_errback(self, callback: Any) -> "_Future":
        return self


def test_traffic_plays_the_story_amid_the_simulated_stream(policy: Policy) -> None:
    tally = Tally(lambda decision: explain(decision, policy))
    client = _LedgerClient(tally, policy)
    stop = threading.Event()
    traffic = Traffic(
        client,  # type: ignore[arg-type]
        tally,
        stop,
        rate=2000,
        story_delay_s=0.05,
        story_every_s=0,
    )
    traffic.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        snap = tally.snapshot()
        decisions = [line for line in snap.story if not line.event_id.startswith("alert-")]
        if decisions and all(line.got for line in decisions) and snap.decided > 300:
            break
        time.sleep(0.05)
    stop.set()
    traffic.join()
    assert traffic.error is None
    snap = tally.snapshot()
    # Without a desk, the officers' calls publish their events directly; the alert lines
    # wait for a webhook (the demo's), so only the decisions are checked here.
    decisions = [line for line in snap.story if not line.event_id.startswith("alert-")]
    assert len(decisions) == len(story(1, BASE))
    assert all(line.as_expected for line in decisions), decisions
    assert snap.outcome("ALLOW") > 0
    assert snap.outcome("BLOCK") > 0
    assert snap.sent_governance > 0
    assert snap.in_flight == 0
