"""Properties of the guard's engine over generated governance histories and transfers.

Histories are sequences of governance events and transfers over small pools of accounts,
recipients, orders and officers, so that orders, consents, registrations and rights
interact; they are run through :func:`sharing_guard.core.ledger.step` on the bundled policy.
Expectations come from the contract (``shared/design/contract.md``, section 3): the order
rules are re-derived here by an oracle that reads the history itself, not the engine's
state. The offline form (``sharing-guard replay``) must survive any input, and the core must
not touch I/O or the clock.
"""

import ast
import importlib.util
import json
import random
import sys
import time
import types
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sharing_guard.core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sharing_guard.cli import main
from sharing_guard.contract import (
    EVENT_TYPES,
    Clause,
    ConsentChanged,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Decision,
    Event,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    OrderType,
    Outcome,
    Purpose,
    ReasonCode,
    Recipient,
    RecipientDeregistered,
    RecipientRegistered,
    RecipientType,
    SubjectRightsAction,
    SubjectRightsChanged,
    TransferRequested,
    parse_event_json,
)
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import LineError, replay

POLICY = load_policy()


def examples(count: int, **options: Any) -> settings:
    """Hypothesis settings: ``count`` examples and no per-example deadline (no timing)."""
    return settings(max_examples=count, deadline=None, **options)


R, C = ReasonCode, Clause
VDD = DataCategory.VIRTUAL_DRIVE_DATA
LE = RecipientType.LAW_ENFORCEMENT

# --- the contract's tables (section 3) -------------------------------------------------

BLOCK_CLAUSE: dict[ReasonCode, Clause] = {
    R.VDD_EGRESS_FORBIDDEN: C.VDD_NO_SHARING,
    R.ORDER_MISSING: C.LAW_ENFORCEMENT,
    R.ORDER_UNKNOWN: C.LAW_ENFORCEMENT,
    R.ORDER_NOT_APPROVED: C.LAW_ENFORCEMENT,
    R.ORDER_REVOKED: C.LAW_ENFORCEMENT,
    R.ORDER_NOT_IN_FORCE: C.LAW_ENFORCEMENT,
    R.ORDER_JURISDICTION: C.LAW_ENFORCEMENT,
    R.ORDER_SCOPE_MISMATCH: C.LAW_ENFORCEMENT,
    R.ORDER_QUOTA_EXHAUSTED: C.LAW_ENFORCEMENT,
    R.RECIPIENT_NOT_REGISTERED: C.PROCESSOR_PURPOSE,
    R.PURPOSE_NOT_PERMITTED: C.PROCESSOR_PURPOSE,
    R.TRANSACTION_REF_MISSING: C.BUSINESS_TRANSFER,
    R.FRAUD_CASE_MISSING: C.FRAUD,
    # CONSENT_MISSING cites the clause of the missing consent: see consent_missing_clause.
    R.CONSENT_WITHDRAWN: C.CONSENT_WITHDRAWAL,
    R.PROCESSING_RESTRICTED: C.RESTRICTION,
    R.SUBJECT_ERASED: C.ERASURE,
    R.CHILD_DATA: C.CHILDREN,
    R.NO_LEGAL_BASIS: C.DEFAULT_DENY,
    R.GUARD_ERROR: C.DEFAULT_DENY,
}
BLOCK_CODES = {*BLOCK_CLAUSE, R.CONSENT_MISSING}
ALLOW_CODES = {R.ORDER, R.PROCESSOR, R.BUSINESS_TRANSFER, R.FRAUD_PREVENTION, R.CONSENT}

PROCESSOR_TYPES = (
    RecipientType.ASSOCIATE_OFFICE,
    RecipientType.AGENT,
    RecipientType.SUBCONTRACTOR,
)
BASIS: dict[RecipientType, tuple[ReasonCode, Clause]] = {
    LE: (R.ORDER, C.LAW_ENFORCEMENT),
    **{rtype: (R.PROCESSOR, C.PROCESSOR_PURPOSE) for rtype in PROCESSOR_TYPES},
    RecipientType.BUSINESS_TRANSFER_COUNTERPARTY: (R.BUSINESS_TRANSFER, C.BUSINESS_TRANSFER),
    RecipientType.FRAUD_PREVENTION_PARTNER: (R.FRAUD_PREVENTION, C.FRAUD),
    RecipientType.THIRD_PARTY: (R.CONSENT, C.THIRD_PARTY_CONSENT),
}
"""The allow basis of each recipient type and the clause it cites."""

PROCESSOR_PURPOSES = (
    Purpose.DOCUMENT_PROCESSING,
    Purpose.CUSTOMER_COMMUNICATIONS,
    Purpose.DATA_ANALYSIS,
    Purpose.MARKETING_ASSISTANCE,
    Purpose.PAYMENT_PROCESSING,
    Purpose.PROMOTIONAL_OFFERS,
)
FITTING_PURPOSES: dict[RecipientType, tuple[Purpose, ...]] = {
    **{rtype: PROCESSOR_PURPOSES for rtype in PROCESSOR_TYPES},
    LE: (Purpose.LEGAL_ORDER,),
    RecipientType.BUSINESS_TRANSFER_COUNTERPARTY: (Purpose.BUSINESS_TRANSFER,),
    RecipientType.FRAUD_PREVENTION_PARTNER: (Purpose.FRAUD_PREVENTION,),
    RecipientType.THIRD_PARTY: (Purpose.CONSENTED_SHARING,),
}
"""The purposes the contract lets each recipient type receive data for."""

