"""The pydantic contract models and the Avro schemas in ``schemas/avro/`` never drift apart.

A generic checker walks a model and its schema side by side and reports every difference in
either direction: a field on one side only, a different type, a different nullability, a
different default, a different enum symbol. The checker is itself tested on deliberately
broken copies, so the drift tests cannot pass by checking nothing. Finally, the enum values
are checked against the names the contract (``shared/design/contract.md``) fixes.

Type mapping (Avro -> Python):

- ``string`` -> ``str`` (``Reason.clause`` is the one documented exception, see below)
- ``int`` / ``long`` -> ``int`` whose upper bound is exactly the Avro type's maximum, so the
  bound says which width the field has and a value Python accepts always fits on the wire
- ``long`` with ``logicalType: timestamp-millis`` -> ``datetime``
- ``array`` -> ``tuple[T, ...]``; ``record`` -> a pydantic model; ``enum`` -> a ``StrEnum``
- ``["null", T]`` with ``default: null`` -> ``T | None = None``
"""

import copy
import re
import types
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import AwareDatetime, BaseModel, Field, create_model
from pydantic.fields import FieldInfo
from sharing_guard.codec import load_avro_schema, schema_dir
from sharing_guard.contract import (
    EVENT_TYPES,
    AuditRecord,
    Clause,
    ConsentChanged,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Decision,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    OrderType,
    Outcome,
    Purpose,
    Reason,
    ReasonCode,
    Recipient,
    RecipientDeregistered,
    RecipientRegistered,
    RecipientType,
    SubjectRightsAction,
    SubjectRightsChanged,
    TransferRequested,
)
from sharing_guard.contract import audit as audit_module
from sharing_guard.contract import enums as enums_module
from sharing_guard.contract.enums import ALLOW_BASES
from sharing_guard.contract.policy_events import PolicyPromoted

REPO_SCHEMAS = Path(__file__).parents[2] / "schemas" / "avro"
NAMESPACE = "sharing."

AVRO_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}

AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What the Avro specification allows as an enum symbol."""

STRING_ENUM_FIELDS: Mapping[tuple[str, str], type[StrEnum]] = {("Reason", "clause"): Clause}
"""Fields that are an Avro ``string`` on the wire but a ``StrEnum`` in Python.

