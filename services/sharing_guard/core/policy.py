"""The policy document: parsed and validated from text, versioned by its content.

Parsing takes the document's text, not a path: reading the file is the caller's job
(see :mod:`sharing_guard.policy_file`).
"""

import hashlib
import json
import tomllib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sharing_guard.contract.enums import ALLOW_BASES, Clause, Purpose, ReasonCode, RecipientType
from sharing_guard.contract.policy_events import PolicyPromoted


class PolicyError(ValueError):
    """The policy document is not valid; the message names what is wrong."""


class RecipientRule(BaseModel):
    """What one recipient type may receive, and on which basis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    basis: ReasonCode | None = None
    purposes: frozenset[Purpose] | Literal["processor_purposes"]
    registration_required: bool = False


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    source_revision: str
    appropriate_jurisdictions: frozenset[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]]
    child_age_limit: Annotated[int, Field(ge=0, le=150)]
    processor_purposes: frozenset[Purpose]
    recipient_types: dict[RecipientType, RecipientRule]
    clauses: dict[Clause, Annotated[str, Field(min_length=1)]]
    codes: dict[ReasonCode, Annotated[str, Field(min_length=1)]]

    @model_validator(mode="after")
    def _complete(self) -> "_Document":
        missing = [
            *(f"recipient_types.{t}" for t in RecipientType if t not in self.recipient_types),
            *(f"clauses.{c}" for c in Clause if c not in self.clauses),
            *(f"codes.{c}" for c in ReasonCode if c not in self.codes),
        ]
        if missing:
            raise ValueError("missing entries: " + ", ".join(missing))
        for rtype, rule in self.recipient_types.items():
            if rule.basis is not None and rule.basis not in ALLOW_BASES:
                raise ValueError(
                    f"recipient_types.{rtype}.basis {rule.basis} is not an allow basis"
                )
        return self


class Policy(BaseModel):
    """The policy the engine applies, with the version every decision carries."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    appropriate_jurisdictions: frozenset[str]
    child_age_limit: int
    processor_purposes: frozenset[Purpose]
    purposes_by_type: dict[RecipientType, frozenset[Purpose]]
    basis_by_type: dict[RecipientType, ReasonCode | None]
    registration_required: frozenset[RecipientType]
    clause_texts: dict[Clause, str]
    code_texts: dict[ReasonCode, str]


def parse_policy(text: str) -> Policy:
    """Parse and validate a policy document (TOML).

    ``version`` is ``<name>@<first 16 hex digits of SHA-256>`` over the document's parsed
    content in canonical JSON, so comments and formatting do not change it but any rule
    or wording does. Raises :class:`PolicyError` with every problem found.
    """
    try:
        raw = tomllib.loads(text)
        doc = _Document.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<document>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise PolicyError(f"policy is invalid: {problems}") from exc
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Policy(
        name=doc.name,
        version=f"{doc.name}@{digest}",
        appropriate_jurisdictions=doc.appropriate_jurisdictions,
        child_age_limit=doc.child_age_limit,
        processor_purposes=doc.processor_purposes,
        purposes_by_type={
            rtype: doc.processor_purposes
            if rule.purposes == "processor_purposes"
            else rule.purposes
            for rtype, rule in doc.recipient_types.items()
        },
        basis_by_type={rtype: rule.basis for rtype, rule in doc.recipient_types.items()},
        registration_required=frozenset(
            rtype for rtype, rule in doc.recipient_types.items() if rule.registration_required
        ),
        clause_texts=dict(doc.clauses),
        code_texts=dict(doc.codes),
    )


def check_promotion(event: PolicyPromoted) -> Policy:
    """The policy a promotion carries, or :class:`PolicyError` saying why it is refused
    (the document is invalid, or does not hash to the version or name it claims)."""
    policy = parse_policy(event.document)
    if policy.version != event.version:
        raise PolicyError(
            f"the document's version is {policy.version}, the promotion claims {event.version}"
        )
    if policy.name != event.policy_name:
        raise PolicyError(f"the document is named {policy.name}, not {event.policy_name}")
    return policy
