"""The key store port: per-subject payload keys, kept apart from the log.

Keys are found by the account's keyed tag (:meth:`audit_sink.sealing.IndexKey.account_tag`),
never by its id, so the key store holds no identifier either. At most one live key per tag;
erasure destroys it (:meth:`KeyStore.destroy`), after which every payload sealed under it is
unreadable, and a later record of the same account gets a new key. *Orphan* keys belong to
no account: they seal anomalies whose account is unknown (undecodable bytes).

Adapters: :mod:`audit_sink.keystore_sqlite` (a separate file) and
:mod:`audit_sink.keystore_postgres` (a separate schema, with its own role).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from audit_sink.sealing import SubjectKey

__all__ = ["KeyStore", "SubjectKey"]


class KeyStore(Protocol):
    """Per-subject keys: created on first use, destroyed on erasure."""

    def keys_for_tags(self, tags: Collection[bytes], *, create: bool) -> dict[bytes, SubjectKey]:
        """The live key of each tag; with ``create``, missing ones are created and committed."""
        ...

    def orphan_key(self) -> SubjectKey:
        """A new committed key tied to no account."""
        ...

    def keys(self, key_ids: Collection[str]) -> dict[str, SubjectKey]:
        """The keys that still exist among ``key_ids``."""
        ...

    def destroy(self, tag: bytes) -> int:
        """Delete the keys of a tag (committed); return how many were deleted."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