APPROPRIATE_JURISDICTIONS = {"CH"}
"""The contract's default: orders from where the data lives."""


def consent_missing_clause(transfer: TransferRequested) -> Clause:
    """CONSENT_MISSING cites the marketing clause for promotions, else the third-party one."""
    if transfer.purpose is Purpose.PROMOTIONAL_OFFERS:
        return C.MARKETING_CONSENT
    return C.THIRD_PARTY_CONSENT


# --- generated histories ---------------------------------------------------------------

BASE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ACCOUNTS = ("acc-1", "acc-2")
AGENCIES = ("agency-1", "agency-2")
RECIPIENT_IDS = (*AGENCIES, "proc-1", "proc-2", "party-1")
ORDER_REFS = ("ord-1", "ord-2", "ord-3")
UNREGISTERED_REF = "ord-never-registered"
OFFICERS = ("officer-1", "officer-2", "officer-3")

minutes = st.integers(min_value=0, max_value=120)
jurisdictions = st.sampled_from(("CH", "CH", "DE", "US"))


def _sorted(values: set[Any]) -> tuple[Any, ...]:
    return tuple(sorted(values))


categories = st.sets(st.sampled_from(DataCategory), min_size=1).map(_sorted)


def at(minute: int) -> datetime:
    """An instant ``minute`` minutes into every history."""
    return BASE + timedelta(minutes=minute)


def minute_of(instant: datetime) -> int:
    """The inverse of :func:`at`."""
    return (instant - BASE) // timedelta(minutes=1)


@dataclass
class _Draft:
    """What a history generator has produced so far, only to aim later events well."""

    draw: st.DrawFn
    orders: dict[str, OrderRegistered] = field(default_factory=dict)
    recipients: dict[str, RecipientRegistered] = field(default_factory=dict)
    consents: list[ConsentChanged] = field(default_factory=list)
    count: int = 0

    def pick(self, values: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(values))

    def next_id(self) -> str:
        self.count += 1
        return f"ev-{self.count}"

    def when(self) -> datetime:
        return at(self.draw(minutes))


def _transfer(d: _Draft) -> list[Event]:
    rtype = d.pick(tuple(RecipientType))
    return [
        TransferRequested(
            event_id=d.next_id(),
            occurred_at=d.when(),
            source_service="svc-test",
            account_id=d.pick(ACCOUNTS),
            subject_age=d.draw(st.none() | st.integers(min_value=0, max_value=30)),
            data_categories=d.draw(categories),
            recipient=Recipient(
                id=d.pick(RECIPIENT_IDS), type=rtype, jurisdiction=d.draw(jurisdictions)
            ),
            purpose=d.draw(st.sampled_from(FITTING_PURPOSES[rtype]) | st.sampled_from(Purpose)),
            order_ref=d.draw(st.none() | st.sampled_from((*ORDER_REFS, UNREGISTERED_REF))),
            fraud_case_ref=d.draw(st.none() | st.just("case-1")),
            transaction_ref=d.draw(st.none() | st.just("deal-1")),
        )
    ]


def _transfers_under_an_order(d: _Draft) -> list[Event]:
    """One to three law-enforcement transfers inside the scope and window of an order."""
    if not d.orders:
        return _transfer(d)
    order = d.orders[d.pick(tuple(sorted(d.orders)))]
    scope = tuple(order.data_categories) or (VDD,)
    window = st.integers(minute_of(order.valid_from), minute_of(order.valid_until))
    return [
        TransferRequested(
            event_id=d.next_id(),
            occurred_at=at(d.draw(window)),
            source_service="svc-legal",
            account_id=d.pick(order.account_ids),
            subject_age=d.draw(st.none() | st.integers(min_value=0, max_value=20)),
            data_categories=d.draw(st.sets(st.sampled_from(scope), min_size=1).map(_sorted)),
            recipient=Recipient(id=order.recipient_id, type=LE, jurisdiction="CH"),
            purpose=Purpose.LEGAL_ORDER,
            order_ref=order.order_ref,
        )
        for _ in range(d.draw(st.integers(min_value=1, max_value=3)))
    ]


def _transfer_to_a_registered_recipient(d: _Draft) -> list[Event]:
    """A transfer to a recipient as registered, for one of its permitted purposes."""
    if not d.recipients:
        return _transfer(d)
    registered = d.recipients[d.pick(tuple(sorted(d.recipients)))]
    fitting = FITTING_PURPOSES[registered.recipient_type]
    purposes = [p for p in registered.permitted_purposes if p in fitting] or fitting
    return [
        TransferRequested(
            event_id=d.next_id(),
            occurred_at=d.when(),
            source_service="svc-ops",
            account_id=d.pick(ACCOUNTS),
            subject_age=d.draw(st.none() | st.integers(min_value=10, max_value=90)),
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(
                id=registered.recipient_id,
                type=registered.recipient_type,
                jurisdiction=registered.jurisdiction,
            ),
            purpose=d.pick(purposes),
        )
    ]


