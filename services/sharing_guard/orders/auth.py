"""Bearer tokens with roles, each bound to one officer and an expiry.

Only the SHA-256 of a token is configured (tokens are 256-bit random strings, so a fast
hash is enough; nothing guessable is stored). A presented token is hashed and compared
with every configured hash in constant time. Who may do what:

===================  ========  =======  ======  =========
role                 register  approve  revoke  list/show
===================  ========  =======  ======  =========
legal_officer        yes       yes      yes     yes
security_reviewer    no        no       no      yes
administrator        yes       yes      yes     yes
===================  ========  =======  ======  =========

Four eyes applies to every role: the approving officer is never the registering one.
"""

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from sharing_guard.contract.types import Timestamp
from sharing_guard.edge.identifiers import OfficerId

TOKEN_PREFIX = "sgo_"
TOKEN_PATTERN = re.compile(r"^sgo_[A-Za-z0-9_-]{43}$")
MISSING_TOKEN = "missing bearer token"


class Role(StrEnum):
    """What a token's holder is."""

    LEGAL_OFFICER = "legal_officer"
    SECURITY_REVIEWER = "security_reviewer"
    ADMINISTRATOR = "administrator"


class Action(StrEnum):
    """What a call does."""

    REGISTER = "register"
    APPROVE = "approve"
    REVOKE = "revoke"
    READ = "read"


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.LEGAL_OFFICER: frozenset(Action),
    Role.SECURITY_REVIEWER: frozenset({Action.READ}),
    Role.ADMINISTRATOR: frozenset(Action),
}


class TokenEntry(BaseModel):
    """One configured token: whose it is, its role, until when, and its hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    officer_id: OfficerId
    role: Role
    expires_at: Timestamp
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


_ENTRIES = TypeAdapter(list[TokenEntry])


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    officer_id: str
    role: Role

    def may(self, action: Action) -> bool:
        """True when the role allows ``action``."""
        return action in PERMISSIONS[self.role]


class AuthError(Exception):
    """Authentication failed (HTTP 401); ``description`` is safe to show and log."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token, as configured."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def load_entries(path: Path | None, extra: Iterable[TokenEntry] = ()) -> list[TokenEntry]:
    """The token entries of the JSON file at ``path`` (if any) plus ``extra``."""
    entries = list(extra)
    if path is not None:
        entries.extend(_ENTRIES.validate_json(path.read_bytes()))
    return entries


def entries_json(entries: Iterable[TokenEntry]) -> str:
    """Token entries as the JSON list a tokens file holds."""
    return json.dumps([entry.model_dump(mode="json") for entry in entries], indent=2)


class Authenticator:
    """Maps a bearer token to its principal, or raises :class:`AuthError`."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self.entries = tuple(entries)

    def authenticate(self, authorization: str | None, now: datetime) -> Principal:
        """Check an ``Authorization`` header value at ``now``."""
        if not authorization:
            raise AuthError(MISSING_TOKEN)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not TOKEN_PATTERN.fullmatch(token.strip()):
            raise AuthError("malformed bearer token")
        digest = token_hash(token.strip()).encode()
        found: TokenEntry | None = None
        for entry in self.entries:  # compare with every entry: no early exit
            if hmac.compare_digest(entry.token_sha256.encode(), digest):
                found = entry
        if found is None:
            raise AuthError("unknown token")
        if now >= found.expires_at:
            raise AuthError("token expired")
        return Principal(officer_id=found.officer_id, role=found.role)
