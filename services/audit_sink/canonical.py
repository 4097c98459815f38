"""Canonical JSON: the one byte spelling of a JSON value used inside leaves and payloads (pure).

``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)`` encoded as ASCII: object keys sorted by code point, no whitespace, every
non-ASCII character escaped as ``\\uXXXX`` (lower-case hex, surrogate pairs above U+FFFF),
integers only (no floats anywhere in what we write). A text is canonical when re-encoding
its parse gives the same bytes, so duplicate keys, whitespace and other spellings are
rejected by :func:`parse_canonical`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CanonicalJsonError", "canonical_json", "parse_canonical"]

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


class CanonicalJsonError(ValueError):
    """The bytes are not canonical JSON (or not JSON at all)."""


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (``ValueError`` on NaN or infinities)."""
    return _ENCODER.encode(value).encode("ascii")


def parse_canonical(data: bytes) -> Any:
    """Parse canonical JSON bytes; raise :class:`CanonicalJsonError` unless they are canonical."""
    try:
        value = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CanonicalJsonError(f"not ASCII JSON: {type(exc).__name__}") from exc
    try:
        again = canonical_json(value)
    except ValueError as exc:
        raise CanonicalJsonError("JSON with a non-finite number") from exc
    if again != data:
        raise CanonicalJsonError("JSON is not in canonical form")
    return value