def _transfer_with_a_consent(d: _Draft) -> list[Event]:
    """A promotion or consented sharing for an account that changed that consent."""
    if not d.consents:
        return _transfer(d)
    consent = d.pick(d.consents)
    marketing = consent.scope is ConsentScope.MARKETING
    return [
        TransferRequested(
            event_id=d.next_id(),
            occurred_at=d.when(),
            source_service="svc-campaigns",
            account_id=consent.account_id,
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(
                id=consent.recipient_id or d.pick(RECIPIENT_IDS),
                type=d.pick(PROCESSOR_TYPES) if marketing else RecipientType.THIRD_PARTY,
                jurisdiction="CH",
            ),
            purpose=Purpose.PROMOTIONAL_OFFERS if marketing else Purpose.CONSENTED_SHARING,
        )
    ]


def _order(d: _Draft) -> list[Event]:
    """A new order, usually approved right away (by its registrar, or by a second officer)."""
    free = [ref for ref in ORDER_REFS if ref not in d.orders]
    if not free:
        return _approval(d)
    start, end = sorted((d.draw(minutes), d.draw(minutes)))
    order = OrderRegistered(
        event_id=d.next_id(),
        occurred_at=d.when(),
        order_ref=d.pick(free),
        order_type=d.pick(tuple(OrderType)),
        authority="Zug court",
        jurisdiction=d.pick(("CH", "CH", "CH", "DE")),
        recipient_id=d.pick((*AGENCIES, *AGENCIES, "proc-1")),
        account_ids=d.draw(st.sets(st.sampled_from(ACCOUNTS), min_size=1).map(_sorted)),
        data_categories=d.draw(st.sets(st.sampled_from(DataCategory)).map(_sorted)),
        valid_from=at(start),
        valid_until=at(end),
        max_disclosures=d.pick((None, 1, 1, 2, 3)),
        registered_by=d.pick(OFFICERS),
    )
    d.orders[order.order_ref] = order
    if d.draw(st.integers(0, 3)) == 0:
        return [order]
    others = tuple(officer for officer in OFFICERS if officer != order.registered_by)
    return [order, *_approval(d, order.order_ref, d.pick((*others, *others, *OFFICERS)))]


def _approval(d: _Draft, ref: str | None = None, by: str | None = None) -> list[Event]:
    return [
        OrderApproved(
            event_id=d.next_id(),
            occurred_at=d.when(),
            order_ref=ref or d.pick((*sorted(d.orders), UNREGISTERED_REF)),
            approved_by=by or d.pick(OFFICERS),
        )
    ]


def _revocation(d: _Draft) -> list[Event]:
    return [
        OrderRevoked(
            event_id=d.next_id(),
            occurred_at=d.when(),
            order_ref=d.pick((*sorted(d.orders), UNREGISTERED_REF)),
            revoked_by=d.pick(OFFICERS),
            reason="quashed",
        )
    ]


def _consent(d: _Draft) -> list[Event]:
    scope = d.pick(tuple(ConsentScope))
    third_party = scope is ConsentScope.THIRD_PARTY_SHARING
    consent = ConsentChanged(
        event_id=d.next_id(),
        occurred_at=d.when(),
        account_id=d.pick(ACCOUNTS),
        scope=scope,
        recipient_id=d.pick(RECIPIENT_IDS) if third_party else None,
        status=d.pick((ConsentStatus.GRANTED, ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN)),
    )
    d.consents.append(consent)
    return [consent]


def _registration(d: _Draft) -> list[Event]:
    rtype = d.pick((*PROCESSOR_TYPES, *RecipientType))
    purposes = st.sampled_from(FITTING_PURPOSES[rtype]) | st.sampled_from(Purpose)
    registration = RecipientRegistered(
        event_id=d.next_id(),
        occurred_at=d.when(),
        recipient_id=d.pick(RECIPIENT_IDS),
        recipient_type=rtype,
        jurisdiction=d.draw(jurisdictions),
        permitted_purposes=tuple(d.draw(st.lists(purposes, unique=True, max_size=4))),
        agreement_ref="dpa-1",
    )
    d.recipients[registration.recipient_id] = registration
    return [registration]


def _deregistration(d: _Draft) -> list[Event]:
    recipient_id = d.pick(RECIPIENT_IDS)
    d.recipients.pop(recipient_id, None)
    return [
        RecipientDeregistered(event_id=d.next_id(), occurred_at=d.when(), recipient_id=recipient_id)
    ]


def _rights(d: _Draft) -> list[Event]:
    return [
        SubjectRightsChanged(
            event_id=d.next_id(),
            occurred_at=d.when(),
            account_id=d.pick(ACCOUNTS),
            action=d.pick(tuple(SubjectRightsAction)),
        )
    ]


