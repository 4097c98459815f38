"""The event simulator: reproducible, valid under the contract, and a realistic spread.

Benchmarks and other tests rely on these properties; none of them is about speed.
"""

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_guard.contract import (
    EVENT_TYPES,
    ConsentChanged,
    ConsentStatus,
    Decision,
    Event,
    OrderApproved,
    OrderRegistered,
    Outcome,
    SubjectRightsAction,
    SubjectRightsChanged,
    TransferRequested,
    parse_event_json,
)
from sharing_guard.contract.enums import ALLOW_BASES
from sharing_guard.core.policy import Policy
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import LineError, replay
from sharing_guard.simulation import START, iter_events, simulate, to_jsonl

MIX_EVENTS = 20_000


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return simulate(MIX_EVENTS, seed=1)


@pytest.fixture(scope="module")
def results(events: list[Event], policy: Policy) -> list[Decision | LineError]:
    return list(replay(to_jsonl(events).splitlines(), policy))


@pytest.fixture(scope="module")
def decisions(results: list[Decision | LineError]) -> list[Decision]:
    return [item for item in results if isinstance(item, Decision)]


def test_same_seed_gives_identical_events() -> None:
    first, second = simulate(3000, seed=42), simulate(3000, seed=42)
    assert first == second
    assert to_jsonl(first) == to_jsonl(second)


def test_other_seed_gives_other_events() -> None:
    assert to_jsonl(simulate(3000, seed=1)) != to_jsonl(simulate(3000, seed=2))


def test_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    assert simulate(700, seed=9) == simulate(3000, seed=9)[:700]


def test_negative_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        iter_events(-1)


def test_replay_accepts_every_generated_line(
    events: list[Event], results: list[Decision | LineError]
) -> None:
    assert [item for item in results if isinstance(item, LineError)] == []
    transfers = sum(isinstance(event, TransferRequested) for event in events)
    assert len(results) == transfers


def test_each_line_is_the_contract_json_of_its_event(events: list[Event]) -> None:
    lines = to_jsonl(events).splitlines()
    assert len(lines) == len(events)
    assert [parse_event_json(line) for line in lines] == events


def test_mix_allows_and_blocks_with_a_spread_of_reasons(decisions: list[Decision]) -> None:
    outcomes = Counter(decision.outcome for decision in decisions)
    block_share = outcomes[Outcome.BLOCK] / len(decisions)
    assert 0.05 < block_share < 0.5, outcomes
    codes = Counter(code for decision in decisions for code in decision.codes)
    block_codes = {code for code in codes if code not in ALLOW_BASES}
    assert len(block_codes) >= 10, codes
    assert set(ALLOW_BASES) <= set(codes), codes


def test_transfers_dominate_once_governance_is_set_up(events: list[Event]) -> None:
    share = sum(isinstance(event, TransferRequested) for event in events) / len(events)
    assert 0.85 <= share <= 0.92


def test_every_kind_of_governance_change_occurs(events: list[Event]) -> None:
    assert {event.type for event in events} == set(EVENT_TYPES)
    consents = {e.status for e in events if isinstance(e, ConsentChanged)}
    assert consents == set(ConsentStatus)
    actions = {e.action for e in events if isinstance(e, SubjectRightsChanged)}
    assert actions == set(SubjectRightsAction)
    registered_by = {e.order_ref: e.registered_by for e in events if isinstance(e, OrderRegistered)}
    own = [e for e in events if isinstance(e, OrderApproved)]
    assert any(e.approved_by == registered_by[e.order_ref] for e in own)
    assert any(e.approved_by != registered_by[e.order_ref] for e in own)


def test_new_events_are_later_than_all_before_them(events: list[Event]) -> None:
    seen: set[str] = set()
    last = START
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        assert event.occurred_at > last
        last = event.occurred_at


def test_redeliveries_repeat_an_earlier_event_and_its_decision(
    events: list[Event], decisions: list[Decision]
) -> None:
    first: dict[str, Event] = {}
    repeats = 0
    for event in events:
        if event.event_id in first:
            repeats += 1
            assert event == first[event.event_id]
        else:
            first[event.event_id] = event
    assert repeats > 0
    first_decision: dict[str, Decision] = {}
    for decision in decisions:
        assert first_decision.setdefault(decision.event_id, decision) == decision


def test_ids_are_opaque(events: list[Event]) -> None:
    assert all(re.fullmatch(r"evt-\d{6}", event.event_id) for event in events)
    accounts = {e.account_id for e in events if isinstance(e, TransferRequested)}
    assert all(re.fullmatch(r"acc-\d{4}", account) for account in accounts)


@settings(max_examples=25, deadline=None)
@given(count=st.integers(min_value=0, max_value=400), seed=st.integers(0, 2**32))
def test_any_seed_yields_a_valid_stream(count: int, seed: int) -> None:
    stream = simulate(count, seed)
    assert len(stream) == count
    results = list(replay(to_jsonl(stream).splitlines(), load_policy()))
    assert [item for item in results if isinstance(item, LineError)] == []
