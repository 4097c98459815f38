"""One line of a history: an event, an event with the decision recorded for it, or a sealed
placeholder (pure, no I/O).

The history ``sharing-guard what-if`` reads is the JSON Lines of ``sharing-guard replay``
(contract section 4), where a transfer line MAY also carry ``"recorded"``: the decision the
guard actually enforced, ``{"outcome", "reasons": [{"code", "clause"}], "policy_version",
"order_ref"}``. ``audit-sink history`` writes it as the line's last key, which
:class:`LineReader` reads without parsing the line twice. A line
``{"type": "Sealed", "event_id", "event_type", "reason", "recorded"}`` stands for an entry of
the trail whose identifiers can no longer be opened (an erased account): it is counted, never
re-decided.

Errors name fields, never values (as ``replay``'s).
"""

import json
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sharing_guard.codec import describe_validation_error
from sharing_guard.contract.decision import Reason
from sharing_guard.contract.enums import Outcome, ReasonCode
from sharing_guard.contract.events import Event, parse_event_json
from sharing_guard.contract.types import Identifier
from sharing_guard.core.engine import reason

_RECORDED_KEY = b',"recorded":'
_CACHE_LIMIT = 8192


class InvalidLineError(ValueError):
    """A line that is not a valid history line; the message names fields, never values."""


class Recorded(NamedTuple):
    """The decision the guard enforced for a transfer, as the trail recorded it.

    Its reasons are the engine's shared :class:`Reason` objects, so it compares with a
    fresh :class:`~sharing_guard.contract.decision.Decision` field by field."""

    outcome: Outcome
    reasons: tuple[Reason, ...]
    policy_version: str
    order_ref: str | None

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        """The reason codes alone, in order."""
        return tuple(r.code for r in self.reasons)


class Sealed(NamedTuple):
    """A placeholder for an entry whose identifiers the trail can no longer open."""

    event_id: str
    event_type: str
    reason: str
    recorded: Recorded | None


class _RecordedModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Outcome
    reasons: tuple[Reason, ...]
    policy_version: Annotated[str, Field(min_length=1, max_length=256)]
    order_ref: str | None = None


class _SealedModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["Sealed"]
    event_id: Identifier
    event_type: Annotated[str, Field(min_length=1, max_length=64)] = "TransferRequested"
    reason: Annotated[str, Field(min_length=1, max_length=64)]
    recorded: _RecordedModel | None = None


def _recorded(model: _RecordedModel) -> Recorded:
    return Recorded(
        model.outcome,
        tuple(reason(r.code, r.clause) for r in model.reasons),
        model.policy_version,
        model.order_ref,
    )


def _problem(exc: ValidationError, prefix: str = "") -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return "not valid JSON"
    if not prefix:
        return describe_validation_error(exc)
    return "; ".join(
        f"{prefix}{'.'.join(str(part) for part in err['loc'])}".rstrip(".") + f": {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


Line = tuple[Event, Recorded | None] | Sealed
"""What a history line holds: an event with its recorded decision (or ``None``), or a
sealed placeholder."""


class LineReader:
    """Parses history lines. Recorded decisions repeat (the same outcome, reasons and policy
    version on many lines), so their parsed form is cached by their bytes."""

    def __init__(self) -> None:
        """An empty cache."""
        self._cache: dict[bytes, Recorded] = {}

    def parse(self, raw: bytes) -> Line:
        """The line's content; :class:`InvalidLineError` or :class:`pydantic.ValidationError`
        (for the event itself) when it is not a valid history line."""
        if _RECORDED_KEY[1:-1] not in raw:
            if b'"Sealed"' not in raw:
                return parse_event_json(raw), None
            return self._parse_slowly(raw)
        line = raw.rstrip()
        cut = line.rfind(_RECORDED_KEY)
        if cut > 0 and line.endswith(b"}"):
            # ``{...event...,"recorded":{...}}``, as audit-sink history writes it: each part
            # parsed once. Anything else (another layout, an error) goes the slow way, which
            # gives the authoritative answer.
            try:
                recorded = self._recorded(line[cut + len(_RECORDED_KEY) : -1])
                return parse_event_json(line[:cut] + b"}"), recorded
            except (InvalidLineError, ValidationError):
                pass
        return self._parse_slowly(raw)

    def _recorded(self, data: bytes) -> Recorded:
        found = self._cache.get(data)
        if found is not None:
            return found
        try:
            model = _RecordedModel.model_validate_json(data)
        except ValidationError as exc:
            raise InvalidLineError(_problem(exc, "recorded.")) from None
        found = _recorded(model)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[data] = found
        return found

    def _parse_slowly(self, raw: bytes) -> Line:
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidLineError("not valid JSON") from None
        if not isinstance(value, dict):
            return parse_event_json(raw), None  # raises, with replay's reason
        if value.get("type") == "Sealed":
            try:
                sealed = _SealedModel.model_validate_json(json.dumps(value))
            except ValidationError as exc:
                raise InvalidLineError(_problem(exc)) from None
            recorded = None if sealed.recorded is None else _recorded(sealed.recorded)
            return Sealed(sealed.event_id, sealed.event_type, sealed.reason, recorded)
        data = value.pop("recorded", None)
        recorded = None if data is None else self._recorded(json.dumps(data).encode())
        return parse_event_json(json.dumps(value)), recorded


def problem_of(exc: ValidationError | InvalidLineError) -> str:
    """The reason reported for an invalid line (field names, never values)."""
    return str(exc) if isinstance(exc, InvalidLineError) else _problem(exc)