MAKERS = (
    *(_transfer,) * 3,
    *(_transfers_under_an_order,) * 4,
    *(_transfer_to_a_registered_recipient,) * 2,
    _transfer_with_a_consent,
    *(_order,) * 2,
    _approval,
    _revocation,
    *(_consent,) * 2,
    *(_registration,) * 2,
    _deregistration,
    _rights,
)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 16) -> list[Event]:
    """A processing-order sequence of events with unique ids.

    Each order reference is registered at most once, and approvals and revocations name
    either an order registered earlier or one that is never registered.
    """
    draft = _Draft(draw)
    events: list[Event] = []
    for _ in range(draw(st.integers(min_value=1, max_value=max_steps))):
        events += draw(st.sampled_from(MAKERS))(draft)
    return events


def redelivery(event: Event) -> Event:
    """The same event as it would arrive again: same content, same event_id."""
    return parse_event_json(event.model_dump_json())


@dataclass(frozen=True)
class Redelivered:
    """A history, and the same history with redeliveries inserted after the originals."""

    history: list[Event]
    merged: list[Event]
    source: list[int]
    """For each event of ``merged``, the index in ``history`` of the event it repeats."""
    duplicate: list[bool]


@st.composite
def redelivered(draw: st.DrawFn) -> Redelivered:
    history = draw(histories())
    size = len(history)
    after: dict[int, list[int]] = defaultdict(list)
    for origin, offset in draw(
        st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size)), max_size=10)
    ):
        after[origin + offset % (size - origin)].append(origin)
    merged, source, duplicate = [], [], []
    for index, event in enumerate(history):
        merged.append(event)
        source.append(index)
        duplicate.append(False)
        for origin in after[index]:
            merged.append(redelivery(history[origin]))
            source.append(origin)
            duplicate.append(True)
    return Redelivered(history, merged, source, duplicate)


# --- running histories, and the oracle -------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Each event's decision (``None`` for governance events) and the state after it."""

    events: list[Event]
    decisions: list[Decision | None]
    states: list[GovernanceState]

    def transfers(self) -> Iterator[tuple[int, TransferRequested, Decision]]:
        for index, (event, decision) in enumerate(zip(self.events, self.decisions, strict=True)):
            if isinstance(event, TransferRequested):
                assert decision is not None
                yield index, event, decision


def run(events: Sequence[Event]) -> Run:
    """Step every event through the engine, from an empty state."""
    state = GovernanceState()
    decisions, states = [], []
    for event in events:
        result = step(state, event, POLICY)
        state = result.state
        decisions.append(result.decision)
        states.append(state)
    return Run(list(events), decisions, states)


def contract_order_codes(outcome: Run, index: int) -> set[ReasonCode]:
    """The order codes the contract requires for the law-enforcement transfer at ``index``.

    Reads only the events before it, in processing order, and the outcomes of the earlier
    transfers (for the quota). A repeated event_id counts once.
    """
    transfer = outcome.events[index]
    assert isinstance(transfer, TransferRequested)
    assert transfer.recipient.type is LE
    ref = transfer.order_ref
    if ref is None:
        return {R.ORDER_MISSING}
    earlier: dict[str, tuple[Event, Decision | None]] = {}
    for event, decision in zip(outcome.events[:index], outcome.decisions[:index], strict=True):
        earlier.setdefault(event.event_id, (event, decision))
    about = [(e, d) for e, d in earlier.values() if getattr(e, "order_ref", None) == ref]
    registrations = [e for e, _ in about if isinstance(e, OrderRegistered)]
    if not registrations:
        return {R.ORDER_UNKNOWN}
    order = registrations[0]
    codes = set()
    if not any(
        isinstance(e, OrderApproved) and e.approved_by != order.registered_by for e, _ in about
    ):
        codes.add(R.ORDER_NOT_APPROVED)
    if any(isinstance(e, OrderRevoked) for e, _ in about):
        codes.add(R.ORDER_REVOKED)
    if not order.valid_from <= transfer.occurred_at <= order.valid_until:
        codes.add(R.ORDER_NOT_IN_FORCE)
    if order.jurisdiction not in APPROPRIATE_JURISDICTIONS:
        codes.add(R.ORDER_JURISDICTION)
    if (
        transfer.account_id not in order.account_ids
        or not set(transfer.data_categories) <= set(order.data_categories)
        or transfer.recipient.id != order.recipient_id
    ):
        codes.add(R.ORDER_SCOPE_MISMATCH)
    allowed = sum(
        1
        for e, d in about
        if isinstance(e, TransferRequested)
        and e.recipient.type is LE
        and d is not None
        and d.outcome is Outcome.ALLOW
    )
    if order.max_disclosures is not None and allowed >= order.max_disclosures:
        codes.add(R.ORDER_QUOTA_EXHAUSTED)
    return codes


ORDER_CODES = {code for code, clause in BLOCK_CLAUSE.items() if clause is C.LAW_ENFORCEMENT}


# --- what an outcome may say -----------------------------------------------------------


@examples(100)
@given(history=histories())
def test_virtual_drive_data_to_anyone_but_law_enforcement_is_blocked(history: list[Event]) -> None:
    for _, transfer, decision in run(history).transfers():
        if VDD in transfer.data_categories and transfer.recipient.type is not LE:
            assert decision.outcome is Outcome.BLOCK
            assert R.VDD_EGRESS_FORBIDDEN in decision.codes


