"""The events internal services and governance workflows send (contract section 2).

Every model is frozen and rejects unknown fields, so a typo is a clear error rather than
a silently ignored field. ``type`` names the event in the JSON Lines form; on the wire the
Avro schema's name says it (see :mod:`sharing_guard.codec`).
"""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from sharing_guard.contract.enums import (
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderType,
    Purpose,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.contract.types import (
    AVRO_INT_MAX,
    AVRO_LONG_MAX,
    CountryCode,
    Identifier,
    Timestamp,
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventBase(_Model):
    """Fields every event carries."""

    event_id: Identifier
    occurred_at: Timestamp


class Recipient(_Model):
    """Who a transfer goes to."""

    id: Identifier
    type: RecipientType
    jurisdiction: CountryCode


class TransferRequested(EventBase):
    """An internal service asks to send data out; the guard decides it first."""

    type: Literal["TransferRequested"] = "TransferRequested"
    source_service: Identifier
    account_id: Identifier
    subject_age: Annotated[int, Field(ge=0, le=AVRO_INT_MAX)] | None = None
    data_categories: Annotated[tuple[DataCategory, ...], Field(min_length=1)]
    recipient: Recipient
    purpose: Purpose
    order_ref: Identifier | None = None
    fraud_case_ref: Identifier | None = None
    transaction_ref: Identifier | None = None
    payload_ref: Annotated[str, Field(max_length=2048)] | None = None
    size_bytes: Annotated[int, Field(ge=0, le=AVRO_LONG_MAX)] | None = None


class ConsentChanged(EventBase):
    """A data subject gave or withdrew a consent."""

    type: Literal["ConsentChanged"] = "ConsentChanged"
    account_id: Identifier
    scope: ConsentScope
    recipient_id: Identifier | None = None
    status: ConsentStatus

    @model_validator(mode="after")
    def _recipient_matches_scope(self) -> Self:
        if self.scope is ConsentScope.THIRD_PARTY_SHARING and self.recipient_id is None:
            raise ValueError("recipient_id is required when scope is THIRD_PARTY_SHARING")
        if self.scope is ConsentScope.MARKETING and self.recipient_id is not None:
            raise ValueError("recipient_id must be null when scope is MARKETING")
        return self


class RecipientRegistered(EventBase):
    """A recipient was registered with its agreement and permitted purposes."""

    type: Literal["RecipientRegistered"] = "RecipientRegistered"
    recipient_id: Identifier
    recipient_type: RecipientType
    jurisdiction: CountryCode
    permitted_purposes: tuple[Purpose, ...]
    agreement_ref: Identifier


class RecipientDeregistered(EventBase):
    """A recipient's registration ended."""

    type: Literal["RecipientDeregistered"] = "RecipientDeregistered"
    recipient_id: Identifier


class SubjectRightsChanged(EventBase):
    """A data subject exercised a right (erasure, restriction) on an account."""

    type: Literal["SubjectRightsChanged"] = "SubjectRightsChanged"
    account_id: Identifier
    action: SubjectRightsAction


class OrderRegistered(EventBase):
    """A legal officer registered a court or administrative order."""

    type: Literal["OrderRegistered"] = "OrderRegistered"
    order_ref: Identifier
    order_type: OrderType
    authority: Identifier
    jurisdiction: CountryCode
    recipient_id: Identifier
    account_ids: Annotated[tuple[Identifier, ...], Field(min_length=1)]
    data_categories: tuple[DataCategory, ...]
    valid_from: Timestamp
    valid_until: Timestamp
    max_disclosures: Annotated[int, Field(ge=1, le=AVRO_INT_MAX)] | None = None
    registered_by: Identifier

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class OrderApproved(EventBase):
    """An officer approved an order; it counts only if not the registering officer."""

    type: Literal["OrderApproved"] = "OrderApproved"
    order_ref: Identifier
    approved_by: Identifier


class OrderRevoked(EventBase):
    """An order was revoked; no transfer may rely on it afterwards."""

    type: Literal["OrderRevoked"] = "OrderRevoked"
    order_ref: Identifier
    revoked_by: Identifier
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


GovernanceEvent = (
    ConsentChanged
    | RecipientRegistered
    | RecipientDeregistered
    | SubjectRightsChanged
    | OrderRegistered
    | OrderApproved
    | OrderRevoked
)
"""Events that change what the guard knows, as opposed to asking for a decision."""

Event = TransferRequested | GovernanceEvent
"""Any event of the contract."""

EVENT_TYPES: dict[str, type[EventBase]] = {
    model.__name__: model
    for model in (
        TransferRequested,
        ConsentChanged,
        RecipientRegistered,
        RecipientDeregistered,
        SubjectRightsChanged,
        OrderRegistered,
        OrderApproved,
        OrderRevoked,
    )
}
"""Each event model by its contract name (the JSON ``type`` and the Avro record name)."""

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="type")])


def parse_event_json(data: str | bytes) -> Event:
    """Parse one event in the contract's JSON form (with its ``type`` field).

    Raises :class:`pydantic.ValidationError` naming every field that is wrong.
    """
    return _EVENT_ADAPTER.validate_json(data)
