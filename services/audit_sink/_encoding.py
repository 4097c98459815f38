"""Strict text encodings shared by the checkpoint and proof-bundle parsers (private).

Pure helpers, no I/O. They return ``None`` on bad input so that each caller raises its own,
specific error.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

_DECIMAL: Final = re.compile(r"0|[1-9][0-9]*")
_UINT64_LIMIT: Final = 1 << 64


def decode_base64(text: str) -> bytes | None:
    """Return the bytes of canonical standard base64 (RFC 4648 §4, padded), else ``None``.

    Rejects characters outside the alphabet, whitespace, missing or extra padding, and
    non-canonical encodings (non-zero unused bits), so that one value has one spelling.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def encode_base64(raw: bytes) -> str:
    """Return the standard, padded base64 encoding of ``raw``."""
    return base64.b64encode(raw).decode("ascii")


def parse_uint64(text: str) -> int | None:
    """Return the value of an ASCII decimal without leading zeros below ``2**64``, else ``None``.

    ``int()`` is not used directly: it accepts signs, underscores, spaces and non-ASCII
    digits.
    """
    if len(text) > 20 or _DECIMAL.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value < _UINT64_LIMIT else None