@examples(100)
@given(history=histories())
def test_virtual_drive_data_is_allowed_only_under_an_order_valid_by_the_contract(
    history: list[Event],
) -> None:
    outcome = run(history)
    for index, transfer, decision in outcome.transfers():
        if VDD in transfer.data_categories and decision.outcome is Outcome.ALLOW:
            assert transfer.recipient.type is LE
            assert contract_order_codes(outcome, index) == set()


@examples(100)
@given(history=histories())
def test_law_enforcement_transfers_get_exactly_the_contracts_order_codes(
    history: list[Event],
) -> None:
    outcome = run(history)
    for index, transfer, decision in outcome.transfers():
        if transfer.recipient.type is LE:
            assert set(decision.codes) & ORDER_CODES == contract_order_codes(outcome, index)


@examples(100)
@given(history=histories())
def test_a_valid_order_exempts_from_restriction_and_child_rules_but_not_erasure(
    history: list[Event],
) -> None:
    outcome = run(history)
    for index, transfer, decision in outcome.transfers():
        if transfer.recipient.type is LE and not contract_order_codes(outcome, index):
            erased = any(
                isinstance(event, SubjectRightsChanged)
                and event.account_id == transfer.account_id
                and event.action is SubjectRightsAction.ERASURE_COMPLETED
                for event in outcome.events[:index]
            )
            assert R.PROCESSING_RESTRICTED not in decision.codes
            assert R.CHILD_DATA not in decision.codes
            assert (R.SUBJECT_ERASED in decision.codes) == erased


@examples(100)
@given(history=histories())
def test_an_allow_rests_on_exactly_the_basis_of_the_recipient_type(history: list[Event]) -> None:
    for _, transfer, decision in run(history).transfers():
        if decision.outcome is Outcome.ALLOW:
            expected = [BASIS[transfer.recipient.type]]
            if (
                transfer.recipient.type in PROCESSOR_TYPES
                and transfer.purpose is Purpose.PROMOTIONAL_OFFERS
            ):
                expected.append((R.PROCESSOR, C.MARKETING_CONSENT))
            actual = [(reason.code, reason.clause) for reason in decision.reasons]
            assert Counter(actual) == Counter(expected)
            assert set(decision.codes) <= ALLOW_CODES


@examples(100)
@given(history=histories())
def test_an_allow_under_an_order_names_that_order(history: list[Event]) -> None:
    for _, transfer, decision in run(history).transfers():
        if decision.outcome is Outcome.ALLOW and transfer.recipient.type is LE:
            assert transfer.order_ref is not None
            assert decision.order_ref == transfer.order_ref


@examples(100)
@given(history=histories())
def test_a_block_names_distinct_block_codes_each_with_its_clause(history: list[Event]) -> None:
    for _, transfer, decision in run(history).transfers():
        if decision.outcome is Outcome.BLOCK:
            assert decision.reasons
            assert len(set(decision.codes)) == len(decision.codes)
            for reason in decision.reasons:
                assert reason.code in BLOCK_CODES
                expected_clause = (
                    consent_missing_clause(transfer)
                    if reason.code is R.CONSENT_MISSING
                    else BLOCK_CLAUSE[reason.code]
                )
                assert reason.clause is expected_clause
            if R.NO_LEGAL_BASIS in decision.codes:
                assert decision.codes == (R.NO_LEGAL_BASIS,)


@examples(100)
@given(history=histories())
def test_every_decision_is_a_valid_decision_on_its_transfer_under_the_policy(
    history: list[Event],
) -> None:
    for _, transfer, decision in run(history).transfers():
        assert Decision.model_validate(decision.model_dump()) == decision
        assert decision.event_id == transfer.event_id
        assert decision.policy_version == POLICY.version


# --- what an outcome may not depend on -------------------------------------------------


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@examples(100)
@given(history=histories(), rng=st.randoms(use_true_random=False))
def test_decisions_do_not_depend_on_the_key_order_of_the_json(
    history: list[Event], rng: random.Random
) -> None:
    reordered = [
        parse_event_json(json.dumps(_shuffled(event.model_dump(mode="json"), rng)))
        for event in history
    ]
    assert reordered == history
    assert run(reordered).decisions == run(history).decisions


@contextmanager
def frozen_clock(instant: datetime) -> Iterator[None]:
    """Make every clock the project's modules could read say ``instant``."""
    import datetime as datetime_module

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return instant.astimezone(tz) if tz else instant.replace(tzinfo=None)

        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return instant.replace(tzinfo=None)

        @classmethod
        def today(cls) -> datetime:  # type: ignore[override]
            return instant.replace(tzinfo=None)

    class FrozenDate(date):
        @classmethod
        def today(cls) -> date:  # type: ignore[override]
            return instant.date()

    frozen_module = types.ModuleType("datetime")
    frozen_module.__dict__.update(vars(datetime_module))
    frozen_module.datetime = FrozenDatetime  # type: ignore[attr-defined]
    frozen_module.date = FrozenDate  # type: ignore[attr-defined]
    replacements = {id(datetime): FrozenDatetime, id(date): FrozenDate}
    replacements[id(datetime_module)] = frozen_module
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", instant.timestamp)
        patch.setattr(time, "time_ns", lambda: int(instant.timestamp()) * 10**9)
        for name, module in list(sys.modules.items()):
            if name == "sharing_guard" or name.startswith("sharing_guard."):
                for attribute, value in list(vars(module).items()):
                    if id(value) in replacements:
                        patch.setattr(module, attribute, replacements[id(value)])
        yield


