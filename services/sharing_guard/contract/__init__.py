"""The event contract: enums, event models, the decision and the audit record.

These pydantic models mirror the Avro schemas in ``schemas/avro/`` field for field;
``tests/unit/test_schema_drift.py`` fails on any difference between the two.
"""

from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.decision import Decision, Outcome, Reason
from sharing_guard.contract.enums import (
    Clause,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderType,
    Purpose,
    ReasonCode,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.contract.events import (
    EVENT_TYPES,
    ConsentChanged,
    Event,
    GovernanceEvent,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    Recipient,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
    parse_event_json,
)

__all__ = [
    "EVENT_TYPES",
    "AuditKind",
    "AuditRecord",
    "Clause",
    "ConsentChanged",
    "ConsentScope",
    "ConsentStatus",
    "DataCategory",
    "Decision",
    "Event",
    "GovernanceEvent",
    "OrderApproved",
    "OrderRegistered",
    "OrderRevoked",
    "OrderType",
    "Outcome",
    "Purpose",
    "Reason",
    "ReasonCode",
    "Recipient",
    "RecipientDeregistered",
    "RecipientRegistered",
    "RecipientType",
    "SubjectRightsAction",
    "SubjectRightsChanged",
    "TransferRequested",
    "parse_event_json",
]
