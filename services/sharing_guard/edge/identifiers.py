"""The identifier policy: what a person may type as an order reference, an authority, an
officer id, and the ids an order names.

A second officer approving an order reads its reference and authority on a screen; two
references that look the same must be the same. So every typed id is NFKC-normalised
first (the full-width form of ``AZ-1`` *is* ``AZ-1``), then checked against an allow-list:

* **order references** (:data:`OrderRef`, at most 128): ASCII letters and digits, spaces
  and ``- _ . / : # + ( ) [ ]``, each part between ``/`` or spaces holding a letter or a
  digit (a part ``.`` or ``..`` would be read as a path's own dots); courts number cases
  ``ZH/2026/117`` or ``BGE 145 IV 42``.
* **officer ids** (:data:`OfficerId`, at most 64): ASCII letters and digits and ``- _ . @``.
* **authorities** (:data:`Authority`, at most 200): letters and marks of any script (court
  names are written in their own language), digits, spaces and ``- . , ' ( ) / & :``.

Everywhere: no control, format (zero-width, bidirectional override), or line-separator
character; no space or ``/`` at either end; no two spaces or two ``/`` in a row. Account
and recipient ids (:data:`NamedId`) must match what the systems send byte for byte, so they
are not normalised; they are only refused when they hold an invisible character or
surrounding spaces. Errors name the position and the code point, never echo the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

__all__ = [
    "AUTHORITY_MAX",
    "OFFICER_ID_MAX",
    "OFFICER_ID_PATTERN",
    "ORDER_REF_MAX",
    "ORDER_REF_PATTERN",
    "Authority",
    "NamedId",
    "OfficerId",
    "OrderRef",
    "authority",
    "named_id",
    "normalise",
    "officer_id",
    "order_ref",
]

ORDER_REF_MAX: Final = 128
OFFICER_ID_MAX: Final = 64
AUTHORITY_MAX: Final = 200
NAMED_ID_MAX: Final = 256

_ASCII_ALNUM: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_REF_PUNCTUATION: Final = frozenset(" -_./:#+()[]")
_OFFICER_PUNCTUATION: Final = frozenset("-_.@")
_AUTHORITY_PUNCTUATION: Final = frozenset(" -.,'()/&:")
_RUNS: Final = re.compile(r"  |//")
_PARTS: Final = re.compile(r"[ /]")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"


def _hidden(text: str) -> str | None:
    """The problem with the first invisible or control character of ``text``, if any."""
    for position, char in enumerate(text, 1):
        if not char.isprintable():
            name = unicodedata.name(char, "unnamed")
            return f"holds an invisible or control character ({_code(char)} {name}) at {position}"
    return None


def normalise(text: str) -> str:
    """NFKC: compatibility forms (full-width, ligatures...) become their plain letters."""
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True)
class _Kind:
    """One kind of typed id: its name in messages, its length cap, its allowed characters."""

    what: str
    limit: int
    allowed: Callable[[str], bool]
    described: str
    parts_need_alnum: bool = False

    def __call__(self, typed: str) -> str:
        """``typed`` normalised and checked (``ValueError`` names the problem)."""
        text, what = normalise(typed), self.what
        if not text:
            raise ValueError(f"{what} is empty")
        if len(text) > self.limit:
            raise ValueError(f"{what} is longer than {self.limit} characters")
        hidden = _hidden(text)
        if hidden:
            raise ValueError(f"{what} {hidden}")
        for position, char in enumerate(text, 1):
            if not self.allowed(char):
                raise ValueError(
                    f"{what} may hold only {self.described}; "
                    f"{_code(char)} at {position} is not allowed"
                )
        if text[0] in " /" or text[-1] in " /":
            raise ValueError(f"{what} may not begin or end with a space or '/'")
        if _RUNS.search(text):
            raise ValueError(f"{what} may not hold two spaces or two '/' in a row")
        if self.parts_need_alnum and any(
            not any(c in _ASCII_ALNUM for c in part) for part in _PARTS.split(text)
        ):
            raise ValueError(
                f"{what}: each part between '/' or spaces needs a letter or a digit "
                "('.' and '..' would be taken for a path's own dots)"
            )
        return text


order_ref = _Kind(
    "the order reference",
    ORDER_REF_MAX,
    lambda c: c in _ASCII_ALNUM or c in _REF_PUNCTUATION,
    "ASCII letters, digits, spaces and - _ . / : # + ( ) [ ]",
    parts_need_alnum=True,
)
"""An order reference, normalised and checked."""
officer_id = _Kind(
    "the officer id",
    OFFICER_ID_MAX,
    lambda c: c in _ASCII_ALNUM or c in _OFFICER_PUNCTUATION,
    "ASCII letters, digits and - _ . @",
)
"""An officer id, normalised and checked."""
authority = _Kind(
    "the authority",
    AUTHORITY_MAX,
    lambda c: unicodedata.category(c)[0] in "LMN" or c in _AUTHORITY_PUNCTUATION,
    "letters, digits, spaces and - . , ' ( ) / & :",
)
"""An authority's name, normalised and checked."""


def named_id(text: str) -> str:
    """An account or recipient id, kept exactly as typed once it holds nothing hidden."""
    if not text:
        raise ValueError("the id is empty")
    if len(text) > NAMED_ID_MAX:
        raise ValueError(f"the id is longer than {NAMED_ID_MAX} characters")
    hidden = _hidden(text)
    if hidden:
        raise ValueError(f"the id {hidden}")
    if text != text.strip():
        raise ValueError("the id may not begin or end with a space")
    return text


def _typed(check: Callable[[str], str]) -> Callable[[object], object]:
    def validate(value: object) -> object:
        return check(value) if isinstance(value, str) else value

    return validate


_PUNCT: Final = r"[_.:#+()\[\]-]*"
_SEGMENT: Final = rf"{_PUNCT}[A-Za-z0-9][A-Za-z0-9_.:#+()\[\]-]*"
ORDER_REF_PATTERN: Final = rf"^{_SEGMENT}(?:[ /]{_SEGMENT})*$"
"""The canonical form of an order reference, for the OpenAPI description (the policy also
takes compatibility forms, normalised, and a space next to a '/')."""
OFFICER_ID_PATTERN: Final = r"^[A-Za-z0-9_.@-]+$"

OrderRef = Annotated[
    str,
    Field(max_length=4 * ORDER_REF_MAX),
    BeforeValidator(_typed(order_ref)),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": ORDER_REF_MAX, "pattern": ORDER_REF_PATTERN}
    ),
]
"""An order reference as the policy allows it (normalised on the way in)."""
OfficerId = Annotated[
    str,
    Field(max_length=4 * OFFICER_ID_MAX),
    BeforeValidator(_typed(officer_id)),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": OFFICER_ID_MAX,
            "pattern": OFFICER_ID_PATTERN,
        }
    ),
]
"""An officer id as the policy allows it."""
Authority = Annotated[
    str, Field(min_length=1, max_length=4 * AUTHORITY_MAX), BeforeValidator(_typed(authority))
]
"""An issuing authority's name as the policy allows it."""
NamedId = Annotated[str, Field(min_length=1, max_length=NAMED_ID_MAX), AfterValidator(named_id)]
"""An account or recipient id: exact, nothing hidden."""
