"""Properties of ``what-if`` over generated histories (those of ``test_engine_properties``).

* A candidate that is the baseline changes nothing, whatever the history.
* What-if finds exactly the transfers whose decision differs between ``replay`` under the
  baseline and ``replay`` under the candidate, each with its own state (quotas included): its
  one pass with two sides is the same as two replays.
* With the baseline's own decisions recorded on the lines, the same changes are found and
  every recorded decision is reproduced.
"""

import json
from importlib import resources

from hypothesis import given
from sharing_guard.contract import Decision, Event
from sharing_guard.core.policy import Policy, parse_policy
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import replay
from sharing_guard.whatif.run import what_if
from sharing_guard.whatif.tally import Tally
from test_engine_properties import Redelivered, examples, redelivered

BASELINE = load_policy()
_TEXT = (resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8")
_AGENT = '[recipient_types.AGENT]\nbasis = "PROCESSOR"\n'


def _variant(old: str, new: str) -> Policy:
    assert old in _TEXT
    return parse_policy(_TEXT.replace(old, new, 1))


CANDIDATES = {
    "age 16": _variant("child_age_limit = 13", "child_age_limit = 16"),
    "+ DE": _variant('jurisdictions = ["CH"]', 'jurisdictions = ["CH", "DE"]'),
    "DE, not CH": _variant('jurisdictions = ["CH"]', 'jurisdictions = ["DE"]'),
    "no agent basis": _variant(_AGENT, "[recipient_types.AGENT]\n"),
    "no data analysis": _variant('  "DATA_ANALYSIS",\n', ""),
    "unregistered subcontractors": _variant(
        '[recipient_types.SUBCONTRACTOR]\nbasis = "PROCESSOR"\npurposes = "processor_purposes"\n'
        "registration_required = true",
        '[recipient_types.SUBCONTRACTOR]\nbasis = "PROCESSOR"\npurposes = "processor_purposes"\n'
        "registration_required = false",
    ),
}


def _lines(events: list[Event]) -> list[bytes]:
    return [event.model_dump_json().encode() for event in events]


def _first_decisions(events: list[Event], policy: Policy) -> dict[str, Decision]:
    """Each transfer's first decision under ``policy``, by replay."""
    found: dict[str, Decision] = {}
    for item in replay(_lines(events), policy):
        assert isinstance(item, Decision)
        found.setdefault(item.event_id, item)
    return found


def _changed(tally: Tally) -> set[str]:
    return {event_id for group in tally.groups.values() for event_id in group.examples}


def _with_recorded(events: list[Event], made: dict[str, Decision]) -> list[bytes]:
    lines = []
    for raw, event in zip(_lines(events), events, strict=True):
        decision = made.get(event.event_id)
        if decision is None or event.type != "TransferRequested":
            lines.append(raw)
            continue
        recorded = decision.model_dump(mode="json", exclude={"event_id"})
        lines.append(raw[:-1] + b',"recorded":' + json.dumps(recorded).encode() + b"}")
    return lines


@examples(150)
@given(history=redelivered())
def test_the_baseline_as_candidate_changes_nothing(history: Redelivered) -> None:
    events = history.merged
    made = _first_decisions(events, BASELINE)

    plain = what_if(_lines(events), BASELINE, BASELINE)
    recorded = what_if(_with_recorded(events, made), BASELINE, BASELINE)

    for tally in (plain, recorded):
        assert (tally.changed, tally.groups, tally.invalid, tally.not_reproduced) == (0, {}, 0, 0)
        assert tally.transfers == tally.unchanged == len(made)


@examples(200)
@given(history=redelivered())
def test_what_if_finds_exactly_what_two_replays_disagree_on(history: Redelivered) -> None:
    events = history.merged
    old = _first_decisions(events, BASELINE)
    for candidate in CANDIDATES.values():
        _check_against_replays(history, old, candidate)


def _check_against_replays(
    history: Redelivered, old: dict[str, Decision], candidate: Policy
) -> None:
    events = history.merged
    new = _first_decisions(events, candidate)
    differ = {
        event_id
        for event_id, decision in old.items()
        if (decision.outcome, decision.reasons, decision.order_ref)
        != (new[event_id].outcome, new[event_id].reasons, new[event_id].order_ref)
    }

    plain = what_if(_lines(events), BASELINE, candidate, examples=10**6)
    recorded = what_if(_with_recorded(events, old), BASELINE, candidate, examples=10**6)

    for tally in (plain, recorded):
        assert _changed(tally) == differ
        assert tally.changed == len(differ)
        assert tally.unchanged == len(old) - len(differ)
        assert tally.repeated == sum(history.duplicate)
        assert tally.not_reproduced == tally.invalid == 0
    assert recorded.recorded == len(old)
    for group in plain.groups.values():
        for event_id in group.examples:
            assert (old[event_id].outcome, old[event_id].codes) == group.old
            assert (new[event_id].outcome, new[event_id].codes) == group.new