@examples(50)
@given(
    history=histories(),
    clock_minutes=st.lists(st.integers(min_value=-60, max_value=180), min_size=2, max_size=2),
)
def test_decisions_do_not_depend_on_the_wall_clock(
    history: list[Event], clock_minutes: list[int]
) -> None:
    # The frozen clocks fall before, inside and after the histories' order windows and
    # consent times, where a decision that read the clock would change.
    unpatched = run(history).decisions
    for minute in clock_minutes:
        with frozen_clock(at(minute)):
            assert run(history).decisions == unpatched


@examples(100)
@given(history=histories())
def test_the_same_history_gives_the_same_decisions_and_state_twice(history: list[Event]) -> None:
    first, second = run(history), run(history)
    assert first.decisions == second.decisions
    assert first.states[-1] == second.states[-1]


@examples(100)
@given(case=redelivered())
def test_redeliveries_change_no_decision_and_no_state(case: Redelivered) -> None:
    clean, with_repeats = run(case.history), run(case.merged)
    for position, origin in enumerate(case.source):
        assert with_repeats.decisions[position] == clean.decisions[origin]
        if case.duplicate[position]:
            assert with_repeats.states[position] == with_repeats.states[position - 1]
        else:
            assert with_repeats.states[position] == clean.states[origin]


# --- quota -----------------------------------------------------------------------------


def _in_force_order(limit: int, scope: tuple[DataCategory, ...]) -> list[Event]:
    return [
        OrderRegistered(
            event_id="reg",
            occurred_at=at(0),
            order_ref="ord-q",
            order_type=OrderType.COURT_ORDER,
            authority="Zug court",
            jurisdiction="CH",
            recipient_id="agency-1",
            account_ids=("acc-1",),
            data_categories=scope,
            valid_from=at(0),
            valid_until=at(120),
            max_disclosures=limit,
            registered_by="officer-1",
        ),
        OrderApproved(
            event_id="app", occurred_at=at(1), order_ref="ord-q", approved_by="officer-2"
        ),
    ]


def _disclosure(event_id: str, minute: int, scope: tuple[DataCategory, ...]) -> TransferRequested:
    return TransferRequested(
        event_id=event_id,
        occurred_at=at(minute),
        source_service="svc-legal",
        account_id="acc-1",
        data_categories=scope,
        recipient=Recipient(id="agency-1", type=LE, jurisdiction="CH"),
        purpose=Purpose.LEGAL_ORDER,
        order_ref="ord-q",
    )


@examples(100)
@given(limit=st.integers(min_value=1, max_value=4), scope=categories, data=st.data())
def test_redelivered_allowed_transfers_do_not_spend_an_orders_quota(
    limit: int, scope: tuple[DataCategory, ...], data: st.DataObject
) -> None:
    transfers = [_disclosure(f"t-{n}", 10 + n, scope) for n in range(limit + 1)]
    events: list[Event] = _in_force_order(limit, scope)
    for n, transfer in enumerate(transfers):
        events.append(transfer)
        repeats = data.draw(st.lists(st.integers(min_value=0, max_value=n), max_size=3))
        events.extend(redelivery(transfers[origin]) for origin in repeats)

    first: dict[str, Decision] = {}
    for _, transfer, decision in run(events).transfers():
        assert first.setdefault(transfer.event_id, decision) == decision
    assert [first[t.event_id].outcome for t in transfers[:limit]] == [Outcome.ALLOW] * limit
    assert first[transfers[limit].event_id].codes == (R.ORDER_QUOTA_EXHAUSTED,)


@examples(100)
@given(case=redelivered())
def test_an_order_never_allows_more_transfers_than_its_max_disclosures(
    case: Redelivered,
) -> None:
    limits = {
        event.order_ref: event.max_disclosures
        for event in case.history
        if isinstance(event, OrderRegistered) and event.max_disclosures is not None
    }
    allowed: dict[str, set[str]] = defaultdict(set)
    for _, transfer, decision in run(case.merged).transfers():
        # Disclosures *under* the order: a transfer to another kind of recipient may name
        # an order_ref and be allowed on its own basis, without using the order.
        if decision.outcome is Outcome.ALLOW and decision.order_ref in limits:
            allowed[decision.order_ref].add(transfer.event_id)
    for ref, event_ids in allowed.items():
        assert len(event_ids) <= limits[ref]


# --- the offline form ------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)

