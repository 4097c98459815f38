"""The console's plain words: every reason code and clause of the contract has its text."""

from __future__ import annotations

from audit_sink.words import (
    CLAUSE_CODES,
    CLAUSE_WORDS,
    REASON_WORDS,
    clause_words,
    reason_words,
    vocabulary,
)
from sharing_guard.contract.enums import ALLOW_BASES, Clause, ReasonCode


def test_every_reason_code_and_clause_has_a_short_text_of_its_own() -> None:
    assert set(REASON_WORDS) == set(ReasonCode)
    assert set(CLAUSE_WORDS) == set(Clause)
    texts = [*REASON_WORDS.values(), *CLAUSE_WORDS.values()]
    assert len(set(texts)) == len(texts)
    for text in texts:
        assert 10 < len(text) <= 200, text
        assert text[0].isupper(), text
        assert text.endswith("."), text


def test_a_reason_says_whether_it_allowed_or_blocked() -> None:
    for code, text in REASON_WORDS.items():
        assert text.startswith("Allowed:" if code in ALLOW_BASES else "Blocked:"), code


def test_every_code_stands_under_at_least_one_clause_and_every_clause_has_codes() -> None:
    assert set(CLAUSE_CODES) == set(Clause)
    filed = {code for codes in CLAUSE_CODES.values() for code in codes}
    assert filed == set(ReasonCode)
    assert ReasonCode.VDD_EGRESS_FORBIDDEN in CLAUSE_CODES[Clause.VDD_NO_SHARING]
    assert CLAUSE_CODES[Clause.ERASURE] == {ReasonCode.SUBJECT_ERASED}


def test_unknown_codes_get_a_text_that_says_so() -> None:
    assert "does not know" in reason_words("NOT_A_CODE")
    assert "does not know" in clause_words("C-NOPE")
    assert reason_words("CHILD_DATA") == REASON_WORDS[ReasonCode.CHILD_DATA]


def test_the_vocabulary_lists_codes_in_the_contract_order() -> None:
    words = vocabulary()
    reasons = words["reasons"]
    assert isinstance(reasons, list)
    assert [r["code"] for r in reasons] == [c.value for c in ReasonCode]
    consent = next(r for r in reasons if r["code"] == "CONSENT_MISSING")
    assert consent["clauses"] == ["C-MARKETING-CONSENT", "C-THIRD-PARTY-CONSENT"]
    assert consent["allows"] is False
