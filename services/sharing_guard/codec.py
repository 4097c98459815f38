"""Avro binary and JSON codecs for the contract, one per schema, each parsed once.

On the wire every record uses Avro *single-object encoding* (Avro specification): the
two marker bytes ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema, then the Avro binary body. The fingerprint tells the reader which event
a record is (topics such as ``legal.orders`` carry several types) and refuses records
written with a schema it does not know. Anything that cannot be decoded raises
:class:`DecodeError` with a reason fit for a dead-letter header: it names the problem,
never the record's content.
"""

import io
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from pydantic import BaseModel, ValidationError

from sharing_guard.contract.audit import AuditRecord
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.events import EVENT_TYPES
from sharing_guard.contract.policy_events import PolicyPromoted

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
NAMESPACE = "sharing"

M = TypeVar("M", bound=BaseModel)


class DecodeError(ValueError):
    """A record that is not a valid contract record; the message says why."""


def schema_dir() -> Path:
    """The directory of the ``.avsc`` files (``schemas/avro`` in the repository)."""
    return Path(str(resources.files("sharing_guard") / "avro"))


@cache
def load_avro_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``sharing.<name>``, with its named types resolved, loaded once."""
    return cast(dict[str, Any], load_schema(str(schema_dir() / f"{NAMESPACE}.{name}.avsc")))


def describe_validation_error(exc: ValidationError) -> str:
    """Every problem in a validation error as ``field: message``, without input values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '<record>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


class AvroCodec(Generic[M]):
    """Encodes and decodes one model with its Avro schema (single-object encoding)."""

    def __init__(self, model: type[M], name: str | None = None) -> None:
        self.model = model
        self.name = name or model.__name__
        self.schema = load_avro_schema(self.name)
        canonical = to_parsing_canonical_form(self.schema)
        self.fingerprint = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        self.header = MAGIC + self.fingerprint

    def to_record(self, value: M) -> dict[str, Any]:
        """The model as the dict fastavro writes (the JSON-only ``type`` field dropped)."""
        return value.model_dump(exclude={"type"})

    def encode(self, value: M) -> bytes:
        """Avro single-object encoding of ``value``."""
        return self.encode_record(self.to_record(value))

    def encode_record(self, record: Mapping[str, Any]) -> bytes:
        """Avro single-object encoding of ``record``, a dict shaped like the schema (as
        :meth:`to_record` gives); the writer refuses one that does not fit it."""
        buffer = io.BytesIO()
        buffer.write(self.header)
        fastavro.schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()

    def decode_body(self, body: bytes) -> M:
        """Decode an Avro body (after the header) and validate it as the model."""
        buffer = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(buffer, self.schema, None)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(
                f"{self.name}: Avro body is truncated or corrupt ({type(exc).__name__})"
            ) from exc
        if buffer.tell() != len(body):
            raise DecodeError(
                f"{self.name}: {len(body) - buffer.tell()} trailing bytes after record"
            )
        # fastavro resolves enum symbols and union branches by Python indexing, so a
        # negative index decodes to a real symbol (BLOCK could read as ALLOW). Writing
        # the record back must give the same bytes, or the body was not canonical.
        # fastavro also reads a varint wider than the schema's type (an "int" above
        # 2**31), which its writer then refuses: not a valid body either.
        again = io.BytesIO()
        try:
            fastavro.schemaless_writer(again, self.schema, record)
        except Exception as exc:
            raise DecodeError(
                f"{self.name}: Avro body holds a value out of its type's range "
                f"({type(exc).__name__})"
            ) from exc
        if again.getvalue() != body:
            raise DecodeError(f"{self.name}: Avro body is not canonical (bad enum or union index)")
        try:
            return self.model.model_validate(record)
        except ValidationError as exc:
            raise DecodeError(f"{self.name}: {describe_validation_error(exc)}") from exc


def decision_record(decision: Decision) -> dict[str, Any]:
    """``decision`` as the dict its Avro schema writes, built without the model's dump
    (the guard encodes one per transfer); the unit tests hold it to
    :meth:`AvroCodec.to_record`."""
    return {
        "event_id": decision.event_id,
        "outcome": decision.outcome,
        "reasons": [{"code": r.code, "clause": r.clause} for r in decision.reasons],
        "policy_version": decision.policy_version,
        "order_ref": decision.order_ref,
    }


class CodecRegistry:
    """Decodes any record whose writer schema it knows, by fingerprint."""

    def __init__(
        self, codecs: Mapping[str, AvroCodec[Any]], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    ) -> None:
        self.by_name = dict(codecs)
        self.by_fingerprint = {codec.fingerprint: codec for codec in codecs.values()}
        self.max_record_bytes = max_record_bytes

    def limited_to(self, max_record_bytes: int) -> "CodecRegistry":
        """The same codecs with another size limit."""
        return CodecRegistry(self.by_name, max_record_bytes)

    def codec(self, name: str) -> AvroCodec[Any]:
        """The codec of the record type ``name`` (e.g. ``"TransferRequested"``)."""
        return self.by_name[name]

    def encode(self, value: BaseModel) -> bytes:
        """Encode any contract model with its own schema."""
        return self.by_name[type(value).__name__].encode(value)

    def decode(self, data: bytes | None) -> Any:
        """Decode one single-object-encoded record into its model.

        Raises :class:`DecodeError` for an empty or oversized record, a missing marker,
        an unknown schema fingerprint, a corrupt or truncated body, trailing bytes, or
        values the contract does not allow.
        """
        if not data:
            raise DecodeError("empty record")
        if len(data) > self.max_record_bytes:
            raise DecodeError(f"record of {len(data)} bytes exceeds {self.max_record_bytes}")
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (marker C3 01 missing)")
        codec = self.by_fingerprint.get(data[2:HEADER_SIZE])
        if codec is None:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}")
        return codec.decode_body(data[HEADER_SIZE:])


@cache
def contract_registry() -> CodecRegistry:
    """The registry of every contract record: the events, the policy promotion, the
    decision, the audit record."""
    models: dict[str, type[BaseModel]] = {
        **EVENT_TYPES,
        "PolicyPromoted": PolicyPromoted,
        "Decision": Decision,
        "AuditRecord": AuditRecord,
    }
    return CodecRegistry({name: AvroCodec(model, name) for name, model in models.items()})
