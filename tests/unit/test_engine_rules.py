"""The decision rules of the contract (section 3), one behaviour per test.

Each scenario feeds events through the same step function the guard and replay use, on
the bundled policy, and checks the outcome and the exact reasons with their clauses.
"""

from collections.abc import Iterable

import pytest
from builders import (
    approve,
    consent,
    deregister,
    le_transfer,
    order,
    register,
    revoke,
    rights,
    transfer,
)
from sharing_guard.contract import (
    Clause,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Decision,
    Event,
    Outcome,
    Purpose,
    ReasonCode,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.policy_file import load_policy

POLICY = load_policy()
R = ReasonCode
VDD = (DataCategory.VIRTUAL_DRIVE_DATA,)
PI_VDD = (DataCategory.PERSONAL_INFORMATION, DataCategory.VIRTUAL_DRIVE_DATA)
GRANTED, WITHDRAWN = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN


def decide_all(events: Iterable[Event]) -> list[Decision]:
    """Every decision, in order, for a sequence of events."""
    state, decisions = GovernanceState(), []
    for event in events:
        result = step(state, event, POLICY)
        state = result.state
        if result.decision is not None:
            decisions.append(result.decision)
    return decisions


def last(*events: Event) -> Decision:
    """The decision on the last transfer of a scenario."""
    return decide_all(events)[-1]


def pairs(decision: Decision) -> list[tuple[ReasonCode, Clause]]:
    return [(r.code, r.clause) for r in decision.reasons]


def assert_blocked(decision: Decision, *codes: ReasonCode) -> None:
    assert decision.outcome is Outcome.BLOCK
    assert list(decision.codes) == list(codes)


# --- allow bases ---------------------------------------------------------------------


def test_registered_processor_for_a_permitted_purpose_is_allowed_as_processor() -> None:
    decision = last(register(), transfer())
    assert decision.outcome is Outcome.ALLOW
    assert pairs(decision) == [(R.PROCESSOR, Clause.PROCESSOR_PURPOSE)]
    assert decision.policy_version == POLICY.version
    assert decision.order_ref is None


@pytest.mark.parametrize(
    "rtype", [RecipientType.ASSOCIATE_OFFICE, RecipientType.AGENT, RecipientType.SUBCONTRACTOR]
)
def test_every_processor_type_rests_on_the_processor_basis(rtype: RecipientType) -> None:
    decision = last(register(rtype=rtype), transfer(rtype=rtype))
    assert pairs(decision) == [(R.PROCESSOR, Clause.PROCESSOR_PURPOSE)]


def test_promotional_offer_with_prior_consent_cites_processor_and_marketing_consent() -> None:
    decision = last(
        register(purposes=(Purpose.PROMOTIONAL_OFFERS,)),
        consent(GRANTED, minutes=5),
        transfer(purpose=Purpose.PROMOTIONAL_OFFERS, minutes=10),
    )
    assert decision.outcome is Outcome.ALLOW
    assert pairs(decision) == [
        (R.PROCESSOR, Clause.PROCESSOR_PURPOSE),
        (R.PROCESSOR, Clause.MARKETING_CONSENT),
    ]


def test_valid_approved_order_allows_law_enforcement_with_order_basis() -> None:
    decision = last(order(), approve(), le_transfer(categories=PI_VDD))
    assert decision.outcome is Outcome.ALLOW
    assert pairs(decision) == [(R.ORDER, Clause.LAW_ENFORCEMENT)]
    assert decision.order_ref == "ord-1"


def test_business_transfer_with_transaction_ref_is_allowed() -> None:
    decision = last(
        transfer(
            rtype=RecipientType.BUSINESS_TRANSFER_COUNTERPARTY,
            purpose=Purpose.BUSINESS_TRANSFER,
            transaction_ref="deal-1",
        )
    )
    assert pairs(decision) == [(R.BUSINESS_TRANSFER, Clause.BUSINESS_TRANSFER)]


def test_fraud_exchange_with_case_ref_is_allowed() -> None:
    decision = last(
        transfer(
            rtype=RecipientType.FRAUD_PREVENTION_PARTNER,
            purpose=Purpose.FRAUD_PREVENTION,
            fraud_case_ref="case-1",
        )
    )
    assert pairs(decision) == [(R.FRAUD_PREVENTION, Clause.FRAUD)]


def test_third_party_with_consent_for_that_recipient_is_allowed_on_consent() -> None:
    decision = last(
        consent(GRANTED, scope=ConsentScope.THIRD_PARTY_SHARING, recipient="tp-1"),
        transfer(
            rtype=RecipientType.THIRD_PARTY, recipient="tp-1", purpose=Purpose.CONSENTED_SHARING
        ),
    )
    assert pairs(decision) == [(R.CONSENT, Clause.THIRD_PARTY_CONSENT)]


# --- Virtual Drive Data -----------------------------------------------------------------


@pytest.mark.parametrize(
    "rtype", [t for t in RecipientType if t is not RecipientType.LAW_ENFORCEMENT]
)
def test_virtual_drive_data_is_blocked_to_every_recipient_but_law_enforcement(
    rtype: RecipientType,
) -> None:
    decision = last(
        register(rtype=rtype),
        transfer(rtype=rtype, categories=PI_VDD, transaction_ref="d", fraud_case_ref="c"),
    )
    assert decision.outcome is Outcome.BLOCK
    assert decision.reasons[0].code is R.VDD_EGRESS_FORBIDDEN
    assert decision.reasons[0].clause is Clause.VDD_NO_SHARING


# --- orders -----------------------------------------------------------------------------


def test_law_enforcement_without_order_ref_is_blocked_order_missing() -> None:
    decision = last(le_transfer(ref=None))
    assert_blocked(decision, R.ORDER_MISSING)
    assert decision.reasons[0].clause is Clause.LAW_ENFORCEMENT


def test_unregistered_order_is_blocked_order_unknown() -> None:
    decision = last(le_transfer(ref="ord-404"))
    assert_blocked(decision, R.ORDER_UNKNOWN)
    assert decision.order_ref == "ord-404"


def test_order_without_approval_is_blocked_not_approved() -> None:
    assert_blocked(last(order(), le_transfer()), R.ORDER_NOT_APPROVED)


def test_self_approval_does_not_satisfy_four_eyes() -> None:
    assert_blocked(last(order(), approve(by="officer-a"), le_transfer()), R.ORDER_NOT_APPROVED)


def test_approval_by_second_officer_after_self_approval_counts() -> None:
    decision = last(order(), approve(by="officer-a"), approve(by="officer-b"), le_transfer())
    assert decision.outcome is Outcome.ALLOW


def test_revoked_order_is_blocked_revoked() -> None:
    assert_blocked(last(order(), approve(), revoke(), le_transfer()), R.ORDER_REVOKED)


@pytest.mark.parametrize(
    ("minutes", "allowed"), [(0, True), (60, True), (-0.001, False), (60.001, False)]
)
def test_validity_window_is_inclusive_at_both_ends(minutes: float, allowed: bool) -> None:
    decision = last(order(valid_from=0, valid_until=60), approve(), le_transfer(minutes=minutes))
    if allowed:
        assert decision.outcome is Outcome.ALLOW
    else:
        assert_blocked(decision, R.ORDER_NOT_IN_FORCE)


def test_order_from_a_non_appropriate_jurisdiction_is_blocked() -> None:
    assert_blocked(last(order(jurisdiction="US"), approve(), le_transfer()), R.ORDER_JURISDICTION)


@pytest.mark.parametrize(
    "change",
    [
        {"account": "acc-2"},
        {"recipient": "agency-2"},
        {"categories": VDD},
    ],
    ids=["account", "agency", "category"],
)
def test_transfer_outside_the_order_scope_is_blocked(change: dict[str, object]) -> None:
    scoped = order(categories=(DataCategory.PERSONAL_INFORMATION,))
    assert_blocked(last(scoped, approve(), le_transfer(**change)), R.ORDER_SCOPE_MISMATCH)


def test_quota_allows_exactly_max_disclosures_then_blocks() -> None:
    decisions = decide_all(
        [order(max_disclosures=2), approve(), le_transfer(), le_transfer(), le_transfer()]
    )
    assert [d.outcome for d in decisions] == [Outcome.ALLOW, Outcome.ALLOW, Outcome.BLOCK]
    assert_blocked(decisions[-1], R.ORDER_QUOTA_EXHAUSTED)


def test_redelivered_transfer_does_not_spend_quota_twice() -> None:
    first = le_transfer(event_id="evt-le-1")
    decisions = decide_all([order(max_disclosures=2), approve(), first, first, le_transfer()])
    assert [d.outcome for d in decisions] == [Outcome.ALLOW, Outcome.ALLOW, Outcome.ALLOW]
    assert decisions[0] == decisions[1]


def test_blocked_transfers_do_not_spend_quota() -> None:
    decisions = decide_all(
        [order(max_disclosures=1), approve(), le_transfer(account="acc-9"), le_transfer()]
    )
    assert [d.outcome for d in decisions] == [Outcome.BLOCK, Outcome.ALLOW]


def test_reregistering_an_order_does_not_reset_its_quota_or_approval() -> None:
    decisions = decide_all(
        [
            order(max_disclosures=1),
            approve(),
            le_transfer(),
            order(max_disclosures=5),
            le_transfer(),
        ]
    )
    assert_blocked(decisions[-1], R.ORDER_QUOTA_EXHAUSTED)


def test_every_failing_order_check_is_reported_together() -> None:
    decision = last(
        order(jurisdiction="DE", valid_until=5, max_disclosures=None),
        revoke(),
        le_transfer(account="acc-2", minutes=10),
    )
    assert_blocked(
        decision,
        R.ORDER_NOT_APPROVED,
        R.ORDER_REVOKED,
        R.ORDER_NOT_IN_FORCE,
        R.ORDER_JURISDICTION,
        R.ORDER_SCOPE_MISMATCH,
    )


def test_law_enforcement_needs_the_legal_order_purpose() -> None:
    decision = last(order(), approve(), le_transfer(purpose=Purpose.DATA_ANALYSIS))
    assert_blocked(decision, R.PURPOSE_NOT_PERMITTED)


# --- processors -------------------------------------------------------------------------


def test_unregistered_processor_is_blocked() -> None:
    decision = last(transfer())
    assert_blocked(decision, R.RECIPIENT_NOT_REGISTERED)
    assert decision.reasons[0].clause is Clause.PROCESSOR_PURPOSE


def test_deregistered_processor_is_blocked() -> None:
    assert_blocked(last(register(), deregister(), transfer()), R.RECIPIENT_NOT_REGISTERED)


def test_processor_registered_under_another_type_is_blocked() -> None:
    decision = last(
        register(rtype=RecipientType.AGENT), transfer(rtype=RecipientType.SUBCONTRACTOR)
    )
    assert_blocked(decision, R.RECIPIENT_NOT_REGISTERED)


def test_reregistration_replaces_permitted_purposes() -> None:
    decision = last(
        register(purposes=(Purpose.DATA_ANALYSIS,)),
        register(purposes=(Purpose.PAYMENT_PROCESSING,)),
        transfer(purpose=Purpose.DATA_ANALYSIS),
    )
    assert_blocked(decision, R.PURPOSE_NOT_PERMITTED)


def test_purpose_outside_the_processors_permitted_purposes_is_blocked() -> None:
    assert_blocked(
        last(register(), transfer(purpose=Purpose.PAYMENT_PROCESSING)), R.PURPOSE_NOT_PERMITTED
    )


def test_non_processor_purpose_is_blocked_even_if_registered_for_it() -> None:
    decision = last(
        register(purposes=(Purpose.FRAUD_PREVENTION,)), transfer(purpose=Purpose.FRAUD_PREVENTION)
    )
    assert_blocked(decision, R.PURPOSE_NOT_PERMITTED)


@pytest.mark.parametrize(
    ("rtype", "good"),
    [
        (RecipientType.BUSINESS_TRANSFER_COUNTERPARTY, Purpose.BUSINESS_TRANSFER),
        (RecipientType.FRAUD_PREVENTION_PARTNER, Purpose.FRAUD_PREVENTION),
        (RecipientType.THIRD_PARTY, Purpose.CONSENTED_SHARING),
        (RecipientType.LAW_ENFORCEMENT, Purpose.LEGAL_ORDER),
    ],
)
def test_each_non_processor_type_accepts_only_its_own_purpose(
    rtype: RecipientType, good: Purpose
) -> None:
    for purpose in Purpose:
        decision = last(
            transfer(rtype=rtype, purpose=purpose, transaction_ref="d", fraud_case_ref="c")
        )
        assert (R.PURPOSE_NOT_PERMITTED in decision.codes) is (purpose is not good), purpose


def test_business_transfer_without_transaction_ref_is_blocked() -> None:
    decision = last(
        transfer(
            rtype=RecipientType.BUSINESS_TRANSFER_COUNTERPARTY, purpose=Purpose.BUSINESS_TRANSFER
        )
    )
    assert pairs(decision) == [(R.TRANSACTION_REF_MISSING, Clause.BUSINESS_TRANSFER)]


def test_fraud_exchange_without_case_ref_is_blocked() -> None:
    decision = last(
        transfer(rtype=RecipientType.FRAUD_PREVENTION_PARTNER, purpose=Purpose.FRAUD_PREVENTION)
    )
    assert pairs(decision) == [(R.FRAUD_CASE_MISSING, Clause.FRAUD)]


# --- consent ----------------------------------------------------------------------------

PROMO = Purpose.PROMOTIONAL_OFFERS


def promo_registered() -> Event:
    return register(purposes=(PROMO,))


def test_promotional_offer_without_consent_is_blocked_consent_missing() -> None:
    decision = last(promo_registered(), transfer(purpose=PROMO))
    assert pairs(decision) == [(R.CONSENT_MISSING, Clause.MARKETING_CONSENT)]


def test_consent_given_after_the_transfer_occurred_does_not_count() -> None:
    decision = last(
        promo_registered(), consent(GRANTED, minutes=20), transfer(purpose=PROMO, minutes=10)
    )
    assert_blocked(decision, R.CONSENT_MISSING)


def test_consent_given_at_the_same_instant_counts() -> None:
    decision = last(
        promo_registered(), consent(GRANTED, minutes=10), transfer(purpose=PROMO, minutes=10)
    )
    assert decision.outcome is Outcome.ALLOW


def test_withdrawal_blocks_later_transfers() -> None:
    decision = last(
        promo_registered(),
        consent(GRANTED, minutes=1),
        consent(WITHDRAWN, minutes=5),
        transfer(purpose=PROMO, minutes=10),
    )
    assert pairs(decision) == [(R.CONSENT_WITHDRAWN, Clause.CONSENT_WITHDRAWAL)]


def test_withdrawal_processed_first_blocks_a_transfer_that_occurred_earlier() -> None:
    decision = last(
        promo_registered(),
        consent(GRANTED, minutes=1),
        consent(WITHDRAWN, minutes=30),
        transfer(purpose=PROMO, minutes=10),
    )
    assert_blocked(decision, R.CONSENT_WITHDRAWN)


def test_consent_given_again_after_withdrawal_allows_again() -> None:
    decision = last(
        promo_registered(),
        consent(GRANTED, minutes=1),
        consent(WITHDRAWN, minutes=2),
        consent(GRANTED, minutes=3),
        transfer(purpose=PROMO, minutes=10),
    )
    assert decision.outcome is Outcome.ALLOW


def test_renewed_consent_after_withdrawal_does_not_cover_the_gap() -> None:
    decision = last(
        promo_registered(),
        consent(GRANTED, minutes=1),
        consent(WITHDRAWN, minutes=2),
        consent(GRANTED, minutes=20),
        transfer(purpose=PROMO, minutes=10),
    )
    assert_blocked(decision, R.CONSENT_MISSING)


def test_repeated_grant_keeps_the_earlier_start() -> None:
    decision = last(
        promo_registered(),
        consent(GRANTED, minutes=1),
        consent(GRANTED, minutes=20),
        transfer(purpose=PROMO, minutes=10),
    )
    assert decision.outcome is Outcome.ALLOW


def test_marketing_consent_of_another_account_does_not_count() -> None:
    decision = last(promo_registered(), consent(GRANTED, account="acc-2"), transfer(purpose=PROMO))
    assert_blocked(decision, R.CONSENT_MISSING)


def test_third_party_consent_is_per_recipient() -> None:
    decision = last(
        consent(GRANTED, scope=ConsentScope.THIRD_PARTY_SHARING, recipient="tp-2"),
        transfer(
            rtype=RecipientType.THIRD_PARTY, recipient="tp-1", purpose=Purpose.CONSENTED_SHARING
        ),
    )
    assert pairs(decision) == [(R.CONSENT_MISSING, Clause.THIRD_PARTY_CONSENT)]


def test_third_party_consent_withdrawn_is_blocked_withdrawn() -> None:
    decision = last(
        consent(GRANTED, scope=ConsentScope.THIRD_PARTY_SHARING, recipient="tp-1"),
        consent(WITHDRAWN, scope=ConsentScope.THIRD_PARTY_SHARING, recipient="tp-1"),
        transfer(
            rtype=RecipientType.THIRD_PARTY, recipient="tp-1", purpose=Purpose.CONSENTED_SHARING
        ),
    )
    assert_blocked(decision, R.CONSENT_WITHDRAWN)


def test_marketing_consent_does_not_stand_in_for_third_party_consent() -> None:
    decision = last(
        consent(GRANTED),
        transfer(
            rtype=RecipientType.THIRD_PARTY, recipient="tp-1", purpose=Purpose.CONSENTED_SHARING
        ),
    )
    assert_blocked(decision, R.CONSENT_MISSING)


# --- data-subject rights and children ---------------------------------------------------


def test_restricted_account_is_blocked() -> None:
    decision = last(register(), rights(SubjectRightsAction.RESTRICTION_APPLIED), transfer())
    assert pairs(decision) == [(R.PROCESSING_RESTRICTED, Clause.RESTRICTION)]


def test_lifted_restriction_no_longer_blocks() -> None:
    decision = last(
        register(),
        rights(SubjectRightsAction.RESTRICTION_APPLIED),
        rights(SubjectRightsAction.RESTRICTION_LIFTED),
        transfer(),
    )
    assert decision.outcome is Outcome.ALLOW


def test_restriction_does_not_block_law_enforcement_with_a_valid_order() -> None:
    decision = last(
        order(), approve(), rights(SubjectRightsAction.RESTRICTION_APPLIED), le_transfer()
    )
    assert decision.outcome is Outcome.ALLOW


def test_restriction_blocks_law_enforcement_with_an_invalid_order() -> None:
    decision = last(order(), rights(SubjectRightsAction.RESTRICTION_APPLIED), le_transfer())
    assert_blocked(decision, R.ORDER_NOT_APPROVED, R.PROCESSING_RESTRICTED)


def test_erased_account_is_blocked_even_with_a_valid_order() -> None:
    decision = last(
        order(), approve(), rights(SubjectRightsAction.ERASURE_COMPLETED), le_transfer()
    )
    assert pairs(decision) == [(R.SUBJECT_ERASED, Clause.ERASURE)]


def test_erasure_is_not_undone_by_lifting_a_restriction() -> None:
    decision = last(
        register(),
        rights(SubjectRightsAction.ERASURE_COMPLETED),
        rights(SubjectRightsAction.RESTRICTION_LIFTED),
        transfer(),
    )
    assert_blocked(decision, R.SUBJECT_ERASED)


@pytest.mark.parametrize(("age", "blocked"), [(0, True), (12, True), (13, False), (None, False)])
def test_children_under_13_are_blocked(age: int | None, blocked: bool) -> None:
    decision = last(register(), transfer(subject_age=age))
    assert (decision.codes == (R.CHILD_DATA,)) is blocked
    if blocked:
        assert decision.reasons[0].clause is Clause.CHILDREN


def test_child_data_to_law_enforcement_with_a_valid_order_is_allowed() -> None:
    assert last(order(), approve(), le_transfer(subject_age=9)).outcome is Outcome.ALLOW


# --- several rules, default deny, idempotency --------------------------------------------


def test_every_blocking_rule_is_reported_in_contract_order() -> None:
    decision = last(
        rights(SubjectRightsAction.RESTRICTION_APPLIED),
        rights(SubjectRightsAction.ERASURE_COMPLETED),
        transfer(categories=PI_VDD, purpose=PROMO, subject_age=8),
    )
    assert pairs(decision) == [
        (R.VDD_EGRESS_FORBIDDEN, Clause.VDD_NO_SHARING),
        (R.RECIPIENT_NOT_REGISTERED, Clause.PROCESSOR_PURPOSE),
        (R.CONSENT_MISSING, Clause.MARKETING_CONSENT),
        (R.PROCESSING_RESTRICTED, Clause.RESTRICTION),
        (R.SUBJECT_ERASED, Clause.ERASURE),
        (R.CHILD_DATA, Clause.CHILDREN),
    ]


def test_a_repeated_event_id_gets_the_first_decision_even_if_state_changed() -> None:
    first = transfer(event_id="evt-same")
    decisions = decide_all([register(), first, deregister(), first])
    assert decisions[0].outcome is Outcome.ALLOW
    assert decisions[1] == decisions[0]


def test_a_redelivered_grant_does_not_undo_a_later_withdrawal() -> None:
    grant = consent(GRANTED, minutes=1, event_id="evt-grant")
    decision = last(
        promo_registered(),
        grant,
        consent(WITHDRAWN, minutes=2),
        grant,
        transfer(purpose=PROMO, minutes=10),
    )
    assert_blocked(decision, R.CONSENT_WITHDRAWN)
