"""What-if: the rules of a candidate policy that differ from the baseline, and which of them a
reviewer is shown as the reason a group of decisions changes (``sharing_guard.whatif.rules``)."""

from importlib import resources

import pytest
from sharing_guard.contract import ReasonCode, RecipientType
from sharing_guard.core.policy import Policy, parse_policy
from sharing_guard.whatif.rules import explain_change, policy_changes

R, T = ReasonCode, RecipientType
BUNDLED_TEXT = (resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8")
BASELINE = parse_policy(BUNDLED_TEXT)


def variant(*edits: tuple[str, str]) -> Policy:
    """The bundled policy with each ``(old, new)`` text replaced (each must occur)."""
    text = BUNDLED_TEXT
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return parse_policy(text)


AGE_16 = ("child_age_limit = 13", "child_age_limit = 16")
PLUS_DE = ('appropriate_jurisdictions = ["CH"]', 'appropriate_jurisdictions = ["CH", "DE"]')
AGENT_RULE = '[recipient_types.AGENT]\nbasis = "PROCESSOR"\npurposes = "processor_purposes"'


def texts(baseline: Policy, candidate: Policy) -> list[str]:
    return [change.text for change in policy_changes(baseline, candidate)]


def test_the_same_policy_has_no_changes() -> None:
    assert policy_changes(BASELINE, BASELINE) == []
    assert policy_changes(BASELINE, parse_policy("# a comment\n" + BUNDLED_TEXT)) == []


def test_scalar_and_set_changes_read_as_before_and_after() -> None:
    assert texts(BASELINE, variant(AGE_16)) == ["child_age_limit: 13 -> 16"]
    assert texts(BASELINE, variant(PLUS_DE)) == ["appropriate_jurisdictions: + DE"]
    swapped = variant(('appropriate_jurisdictions = ["CH"]', 'appropriate_jurisdictions = ["LI"]'))
    assert texts(BASELINE, swapped) == ["appropriate_jurisdictions: + LI, - CH"]


def test_a_purpose_added_to_one_processor_type_names_that_type() -> None:
    explicit = (
        AGENT_RULE,
        '[recipient_types.AGENT]\nbasis = "PROCESSOR"\n'
        'purposes = ["DOCUMENT_PROCESSING", "PAYMENT_PROCESSING"]',
    )
    narrow = variant(explicit)
    wider = variant(
        (
            AGENT_RULE,
            '[recipient_types.AGENT]\nbasis = "PROCESSOR"\n'
            'purposes = ["DOCUMENT_PROCESSING", "PAYMENT_PROCESSING", "DATA_ANALYSIS"]',
        )
    )

    assert texts(narrow, wider) == ["recipient_types.AGENT.purposes: + DATA_ANALYSIS"]


def test_a_change_of_the_processor_purposes_is_named_once_for_the_types_that_follow_it() -> None:
    fewer = variant(('  "DATA_ANALYSIS",\n', ""))

    changes = policy_changes(BASELINE, fewer)

    assert [c.text for c in changes] == ["processor_purposes: - DATA_ANALYSIS"]
    assert changes[0].types == {T.ASSOCIATE_OFFICE, T.AGENT, T.SUBCONTRACTOR}


def test_registration_basis_and_wording_changes() -> None:
    candidate = variant(
        (
            AGENT_RULE + "\nregistration_required = true",
            AGENT_RULE + "\nregistration_required = false",
        ),
        ('[recipient_types.THIRD_PARTY]\nbasis = "CONSENT"\n', "[recipient_types.THIRD_PARTY]\n"),
        ("Information about children under 13", "Information about children under 16"),
    )

    assert texts(BASELINE, candidate) == [
        "recipient_types.AGENT.registration_required: true -> false",
        "recipient_types.THIRD_PARTY.basis: CONSENT -> none",
        "clauses.C-CHILDREN: text changed",
    ]


def test_a_child_age_flip_is_explained_by_the_age_limit() -> None:
    why = explain_change(
        policy_changes(BASELINE, variant(AGE_16, PLUS_DE)),
        [R.PROCESSOR],
        [R.CHILD_DATA],
        [T.AGENT],
    )

    assert why.rules == ("child_age_limit: 13 -> 16",)
    assert why.notes == ()


def test_an_order_now_valid_is_explained_by_the_jurisdictions_with_its_exemptions() -> None:
    changes = policy_changes(BASELINE, variant(PLUS_DE))

    allowed = explain_change(
        changes, [R.ORDER_JURISDICTION, R.CHILD_DATA], [R.ORDER], [T.LAW_ENFORCEMENT]
    )
    exhausted = explain_change(
        changes, [R.ORDER_JURISDICTION], [R.ORDER_QUOTA_EXHAUSTED], [T.LAW_ENFORCEMENT]
    )
    spent = explain_change(changes, [R.ORDER], [R.ORDER_QUOTA_EXHAUSTED], [T.LAW_ENFORCEMENT])

    assert allowed.rules == ("appropriate_jurisdictions: + DE",)
    assert allowed.notes == (
        "CHILD_DATA: follows from the order's validity (a valid order exempts a "
        "law-enforcement transfer from it)",
    )
    assert exhausted.rules == ("appropriate_jurisdictions: + DE",)
    assert exhausted.notes[0].startswith("ORDER_QUOTA_EXHAUSTED: no rule of its own")
    assert spent.rules == ()
    assert spent.notes[0].startswith("ORDER_QUOTA_EXHAUSTED: no rule of its own")


def test_rules_of_other_recipient_types_are_not_blamed() -> None:
    changes = policy_changes(BASELINE, variant(PLUS_DE, AGE_16))

    why = explain_change(changes, [R.PROCESSOR], [R.CHILD_DATA], [T.SUBCONTRACTOR])
    # The jurisdictions decide only law-enforcement transfers; without an order the age
    # limit alone explains a child block, even to an authority.
    assert why.rules == ("child_age_limit: 13 -> 16",)
    no_order = explain_change(
        changes, [R.ORDER_MISSING], [R.ORDER_MISSING, R.CHILD_DATA], [T.LAW_ENFORCEMENT]
    )
    assert no_order.rules == ("child_age_limit: 13 -> 16",)


@pytest.mark.parametrize(
    ("edit", "old", "new", "rtype", "rule"),
    [
        (
            (
                '[recipient_types.THIRD_PARTY]\nbasis = "CONSENT"\n',
                "[recipient_types.THIRD_PARTY]\n",
            ),
            [R.CONSENT],
            [R.NO_LEGAL_BASIS],
            T.THIRD_PARTY,
            "recipient_types.THIRD_PARTY.basis: CONSENT -> none",
        ),
        (
            (
                AGENT_RULE + "\nregistration_required = true",
                AGENT_RULE + "\nregistration_required = false",
            ),
            [R.RECIPIENT_NOT_REGISTERED],
            [R.PROCESSOR],
            T.AGENT,
            "recipient_types.AGENT.registration_required: true -> false",
        ),
        (
            ('  "DATA_ANALYSIS",\n', ""),
            [R.PROCESSOR],
            [R.PURPOSE_NOT_PERMITTED],
            T.SUBCONTRACTOR,
            "processor_purposes: - DATA_ANALYSIS",
        ),
    ],
)
def test_each_rule_explains_the_codes_it_decides(
    edit: tuple[str, str],
    old: list[ReasonCode],
    new: list[ReasonCode],
    rtype: RecipientType,
    rule: str,
) -> None:
    why = explain_change(policy_changes(BASELINE, variant(edit)), old, new, [rtype])

    assert why.rules == (rule,)
    assert why.notes == ()


def test_a_difference_no_rule_explains_says_so_and_names_other_recorded_versions() -> None:
    changes = policy_changes(BASELINE, variant(AGE_16))

    plain = explain_change(changes, [R.CONSENT_MISSING], [R.CONSENT], [T.THIRD_PARTY])
    recorded = explain_change(
        changes, [R.CONSENT_MISSING], [R.CONSENT], [T.THIRD_PARTY], other_versions={"old@1"}
    )

    assert plain.rules == ()
    assert plain.notes == ("CONSENT_MISSING: no rule of the candidate differs for it",)
    assert recorded.notes == (
        "CONSENT_MISSING: no rule of the baseline file differs for it; the recorded "
        "decisions were made under old@1",
    )
