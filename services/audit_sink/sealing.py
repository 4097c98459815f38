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
    "new_nonces",
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


def new_nonces(count: int) -> list[bytes]:
    """``count`` fresh random nonces of :data:`NONCE_SIZE` bytes, drawn from the system's
    random source in one call (one call per nonce costs a system call each)."""
    pool = os.urandom(NONCE_SIZE * count)
    return [pool[i : i + NONCE_SIZE] for i in range(0, NONCE_SIZE * count, NONCE_SIZE)]


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
    """The secret key of keyed tags (HMAC-SHA256); its repr never shows the key.

    The HMAC state after the key and each domain string is computed once and copied per
    message (the same MACs as ``hmac.digest(key, domain + data, "sha256")``, without
    hashing the padded key twice per message). Pickling carries the key only.
    """

    __slots__ = ("_account", "_content", "_key")

    def __init__(self, key: bytes) -> None:
        """Wrap a key of at least 32 bytes (``ValueError`` otherwise)."""
        if len(key) < KEY_SIZE:
            raise ValueError(f"the index key must be at least {KEY_SIZE} bytes")
        self._key = bytes(key)
        self._account = hmac.new(self._key, _ACCOUNT_DOMAIN, "sha256")
        self._content = hmac.new(self._key, _CONTENT_DOMAIN, "sha256")

    def __repr__(self) -> str:
        """Hide the key."""
        return "IndexKey(<secret>)"

    def __reduce__(self) -> tuple[type[IndexKey], tuple[bytes]]:
        """Pickle as the key alone (e.g. for a helper process)."""
        return (IndexKey, (self._key,))

    def account_tag(self, account_id: str) -> bytes:
        """The 32-byte keyed tag of an account id (for lookups; reveals nothing without the key)."""
        mac = self._account.copy()
        mac.update(account_id.encode("utf-8"))
        return mac.digest()

    def content_mac(self, data: bytes) -> bytes:
        """The 32-byte keyed MAC of a record's bytes (to recognise redeliveries)."""
        mac = self._content.copy()
        mac.update(data)
        return mac.digest()
