"""The HTTP API's request and response bodies (they make its OpenAPI description).

Requests reject unknown fields: an officer's name is never taken from a body (the
service sets ``registered_by``/``approved_by``/``revoked_by`` from the token), so a body
that tries is refused rather than silently ignored. Every id a person types follows the
identifier policy (:mod:`sharing_guard.edge.identifiers`), and a validity window must
have a length (that it has not ended is checked by the service, which has the clock).
"""

from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from sharing_guard.contract.enums import DataCategory, OrderType
from sharing_guard.contract.types import AVRO_INT_MAX, CountryCode, Timestamp
from sharing_guard.edge.identifiers import Authority, NamedId, OrderRef, named_id
from sharing_guard.orders.auth import Action, Role
from sharing_guard.orders.model import Disclosure, OrderRecord, OrderStatus, remaining, status


def _visible_text(text: str) -> str:
    """Free text (a reason): lines of printable characters, nothing hidden or invisible."""
    for position, char in enumerate(text, 1):
        if char not in "\n\t" and not char.isprintable():
            raise ValueError(
                "the reason holds an invisible or control character "
                f"(U+{ord(char):04X}) at {position}"
            )
    return text


def _named_ids(ids: tuple[str, ...]) -> tuple[str, ...]:
    """Each account id checked by the policy; the error names the first bad one's position
    (one error, where per-item errors would also report the list as too short)."""
    for number, account_id in enumerate(ids, 1):
        try:
            named_id(account_id)
        except ValueError as exc:
            raise ValueError(f"account id {number}: {exc}") from None
    return ids


def _json_integer(value: object) -> object:
    """A JSON integer (``2`` or ``2.0``); a quota of ``"2"`` or ``true`` is a mistake to
    name, not a number to guess."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer, not a string or a boolean")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


NO_LENGTH = "the validity window has no length: valid_until must be later than valid_from"
ENDED = "the validity window has ended: valid_until must be later than now"


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegisterOrder(_Request):
    """An order as the authority issued it; ``order_ref`` defaults to a new id."""

    order_ref: OrderRef | None = Field(
        default=None, description="The order's reference (e.g. the court's case number)."
    )
    order_type: OrderType
    authority: Authority = Field(description="The issuing court or administrative body.")
    jurisdiction: CountryCode
    recipient_id: NamedId = Field(description="The receiving agency's recipient id.")
    account_ids: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=256)], ...],
        Field(min_length=1, max_length=10_000),
        AfterValidator(_named_ids),
    ]
    data_categories: Annotated[tuple[DataCategory, ...], Field(min_length=1, max_length=2)]
    valid_from: Timestamp
    valid_until: Timestamp
    max_disclosures: (
        Annotated[int, Field(ge=1, le=AVRO_INT_MAX), BeforeValidator(_json_integer)] | None
    ) = Field(default=None, description="Most transfers allowed under the order; null: no limit.")

    @model_validator(mode="after")
    def _window_has_a_length(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError(NO_LENGTH)
        return self


class ListQuery(_Request):
    """The filter of a listing; an unknown parameter (a typo) is refused, not ignored."""

    state: OrderStatus | None = Field(default=None, description="Only orders in this state.")


class RevokeOrder(_Request):
    """Why an order is revoked."""

    reason: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_visible_text)]


class DisclosureOut(BaseModel):
    """A transfer the guard allowed under the order."""

    event_id: str
    decided_at: datetime


class OrderOut(BaseModel):
    """An order, its state now and what was disclosed under it."""

    order_ref: str
    state: OrderStatus
    order_type: OrderType
    authority: str
    jurisdiction: str
    recipient_id: str
    account_ids: list[str]
    data_categories: list[DataCategory]
    valid_from: datetime
    valid_until: datetime
    max_disclosures: int | None
    registered_by: str
    registered_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    revoked_by: str | None
    revoked_at: datetime | None
    revoke_reason: str | None
    disclosure_count: int = Field(description="Transfers the guard allowed under the order.")
    remaining_disclosures: int | None = Field(description="null: the order has no limit.")
    refused_count: int = Field(description="Transfers naming the order that the guard refused.")
    disclosures: list[DisclosureOut] | None = Field(
        default=None, description="Each disclosure (only when showing one order)."
    )

    @classmethod
    def of(
        cls,
        record: OrderRecord,
        counts: tuple[int, int],
        now: datetime,
        disclosures: list[Disclosure] | None = None,
    ) -> "OrderOut":
        """The view of ``record`` at ``now`` with (allowed, refused) ``counts``."""
        order = record.registration
        allowed, refused = counts
        return cls(
            order_ref=order.order_ref,
            state=status(record, allowed, now),
            order_type=order.order_type,
            authority=order.authority,
            jurisdiction=order.jurisdiction,
            recipient_id=order.recipient_id,
            account_ids=list(order.account_ids),
            data_categories=list(order.data_categories),
            valid_from=order.valid_from,
            valid_until=order.valid_until,
            max_disclosures=order.max_disclosures,
            registered_by=order.registered_by,
            registered_at=order.occurred_at,
            approved_by=record.approved_by,
            approved_at=record.approved_at,
            revoked_by=record.revoked_by,
            revoked_at=record.revoked_at,
            revoke_reason=record.revoke_reason,
            disclosure_count=allowed,
            remaining_disclosures=remaining(record, allowed),
            refused_count=refused,
            disclosures=None
            if disclosures is None
            else [DisclosureOut(event_id=d.event_id, decided_at=d.decided_at) for d in disclosures],
        )


class OfficerOut(BaseModel):
    """The signed-in officer, as their token says (``GET /me``: the console shows it)."""

    officer_id: str
    role: Role
    actions: list[Action] = Field(description="What the role may do with orders.")


class Problem(BaseModel):
    """An error: what went wrong, for a person."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A request with invalid fields: every one of them."""

    detail: list[FieldProblem]