TEMPLATES: tuple[Event, ...] = (
    *_in_force_order(2, (VDD,)),
    _disclosure("ev-t", 5, (VDD,)),
    OrderRevoked(
        event_id="ev-r", occurred_at=at(3), order_ref="ord-q", revoked_by="o", reason="quashed"
    ),
    ConsentChanged(
        event_id="ev-c",
        occurred_at=at(0),
        account_id="acc-1",
        scope=ConsentScope.THIRD_PARTY_SHARING,
        recipient_id="party-1",
        status=ConsentStatus.GRANTED,
    ),
    RecipientRegistered(
        event_id="ev-rr",
        occurred_at=at(0),
        recipient_id="proc-1",
        recipient_type=RecipientType.AGENT,
        jurisdiction="CH",
        permitted_purposes=(Purpose.PAYMENT_PROCESSING,),
        agreement_ref="dpa-1",
    ),
    RecipientDeregistered(event_id="ev-rd", occurred_at=at(0), recipient_id="proc-1"),
    SubjectRightsChanged(
        event_id="ev-s",
        occurred_at=at(0),
        account_id="acc-1",
        action=SubjectRightsAction.RESTRICTION_APPLIED,
    ),
)
"""One valid event of each type, to derive invalid ones from."""
assert {event.type for event in TEMPLATES} == set(EVENT_TYPES)


