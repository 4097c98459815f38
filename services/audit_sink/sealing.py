"""Sealing personal data per data subject, and keyed tags for lookups (pure, no I/O).

* A **sealed payload** is ``nonce (12 random bytes) || AES-256-GCM ciphertext and tag`` of a
  plaintext, under the subject's 256-bit key, with the associated data
  ``b"audit-sink/v1/payload" || 0x00 || uint64 BE entry index``: a payload moved to another
  entry no longer opens. The leaf commits to ``SHA-256(sealed payload)``
  (:func:`payload_digest`), never to the plaintext or to an unkeyed hash of an identifier.
* An :class:`IndexKey` is the deployment's secret 256-bit key for keyed HMAC-SHA256 tags:
  ``account_tag`` finds an account's payloads and keys without storing its id, and
  ``content_mac`` recognises redelivered records. Both are domain-separated, so one tag can
  never be mistaken for the other. Without the index key a tag reveals nothing; with it,
  anyone can test a guessed account id, so the key is a secret (settings, never the
  database).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "IndexKey",
    "SealError",
    "SubjectKey",
    "new_key",
    "new_key_id",
    "open_sealed",
    "payload_aad",
    "payload_digest",
    "seal",
    "seal_with",
]

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_AAD_PREFIX: Final = b"audit-sink/v1/payload\x00"
_ACCOUNT_DOMAIN: Final = b"audit-sink/v1/account-tag\x00"
_CONTENT_DOMAIN: Final = b"audit-sink/v1/content-mac\x00"


class SealError(ValueError):
    """A sealed payload does not open (wrong key, wrong entry, or altered bytes)."""


@dataclass(frozen=True)
class SubjectKey:
    """A data subject's payload key and its opaque id; the key is never shown."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        """Check the key size."""
        if len(self.key) != KEY_SIZE:
            raise ValueError(f"a subject key is {KEY_SIZE} bytes")


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_SIZE)


def new_key_id() -> str:
    """A fresh random, opaque key id (32 hex digits), unrelated to the subject."""
    return os.urandom(16).hex()


def payload_aad(index: int) -> bytes:
    """The associated data binding a sealed payload to its entry index."""
    return _AAD_PREFIX + index.to_bytes(8, "big")


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Return ``nonce || AES-256-GCM(key, nonce, plaintext, aad)`` with a random nonce."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def seal_with(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """:func:`seal` with a prepared AES-GCM object (one per key, reused across payloads)."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Return the plaintext of a sealed payload, or raise :class:`SealError`."""
    if len(key) != KEY_SIZE:
        raise SealError(f"a payload key is {KEY_SIZE} bytes")
    if len(sealed) < NONCE_SIZE + _TAG_SIZE:
        raise SealError("sealed payload is too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag:
        raise SealError("sealed payload does not open with this key for this entry") from None


def payload_digest(sealed: bytes) -> bytes:
    """The SHA-256 digest a leaf commits to for its sealed payload."""
    return hashlib.sha256(sealed).digest()


class IndexKey:
    """The secret key of keyed tags (HMAC-SHA256); its repr never shows the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        """Wrap a key of at least 32 bytes (``ValueError`` otherwise)."""
        if len(key) < KEY_SIZE:
            raise ValueError(f"the index key must be at least {KEY_SIZE} bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        """Hide the key."""
        return "IndexKey(<secret>)"

    def account_tag(self, account_id: str) -> bytes:
        """The 32-byte keyed tag of an account id (for lookups; reveals nothing without the key)."""
        return hmac.digest(self._key, _ACCOUNT_DOMAIN + account_id.encode("utf-8"), "sha256")

    def content_mac(self, data: bytes) -> bytes:
        """The 32-byte keyed MAC of a record's bytes (to recognise redeliveries)."""
        return hmac.digest(self._key, _CONTENT_DOMAIN + data, "sha256")
