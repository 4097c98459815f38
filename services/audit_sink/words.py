"""Plain words for the codes of the contract: what each reason code and clause means (pure).

The security console (``/console/``) and the one-decision detail (``GET /entries/{event_id}``)
show a reviewer each reason of a decision as a short sentence next to its code and clause,
so that "what happened and why" reads without the contract at hand. The texts are ours,
written for a reviewer; the authoritative rules are the contract's clause IDs
(``../shared/design/contract.md``) and the guard's engine.

:data:`CLAUSE_CODES` maps each clause to the reason codes the contract files under it (a
code may stand under two clauses: ``CONSENT_MISSING`` under the marketing or the third-party
consent clause, ``PROCESSOR`` also under the marketing clause for promotional offers). A
search by clause asks the store for these codes and then keeps the entries whose own
reasons name the clause (the leaf records the clause of every reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from sharing_guard.contract.enums import ALLOW_BASES, Clause, ReasonCode

__all__ = [
    "CLAUSE_CODES",
    "CLAUSE_WORDS",
    "REASON_WORDS",
    "clause_words",
    "codes_of_clause",
    "reason_words",
    "vocabulary",
]

REASON_WORDS: Final[Mapping[ReasonCode, str]] = MappingProxyType(
    {
        ReasonCode.VDD_EGRESS_FORBIDDEN: (
            "Blocked: the transfer carried files from a customer's Virtual Drive, which are "
            "never handed to anyone outside the company except under a valid legal order."
        ),
        ReasonCode.ORDER_MISSING: (
            "Blocked: the data was meant for an authority, but no legal order was referenced."
        ),
        ReasonCode.ORDER_UNKNOWN: (
            "Blocked: the legal order referenced was never registered with us."
        ),
        ReasonCode.ORDER_NOT_APPROVED: (
            "Blocked: the legal order had not yet been approved by a second officer."
        ),
        ReasonCode.ORDER_REVOKED: "Blocked: the legal order had been revoked.",
        ReasonCode.ORDER_NOT_IN_FORCE: (
            "Blocked: the transfer fell outside the dates during which the order is valid."
        ),
        ReasonCode.ORDER_JURISDICTION: (
            "Blocked: the order comes from a jurisdiction that has no say over this data."
        ),
        ReasonCode.ORDER_SCOPE_MISMATCH: (
            "Blocked: the account, the kind of data or the receiving authority is not the one "
            "the order names."
        ),
        ReasonCode.ORDER_QUOTA_EXHAUSTED: (
            "Blocked: the order's allowed number of disclosures had already been used up."
        ),
        ReasonCode.RECIPIENT_NOT_REGISTERED: (
            "Blocked: the receiving office, agent or subcontractor is not on our register of "
            "processors (or is registered as something else)."
        ),
        ReasonCode.PURPOSE_NOT_PERMITTED: (
            "Blocked: the stated purpose is not one this recipient may receive data for."
        ),
        ReasonCode.TRANSACTION_REF_MISSING: (
            "Blocked: a business-transfer disclosure named no transaction reference."
        ),
        ReasonCode.FRAUD_CASE_MISSING: (
            "Blocked: a fraud-prevention exchange named no fraud case reference."
        ),
        ReasonCode.CONSENT_MISSING: (
            "Blocked: the person had not agreed beforehand to this kind of sharing."
        ),
        ReasonCode.CONSENT_WITHDRAWN: (
            "Blocked: the person had taken back the consent this sharing relied on."
        ),
        ReasonCode.PROCESSING_RESTRICTED: (
            "Blocked: the person had asked for processing of their data to be restricted."
        ),
        ReasonCode.SUBJECT_ERASED: (
            "Blocked: the person's data had been erased and may not be sent anywhere again."
        ),
        ReasonCode.CHILD_DATA: "Blocked: the data belongs to a child younger than 13.",
        ReasonCode.NO_LEGAL_BASIS: (
            "Blocked: no rule forbade the transfer, but none allowed it either, so it stays "
            "refused."
        ),
        ReasonCode.GUARD_ERROR: (
            "Blocked: the guard could not reach a decision (an internal fault or missing "
            "state), so it refused to be safe."
        ),
        ReasonCode.ORDER: (
            "Allowed: disclosed to an authority under a registered, approved legal order in force."
        ),
        ReasonCode.PROCESSOR: (
            "Allowed: sent to a registered processor for a purpose it is contracted for."
        ),
        ReasonCode.BUSINESS_TRANSFER: (
            "Allowed: handed over as part of a business sale or merger with a transaction "
            "reference."
        ),
        ReasonCode.FRAUD_PREVENTION: (
            "Allowed: shared with a fraud-prevention partner for a named fraud case."
        ),
        ReasonCode.CONSENT: (
            "Allowed: shared with a third party the person had agreed to in advance."
        ),
    }
)
"""Every reason code in plain words (whether it blocked or allowed, then why)."""

CLAUSE_WORDS: Final[Mapping[Clause, str]] = MappingProxyType(
    {
        Clause.VDD_NO_SHARING: "Virtual Drive files stay with us: no partner ever gets them.",
        Clause.LAW_ENFORCEMENT: (
            "Authorities get data only when a proper court or administrative order obliges us."
        ),
        Clause.PROCESSOR_PURPOSE: (
            "Helpers working for us get only what their task needs, and use it for nothing else."
        ),
        Clause.MARKETING_CONSENT: (
            "Promotional offers go out only to people who opted in first; they can opt out."
        ),
        Clause.BUSINESS_TRANSFER: (
            "Customer data may move with the business when it is sold or merged."
        ),
        Clause.FRAUD: "Data may be exchanged when needed to fight fraud or credit risk.",
        Clause.THIRD_PARTY_CONSENT: (
            "Any other outside party gets data only after the person was told and agreed."
        ),
        Clause.CONSENT_WITHDRAWAL: "Once consent is taken back, sharing based on it stops.",
        Clause.RESTRICTION: "People may limit or object to how their data is processed.",
        Clause.ERASURE: "Data that was deleted on request is never shared again.",
        Clause.CHILDREN: "Data of children under 13 is not shared.",
        Clause.DEFAULT_DENY: "Whatever sharing the policy does not describe does not happen.",
    }
)
"""Every clause in plain words: what the policy promises there."""

CLAUSE_CODES: Final[Mapping[Clause, frozenset[ReasonCode]]] = MappingProxyType(
    {
        Clause.VDD_NO_SHARING: frozenset({ReasonCode.VDD_EGRESS_FORBIDDEN}),
        Clause.LAW_ENFORCEMENT: frozenset(
            {
                ReasonCode.ORDER_MISSING,
                ReasonCode.ORDER_UNKNOWN,
                ReasonCode.ORDER_NOT_APPROVED,
                ReasonCode.ORDER_REVOKED,
                ReasonCode.ORDER_NOT_IN_FORCE,
                ReasonCode.ORDER_JURISDICTION,
                ReasonCode.ORDER_SCOPE_MISMATCH,
                ReasonCode.ORDER_QUOTA_EXHAUSTED,
                ReasonCode.ORDER,
            }
        ),
        Clause.PROCESSOR_PURPOSE: frozenset(
            {
                ReasonCode.RECIPIENT_NOT_REGISTERED,
                ReasonCode.PURPOSE_NOT_PERMITTED,
                ReasonCode.PROCESSOR,
            }
        ),
        Clause.MARKETING_CONSENT: frozenset({ReasonCode.CONSENT_MISSING, ReasonCode.PROCESSOR}),
        Clause.BUSINESS_TRANSFER: frozenset(
            {ReasonCode.TRANSACTION_REF_MISSING, ReasonCode.BUSINESS_TRANSFER}
        ),
        Clause.FRAUD: frozenset({ReasonCode.FRAUD_CASE_MISSING, ReasonCode.FRAUD_PREVENTION}),
        Clause.THIRD_PARTY_CONSENT: frozenset({ReasonCode.CONSENT_MISSING, ReasonCode.CONSENT}),
        Clause.CONSENT_WITHDRAWAL: frozenset({ReasonCode.CONSENT_WITHDRAWN}),
        Clause.RESTRICTION: frozenset({ReasonCode.PROCESSING_RESTRICTED}),
        Clause.ERASURE: frozenset({ReasonCode.SUBJECT_ERASED}),
        Clause.CHILDREN: frozenset({ReasonCode.CHILD_DATA}),
        Clause.DEFAULT_DENY: frozenset({ReasonCode.NO_LEGAL_BASIS, ReasonCode.GUARD_ERROR}),
    }
)
"""The reason codes the contract files under each clause."""


def reason_words(code: str) -> str:
    """The plain text of a reason code; a code this version does not know says so."""
    try:
        return REASON_WORDS[ReasonCode(code)]
    except ValueError:
        return "A reason code this version of the console does not know."


def clause_words(clause: str) -> str:
    """The plain text of a clause; a clause this version does not know says so."""
    try:
        return CLAUSE_WORDS[Clause(clause)]
    except ValueError:
        return "A clause this version of the console does not know."


def codes_of_clause(clause: Clause) -> frozenset[ReasonCode]:
    """The reason codes that may stand under ``clause``."""
    return CLAUSE_CODES[clause]


def vocabulary() -> dict[str, object]:
    """Every code and clause with its words, for the console's search form (JSON-ready):
    codes in the contract's order, each with whether it allows and its clauses."""
    return {
        "reasons": [
            {
                "code": code.value,
                "allows": code in ALLOW_BASES,
                "clauses": [c.value for c in Clause if code in CLAUSE_CODES[c]],
                "text": REASON_WORDS[code],
            }
            for code in ReasonCode
        ],
        "clauses": [{"clause": c.value, "text": CLAUSE_WORDS[c]} for c in Clause],
    }