@st.composite
def event_like_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary objects, objects naming an event type, and events with one field changed."""
    kind = draw(st.sampled_from(["arbitrary", "typed", "mutated"]))
    if kind == "arbitrary":
        return draw(json_objects)
    if kind == "typed":
        return draw(json_objects) | {"type": draw(st.sampled_from(sorted(EVENT_TYPES)))}
    fields = draw(st.sampled_from(TEMPLATES)).model_dump(mode="json")
    key = draw(st.sampled_from(sorted(fields)))
    if draw(st.booleans()):
        del fields[key]
    else:
        fields[key] = draw(json_values)
    return fields


def _lines(events: Sequence[Event]) -> list[bytes]:
    return [event.model_dump_json().encode() for event in events]


def _only_decisions_and_line_errors(lines: list[bytes]) -> None:
    items = list(replay(lines, POLICY))
    assert all(isinstance(item, Decision | LineError) for item in items)
    assert len(items) <= len(lines)


@examples(200)
@given(lines=st.lists(st.binary(max_size=80), max_size=8))
def test_replay_of_arbitrary_byte_lines_yields_only_decisions_and_line_errors(
    lines: list[bytes],
) -> None:
    _only_decisions_and_line_errors(lines)


@examples(150)
@given(objects=st.lists(event_like_objects(), min_size=1, max_size=6))
def test_replay_of_arbitrary_json_objects_yields_only_decisions_and_line_errors(
    objects: list[dict[str, Any]],
) -> None:
    _only_decisions_and_line_errors([json.dumps(obj).encode() for obj in objects])


@st.composite
def invalid_lines(draw: st.DrawFn) -> bytes:
    """A non-blank line that is not a valid event by the contract."""
    fields = draw(st.sampled_from(TEMPLATES)).model_dump(mode="json")
    text = json.dumps(fields)
    kind = draw(
        st.sampled_from(
            ["truncated", "not utf-8", "not an object", "unknown type", "no id", "no zone"]
        )
    )
    if kind == "truncated":
        return text[: draw(st.integers(min_value=1, max_value=len(text) - 1))].encode()
    if kind == "not utf-8":
        return b"\xff" + draw(st.binary(max_size=20)).replace(b"\n", b"")
    if kind == "not an object":
        return json.dumps(draw(st.integers() | st.lists(st.integers(), max_size=3))).encode()
    if kind == "unknown type":
        return json.dumps(fields | {"type": "TransferCancelled"}).encode()
    if kind == "no id":
        return json.dumps({k: v for k, v in fields.items() if k != "event_id"}).encode()
    return json.dumps(fields | {"occurred_at": "2026-03-01T08:00:00"}).encode()


@st.composite
def files_with_invalid_lines(draw: st.DrawFn) -> tuple[list[bytes], list[Event], set[int]]:
    """Valid event lines (with redeliveries) with invalid lines slipped in between.

    Returns the lines, the valid events in order, and the 1-based numbers of invalid lines.
    """
    events = draw(redelivered()).merged
    lines: list[bytes] = []
    invalid: set[int] = set()
    for line in _lines(events):
        for bad in draw(st.lists(invalid_lines(), max_size=2)):
            lines.append(bad)
            invalid.add(len(lines))
        lines.append(line)
    return lines, events, invalid


@examples(60)
@given(case=files_with_invalid_lines())
def test_replay_reports_invalid_lines_by_number_and_decides_every_valid_line(
    case: tuple[list[bytes], list[Event], set[int]],
) -> None:
    lines, events, invalid = case
    items = list(replay(lines, POLICY))
    assert {item.line for item in items if isinstance(item, LineError)} == invalid
    assert [item for item in items if isinstance(item, Decision)] == [
        decision for decision in run(events).decisions if decision is not None
    ]


def _cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    capsys.readouterr()
    status = main(["replay", str(path)])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


SHARED_FIXTURES = [HealthCheck.function_scoped_fixture]
"""tmp_path and capsys are shared by a test's examples: each example overwrites the same
input file and drains the captured output before it runs the CLI."""


@examples(100, suppress_health_check=SHARED_FIXTURES)
@given(content=st.binary(max_size=400))
def test_cli_replay_exits_0_or_1_and_never_raises_on_arbitrary_bytes(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(content)
    status, out, err = _cli(path, capsys)
    line_count = len(content.split(b"\n")) - (1 if content.endswith(b"\n") or not content else 0)
    for line in out:
        Decision.model_validate_json(line)
    reported = [json.loads(line) for line in err]
    assert all(set(report) == {"line", "error"} for report in reported)
    assert all(1 <= report["line"] <= line_count for report in reported)
    assert status == (1 if reported else 0)


@examples(40, suppress_health_check=SHARED_FIXTURES)
@given(case=files_with_invalid_lines())
def test_cli_replay_decides_each_transfer_line_and_reports_each_invalid_line(
    case: tuple[list[bytes], list[Event], set[int]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines, events, invalid = case
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    status, out, err = _cli(path, capsys)
    assert [Decision.model_validate_json(line) for line in out] == [
        decision for decision in run(events).decisions if decision is not None
    ]
    assert len(out) == sum(isinstance(event, TransferRequested) for event in events)
    assert {json.loads(line)["line"] for line in err} == invalid
    assert status == (1 if invalid else 0)


def test_cli_replay_reports_a_timestamp_outside_the_utc_range_and_decides_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # After conversion to UTC this instant is in year 10000, beyond what Python can hold:
    # the line is not a valid event, so it must be reported and the run must go on.
    deregistered = RecipientDeregistered(event_id="ev-1", occurred_at=at(0), recipient_id="r")
    out_of_range = deregistered.model_dump(mode="json") | {
        "occurred_at": "9999-12-31T23:59:59-01:00"
    }
    transfer = _disclosure("ev-2", 5, (DataCategory.PERSONAL_INFORMATION,))
    path = tmp_path / "input.jsonl"
    path.write_text(json.dumps(out_of_range) + "\n" + transfer.model_dump_json() + "\n")
    status, out, err = _cli(path, capsys)
    assert status == 1
    assert [json.loads(line)["line"] for line in err] == [1]
    assert [Decision.model_validate_json(line).event_id for line in out] == ["ev-2"]


# --- the core does no I/O and reads no clock -------------------------------------------

FORBIDDEN_MODULES = {
    "socket",
    "os",
    "io",
    "pathlib",
    "logging",
    "time",
    "asyncio",
    "subprocess",
    "faust",
    "kafka",
    "aiokafka",
    "httpx",
    "psycopg",
    "sqlite3",
    "importlib",  # a dynamic import would hide any of the above
}
CLOCK_READS = {"now", "utcnow", "today"}


def io_and_clock_uses(
    source: str, module: str, package: str | None = None
) -> tuple[list[str], set[str]]:
    """Forbidden imports and calls in ``source``, and the project modules it imports.

    ``package`` resolves relative imports (the module's parent by default).
    """
    problems: list[str] = []
    imported: set[str] = set()
    parts = (package or module.rsplit(".", 1)[0]).split(".")
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{module}:{node.lineno} imports {name}")
            if name.startswith("sharing_guard"):
                imported.add(name)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in {"open", "__import__"}:
                problems.append(f"{module}:{node.lineno} calls {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_READS:
                problems.append(f"{module}:{node.lineno} reads the clock with .{func.attr}()")
    return sorted(set(problems)), imported


def _source_of(module: str) -> tuple[str, str] | None:
    """The module's source and the package its relative imports resolve against."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # ``from module import name``: name is not a module
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    package = module if spec.origin.endswith("__init__.py") else module.rsplit(".", 1)[0]
    return Path(spec.origin).read_text(encoding="utf-8"), package


def core_io_and_clock_uses() -> tuple[list[str], set[str]]:
    """Check ``sharing_guard.core`` and every project module it imports, transitively."""
    core = Path(sharing_guard.core.__file__).parent
    pending = ["sharing_guard", "sharing_guard.core"]
    pending += [f"sharing_guard.core.{path.stem}" for path in core.glob("*.py")]
    pending = [name for name in pending if not name.endswith("__init__")]
    checked: set[str] = set()
    problems: list[str] = []
    while pending:
        module = pending.pop()
        if module in checked:
            continue
        found_source = _source_of(module)
        if found_source is None:
            continue
        checked.add(module)
        found, imported = io_and_clock_uses(found_source[0], module, found_source[1])
        problems += found
        for name in imported:
            parts = name.split(".")
            pending += [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return problems, checked


def test_the_core_imports_no_io_library_and_reads_no_clock() -> None:
    problems, checked = core_io_and_clock_uses()
    assert problems == []
    assert {
        "sharing_guard.core.engine",
        "sharing_guard.core.ledger",
        "sharing_guard.core.policy",
        "sharing_guard.core.state",
        "sharing_guard.contract.events",
        "sharing_guard.contract.types",
    } <= checked


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "from pathlib import Path",
        "from time import monotonic",
        "import logging as log",
        "from kafka.consumer import KafkaConsumer",
        "import aiokafka",
        "with open('state.json') as f: pass",
        "stamp = datetime.now(UTC)",
        "stamp = datetime.datetime.utcnow()",
        "day = date.today()",
    ],
)
def test_the_io_check_catches(source: str) -> None:
    problems, _ = io_and_clock_uses(source, "sharing_guard.core.example")
    assert problems


def test_the_io_check_accepts_pure_code() -> None:
    source = "from datetime import UTC, datetime\nstart = datetime(2026, 1, 1, tzinfo=UTC)\n"
    assert io_and_clock_uses(source, "sharing_guard.core.example") == ([], set())