``Reason.clause`` carries the contract's clause IDs (``C-VDD-NO-SHARING``...), whose hyphens
Avro does not allow in enum symbols; see
``test_clause_ids_cannot_be_avro_enum_symbols_so_reason_clause_is_a_string``.
"""

MODELS: tuple[type[BaseModel], ...] = (
    TransferRequested,
    ConsentChanged,
    RecipientRegistered,
    RecipientDeregistered,
    SubjectRightsChanged,
    OrderRegistered,
    OrderApproved,
    OrderRevoked,
    PolicyPromoted,
    Recipient,
    Decision,
    Reason,
    AuditRecord,
)


def _module_str_enums(*modules: types.ModuleType) -> tuple[type[StrEnum], ...]:
    return tuple(
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, StrEnum)
        and value is not StrEnum
        and value.__module__ == module.__name__
    )


ENUMS = _module_str_enums(enums_module, audit_module)
"""Every StrEnum of the contract modules."""

ENUMS_WITH_SCHEMA = tuple(enum for enum in ENUMS if enum is not Clause)


# --- the checker -----------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` layers; return the bare type and all constraint metadata."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for item in extra:
            metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return annotation, metadata


def _split_nullable(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == len(args) - 1 and len(rest) == 1:
            return rest[0], True
    return annotation, False


def _int_bounds(metadata: list[Any]) -> tuple[int | None, int | None]:
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = int(item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = int(item.gt) + 1
        elif isinstance(item, annotated_types.Le):
            high = int(item.le)
        elif isinstance(item, annotated_types.Lt):
            high = int(item.lt) - 1
    return low, high


def _short(name: str) -> str:
    return name.removeprefix(NAMESPACE)


class DriftChecker:
    """Compares pydantic models and StrEnums with parsed Avro schemas.

    Every ``check_*`` method returns the list of differences found, each naming the path
    of the field concerned (``TransferRequested.recipient.jurisdiction``); empty means
    no drift.
    """

    def __init__(self, string_enums: Mapping[tuple[str, str], type[StrEnum]]) -> None:
        self.string_enums = string_enums

    def check_enum(self, enum: type[Enum], schema: Any, path: str) -> list[str]:
        if not isinstance(schema, dict) or schema.get("type") != "enum":
            return [f"{path}: Python has enum {enum.__name__}, Avro has {schema!r}"]
        problems = []
        if _short(schema["name"]) != enum.__name__:
            problems.append(f"{path}: enum {enum.__name__} vs Avro enum {schema['name']}")
        values = [member.value for member in enum]
        if values != list(schema["symbols"]):
            only_py = sorted(set(values) - set(schema["symbols"]))
            only_avro = sorted(set(schema["symbols"]) - set(values))
            problems.append(
                f"{path}: enum {enum.__name__} symbols differ: only in Python {only_py}, "
                f"only in Avro {only_avro}, Python order {values}, Avro {schema['symbols']}"
            )
        return problems

    def check_model(
        self, model: type[BaseModel], schema: Any, path: str | None = None
    ) -> list[str]:
        path = path or model.__name__
        if not isinstance(schema, dict) or schema.get("type") != "record":
            return [f"{path}: Python has model {model.__name__}, Avro has {schema!r}"]
        named = schema.get("__named_schemas", {})
        problems = []
        if _short(schema["name"]) != model.__name__:
            problems.append(f"{path}: model {model.__name__} vs Avro record {schema['name']}")
        py_fields = {
            name: info
            for name, info in model.model_fields.items()
            if not self._is_json_type_tag(model, name, info)
        }
        avro_fields = {field["name"]: field for field in schema["fields"]}
        problems += [
            f"{path}.{name}: in the model, missing in the Avro schema"
            for name in sorted(py_fields.keys() - avro_fields.keys())
        ]
        problems += [
            f"{path}.{name}: in the Avro schema, missing in the model"
            for name in sorted(avro_fields.keys() - py_fields.keys())
        ]
        for name in sorted(py_fields.keys() & avro_fields.keys()):
            info, field = py_fields[name], avro_fields[name]
            problems += self._check_type(
                info.annotation,
                field["type"],
                f"{path}.{name}",
                named=named,
                owner=(model.__name__, name),
                metadata=list(info.metadata),
            )
            problems += self._check_default(info, field, f"{path}.{name}")
        return problems

    @staticmethod
    def _is_json_type_tag(model: type[BaseModel], name: str, info: FieldInfo) -> bool:
        """The JSON-only ``type: Literal["<EventName>"]`` field of event models."""
        return (
            name == "type"
            and get_origin(info.annotation) is Literal
            and get_args(info.annotation) == (model.__name__,)
        )

    def _check_type(
        self,
        annotation: Any,
        avro: Any,
        path: str,
        *,
        named: Mapping[str, Any],
        owner: tuple[str, str] | None = None,
        metadata: list[Any] | None = None,
    ) -> list[str]:
        if isinstance(avro, str) and avro in named:
            avro = named[avro]
        annotation, outer_metadata = _unwrap(annotation)
        metadata = (metadata or []) + outer_metadata
        inner, py_nullable = _split_nullable(annotation)
        avro_nullable = isinstance(avro, list)
        if avro_nullable:
            if len(avro) != 2 or avro[0] != "null":
                return [f"{path}: Avro union {avro!r} is not ['null', T]"]
            avro = avro[1]
            if isinstance(avro, str) and avro in named:
                avro = named[avro]
        if py_nullable != avro_nullable:
            return [
                f"{path}: nullability differs: Python "
                f"{'nullable' if py_nullable else 'required'}, Avro "
                f"{'nullable' if avro_nullable else 'required'}"
            ]
        inner, inner_metadata = _unwrap(inner)
        metadata = metadata + inner_metadata
        return self._check_plain_type(
            inner, avro, path, metadata=metadata, named=named, owner=owner
        )

    def _check_plain_type(
        self,
        py: Any,
        avro: Any,
        path: str,
        *,
        metadata: list[Any],
        named: Mapping[str, Any],
        owner: tuple[str, str] | None,
    ) -> list[str]:
        avro_type = avro.get("type") if isinstance(avro, dict) else avro
        logical = avro.get("logicalType") if isinstance(avro, dict) else None
        if isinstance(py, type) and issubclass(py, StrEnum):
            if avro_type == "string" and logical is None:
                if owner is not None and self.string_enums.get(owner) is py:
                    return []
                return [f"{path}: Python enum {py.__name__}, Avro string"]
            return self.check_enum(py, avro, path)
        if py is str:
            if avro_type == "string" and logical is None:
                return []
            return [f"{path}: Python str, Avro {avro!r}"]
        if py is int:
            if avro_type not in AVRO_RANGES or logical is not None:
                return [f"{path}: Python int, Avro {avro!r}"]
            avro_low, avro_high = AVRO_RANGES[avro_type]
            low, high = _int_bounds(metadata)
            if high != avro_high or low is None or low < avro_low:
                return [
                    f"{path}: Python int bounds [{low}, {high}] do not name Avro {avro_type} "
                    f"(upper bound must be {avro_high}, lower bound at least {avro_low})"
                ]
            return []
        if py is AwareDatetime or (isinstance(py, type) and issubclass(py, datetime)):
            if avro_type == "long" and logical == "timestamp-millis":
                return []
            return [f"{path}: Python datetime, Avro {avro!r} (expected timestamp-millis)"]
        if get_origin(py) is tuple:
            args = get_args(py)
            if len(args) != 2 or args[1] is not Ellipsis:
                return [f"{path}: Python {py!r} is not a homogeneous tuple[T, ...]"]
            if avro_type != "array":
                return [f"{path}: Python tuple, Avro {avro!r}"]
            return self._check_type(args[0], avro["items"], f"{path}[]", named=named)
        if isinstance(py, type) and issubclass(py, BaseModel):
            if isinstance(avro, dict):
                avro = {**avro, "__named_schemas": named}
            return self.check_model(py, avro, path)
        return [f"{path}: no Avro mapping for Python type {py!r} (Avro {avro!r})"]

    @staticmethod
    def _check_default(info: FieldInfo, field: Mapping[str, Any], path: str) -> list[str]:
        py_has_default = not info.is_required()
        avro_has_default = "default" in field
        if py_has_default != avro_has_default:
            return [
                f"{path}: default only in {'Python' if py_has_default else 'Avro'} "
                f"({info.default!r} vs {field.get('default')!r})"
            ]
        if not py_has_default:
            return []
        py_default = info.default
        if isinstance(py_default, tuple):
            py_default = [item.value if isinstance(item, Enum) else item for item in py_default]
        elif isinstance(py_default, Enum):
            py_default = py_default.value
        if py_default != field["default"]:
            return [f"{path}: default {info.default!r} vs Avro default {field['default']!r}"]
        return []


CHECKER = DriftChecker(STRING_ENUM_FIELDS)


# --- the models and enums against the schemas ------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_model_matches_its_avro_schema(model: type[BaseModel]) -> None:
    assert CHECKER.check_model(model, load_avro_schema(model.__name__)) == []


@pytest.mark.parametrize("enum", ENUMS_WITH_SCHEMA, ids=lambda enum: enum.__name__)
def test_enum_matches_its_avro_schema(enum: type[StrEnum]) -> None:
    assert CHECKER.check_enum(enum, load_avro_schema(enum.__name__), enum.__name__) == []


def test_every_schema_file_has_a_model_or_enum_and_every_model_or_enum_a_schema() -> None:
    schema_names = {path.name.removesuffix(".avsc") for path in schema_dir().glob("*.avsc")}
    python_names = {f"{NAMESPACE}{cls.__name__}" for cls in (*MODELS, *ENUMS_WITH_SCHEMA)}
    assert schema_names == python_names


def test_the_codec_reads_the_repositorys_schemas() -> None:
    packaged = {path.name: path.read_bytes() for path in schema_dir().glob("*.avsc")}
    repository = {path.name: path.read_bytes() for path in REPO_SCHEMAS.glob("*.avsc")}
    assert packaged == repository
    assert repository


def test_clause_ids_cannot_be_avro_enum_symbols_so_reason_clause_is_a_string() -> None:
    assert all(not AVRO_NAME.match(clause.value) for clause in Clause)
    assert _field(load_avro_schema("Reason"), "clause")["type"] == "string"


def test_event_models_carry_their_contract_name_as_json_type_tag() -> None:
    for name, model in EVENT_TYPES.items():
        info = model.model_fields["type"]
        assert get_args(info.annotation) == (name,)
        assert info.default == name


# --- the checker detects drift ---------------------------------------------------------


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(field for field in schema["fields"] if field["name"] == name)


def _nested_record(schema: dict[str, Any], field_name: str) -> dict[str, Any]:
    record: dict[str, Any] = _field(schema, field_name)["type"]
    return record


def _data_category_enum(schema: dict[str, Any]) -> dict[str, Any]:
    enum: dict[str, Any] = _field(schema, "data_categories")["type"]["items"]
    return enum


SchemaMutation = Callable[[dict[str, Any]], None]

SCHEMA_MUTATIONS: dict[str, tuple[str, SchemaMutation, str]] = {
    "extra Avro field": (
        "TransferRequested",
        lambda s: s["fields"].append({"name": "region", "type": "string"}),
        "TransferRequested.region: in the Avro schema, missing in the model",
    ),
    "missing Avro field": (
        "TransferRequested",
        lambda s: s["fields"].remove(_field(s, "purpose")),
        "TransferRequested.purpose: in the model, missing in the Avro schema",
    ),
    "renamed enum symbol": (
        "TransferRequested",
        lambda s: _data_category_enum(s)["symbols"].__setitem__(1, "DRIVE_DATA"),
        "TransferRequested.data_categories[]: enum DataCategory symbols differ",
    ),
    "added enum symbol deep inside an array of records": (
        "Decision",
        lambda s: _field(s, "reasons")["type"]["items"]["fields"][0]["type"]["symbols"].append(
            "ORDER_EXPIRED"
        ),
        "Decision.reasons[].code: enum ReasonCode symbols differ",
    ),
    "nullable field made required": (
        "TransferRequested",
        lambda s: (
            _field(s, "order_ref").__setitem__("type", "string"),
            _field(s, "order_ref").pop("default"),
        ),
        "TransferRequested.order_ref: nullability differs",
    ),
    "required field made nullable": (
        "OrderApproved",
        lambda s: _field(s, "approved_by").update(type=["null", "string"], default=None),
        "OrderApproved.approved_by: nullability differs",
    ),
    "union with null second": (
        "ConsentChanged",
        lambda s: _field(s, "recipient_id").__setitem__("type", ["string", "null"]),
        "ConsentChanged.recipient_id: Avro union",
    ),
    "default of a nullable field removed": (
        "OrderRegistered",
        lambda s: _field(s, "max_disclosures").pop("default"),
        "OrderRegistered.max_disclosures: default only in Python",
    ),
    "default of an array field removed": (
        "AuditRecord",
        lambda s: _field(s, "reasons").pop("default"),
        "AuditRecord.reasons: default only in Python",
    ),
    "int widened to long": (
        "TransferRequested",
        lambda s: _field(s, "subject_age").__setitem__("type", ["null", "long"]),
        "TransferRequested.subject_age: Python int bounds",
    ),
    "long narrowed to int": (
        "TransferRequested",
        lambda s: _field(s, "size_bytes").__setitem__("type", ["null", "int"]),
        "TransferRequested.size_bytes: Python int bounds",
    ),
    "string changed to int": (
        "TransferRequested",
        lambda s: _field(s, "source_service").__setitem__("type", "int"),
        "TransferRequested.source_service: Python str",
    ),
    "timestamp lost its logical type": (
        "OrderRegistered",
        lambda s: _field(s, "valid_until").__setitem__("type", "long"),
        "OrderRegistered.valid_until: Python datetime",
    ),
    "array changed to a single value": (
        "OrderRegistered",
        lambda s: _field(s, "account_ids").__setitem__("type", "string"),
        "OrderRegistered.account_ids: Python tuple",
    ),
    "nested record gained a field": (
        "TransferRequested",
        lambda s: _nested_record(s, "recipient")["fields"].append(
            {"name": "city", "type": ["null", "string"], "default": None}
        ),
        "TransferRequested.recipient.city: in the Avro schema, missing in the model",
    ),
    "enum renamed": (
        "SubjectRightsChanged",
        lambda s: _field(s, "action")["type"].__setitem__("name", "sharing.RightsAction"),
        "SubjectRightsChanged.action: enum SubjectRightsAction vs Avro enum",
    ),
    "clause made an Avro enum": (
        "Reason",
        lambda s: _field(s, "clause").__setitem__(
            "type", {"type": "enum", "name": "sharing.Clause", "symbols": ["C_DEFAULT_DENY"]}
        ),
        "Reason.clause: enum Clause symbols differ",
    ),
}


@pytest.mark.parametrize(
    ("name", "mutation", "expected"), SCHEMA_MUTATIONS.values(), ids=SCHEMA_MUTATIONS.keys()
)
def test_checker_reports_drift_in_a_modified_schema(
    name: str, mutation: SchemaMutation, expected: str
) -> None:
    schema = copy.deepcopy(load_avro_schema(name))
    assert CHECKER.check_model(EVENT_TYPES.get(name) or _model(name), schema) == []
    mutation(schema)
    problems = CHECKER.check_model(EVENT_TYPES.get(name) or _model(name), schema)
    assert any(problem.startswith(expected) for problem in problems), problems


def _model(name: str) -> type[BaseModel]:
    return next(model for model in MODELS if model.__name__ == name)


def _variants() -> Iterator[tuple[str, type[BaseModel], str]]:
    yield (
        "extra optional model field",
        create_model(
            "RecipientDeregistered",
            __base__=RecipientDeregistered,
            note=(str | None, None),
        ),
        "RecipientDeregistered.note: in the model, missing in the Avro schema",
    )
    yield (
        "model field made nullable",
        create_model(
            "RecipientDeregistered",
            __base__=RecipientDeregistered,
            recipient_id=(str | None, None),
        ),
        "RecipientDeregistered.recipient_id: nullability differs",
    )
    yield (
        "unbounded int",
        create_model(
            "OrderRegistered",
            __base__=OrderRegistered,
            max_disclosures=(int | None, None),
        ),
        "OrderRegistered.max_disclosures: Python int bounds",
    )
    yield (
        "default of a nullable field changed",
        create_model(
            "TransferRequested",
            __base__=TransferRequested,
            payload_ref=(str | None, "none"),
        ),
        "TransferRequested.payload_ref: default 'none'",
    )
    yield (
        "list instead of tuple of records",
        create_model(
            "Decision", __base__=Decision, reasons=(Annotated[list[Reason], Field()], ...)
        ),
        "Decision.reasons: no Avro mapping",
    )
    yield (
        "timestamp made a string",
        create_model("OrderApproved", __base__=OrderApproved, occurred_at=(str, ...)),
        "OrderApproved.occurred_at: Python str",
    )


MODEL_VARIANTS = list(_variants())


@pytest.mark.parametrize(
    ("model", "expected"),
    [(model, expected) for _, model, expected in MODEL_VARIANTS],
    ids=[label for label, _, _ in MODEL_VARIANTS],
)
def test_checker_reports_drift_in_a_modified_model(model: type[BaseModel], expected: str) -> None:
    problems = CHECKER.check_model(model, load_avro_schema(model.__name__))
    assert any(problem.startswith(expected) for problem in problems), problems


class _DataCategoryWithExtra(StrEnum):
    PERSONAL_INFORMATION = "PERSONAL_INFORMATION"
    VIRTUAL_DRIVE_DATA = "VIRTUAL_DRIVE_DATA"
    TELEMETRY = "TELEMETRY"


class _PurposeReordered(StrEnum):
    CONSENTED_SHARING = "CONSENTED_SHARING"
    DOCUMENT_PROCESSING = "DOCUMENT_PROCESSING"
    CUSTOMER_COMMUNICATIONS = "CUSTOMER_COMMUNICATIONS"
    DATA_ANALYSIS = "DATA_ANALYSIS"
    MARKETING_ASSISTANCE = "MARKETING_ASSISTANCE"
    PAYMENT_PROCESSING = "PAYMENT_PROCESSING"
    PROMOTIONAL_OFFERS = "PROMOTIONAL_OFFERS"
    BUSINESS_TRANSFER = "BUSINESS_TRANSFER"
    FRAUD_PREVENTION = "FRAUD_PREVENTION"
    LEGAL_ORDER = "LEGAL_ORDER"


@pytest.mark.parametrize(
    ("enum", "schema_name"),
    [(_DataCategoryWithExtra, "DataCategory"), (_PurposeReordered, "Purpose")],
    ids=["extra member", "reordered members"],
)
def test_checker_reports_drift_in_a_modified_enum(enum: type[StrEnum], schema_name: str) -> None:
    problems = CHECKER.check_enum(enum, load_avro_schema(schema_name), schema_name)
    assert any("symbols differ" in problem for problem in problems), problems


def test_checker_accepts_a_string_enum_only_where_declared() -> None:
    strict = DriftChecker(string_enums={})
    problems = strict.check_model(Reason, load_avro_schema("Reason"))
    assert problems == ["Reason.clause: Python enum Clause, Avro string"]


# --- the enum values are the contract's names ------------------------------------------

CONTRACT_CLAUSES = {
    "C-VDD-NO-SHARING",
    "C-LAW-ENFORCEMENT",
    "C-PROCESSOR-PURPOSE",
    "C-MARKETING-CONSENT",
    "C-BUSINESS-TRANSFER",
    "C-FRAUD",
    "C-THIRD-PARTY-CONSENT",
    "C-CONSENT-WITHDRAWAL",
    "C-RESTRICTION",
    "C-ERASURE",
    "C-CHILDREN",
    "C-DEFAULT-DENY",
}

CONTRACT_BLOCK_CODES = {
    "VDD_EGRESS_FORBIDDEN",
    "ORDER_MISSING",
    "ORDER_UNKNOWN",
    "ORDER_NOT_APPROVED",
    "ORDER_REVOKED",
    "ORDER_NOT_IN_FORCE",
    "ORDER_JURISDICTION",
    "ORDER_SCOPE_MISMATCH",
    "ORDER_QUOTA_EXHAUSTED",
    "RECIPIENT_NOT_REGISTERED",
    "PURPOSE_NOT_PERMITTED",
    "TRANSACTION_REF_MISSING",
    "FRAUD_CASE_MISSING",
    "CONSENT_MISSING",
    "CONSENT_WITHDRAWN",
    "PROCESSING_RESTRICTED",
    "SUBJECT_ERASED",
    "CHILD_DATA",
    "NO_LEGAL_BASIS",
    "GUARD_ERROR",
}

CONTRACT_ALLOW_BASES = {"ORDER", "PROCESSOR", "BUSINESS_TRANSFER", "FRAUD_PREVENTION", "CONSENT"}

CONTRACT_ENUMS: dict[type[StrEnum], set[str]] = {
    DataCategory: {"PERSONAL_INFORMATION", "VIRTUAL_DRIVE_DATA"},
    RecipientType: {
        "ASSOCIATE_OFFICE",
        "AGENT",
        "SUBCONTRACTOR",
        "LAW_ENFORCEMENT",
        "BUSINESS_TRANSFER_COUNTERPARTY",
        "FRAUD_PREVENTION_PARTNER",
        "THIRD_PARTY",
    },
    Purpose: {
        "DOCUMENT_PROCESSING",
        "CUSTOMER_COMMUNICATIONS",
        "DATA_ANALYSIS",
        "MARKETING_ASSISTANCE",
        "PAYMENT_PROCESSING",
        "PROMOTIONAL_OFFERS",
        "BUSINESS_TRANSFER",
        "FRAUD_PREVENTION",
        "LEGAL_ORDER",
        "CONSENTED_SHARING",
    },
    ConsentScope: {"MARKETING", "THIRD_PARTY_SHARING"},
    ConsentStatus: {"GRANTED", "WITHDRAWN"},
    SubjectRightsAction: {"ERASURE_COMPLETED", "RESTRICTION_APPLIED", "RESTRICTION_LIFTED"},
    OrderType: {"COURT_ORDER", "ADMINISTRATIVE_ORDER"},
    Outcome: {"ALLOW", "BLOCK"},
}

CONTRACT_EVENTS = {
    "TransferRequested",
    "ConsentChanged",
    "RecipientRegistered",
    "RecipientDeregistered",
    "SubjectRightsChanged",
    "OrderRegistered",
    "OrderApproved",
    "OrderRevoked",
}


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def test_clause_values_are_exactly_the_contracts_twelve_clause_ids() -> None:
    assert len(_values(Clause)) == 12
    assert set(_values(Clause)) == CONTRACT_CLAUSES


def test_reason_codes_are_exactly_the_contracts_block_codes_and_allow_bases() -> None:
    assert len(_values(ReasonCode)) == len(CONTRACT_BLOCK_CODES) + len(CONTRACT_ALLOW_BASES)
    assert set(_values(ReasonCode)) == CONTRACT_BLOCK_CODES | CONTRACT_ALLOW_BASES


def test_allow_bases_are_exactly_the_contracts_allow_bases() -> None:
    assert {code.value for code in ALLOW_BASES} == CONTRACT_ALLOW_BASES


@pytest.mark.parametrize("enum", CONTRACT_ENUMS, ids=lambda enum: enum.__name__)
def test_enum_values_are_the_contracts_names(enum: type[StrEnum]) -> None:
    assert len(_values(enum)) == len(CONTRACT_ENUMS[enum])
    assert set(_values(enum)) == CONTRACT_ENUMS[enum]


def test_event_types_are_exactly_the_contracts_events() -> None:
    assert set(EVENT_TYPES) == CONTRACT_EVENTS
