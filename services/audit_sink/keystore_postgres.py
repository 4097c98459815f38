"""The key store in a PostgreSQL schema of its own, used through its own role.

The log's roles have no privilege on this schema and the key role none on the log, so
neither a leaked log credential nor a log dump exposes a key. Deleted keys stay in the
table's dead tuples until ``VACUUM``, in the WAL and in backups until they expire: the
owner should vacuum the table after erasures and bound backup retention (see
docs/audit-trail.md).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import psycopg

from audit_sink.sealing import SubjectKey, new_key, new_key_id
from audit_sink.store_postgres import connect

__all__ = ["PostgresKeyStore"]


class PostgresKeyStore:
    """Subject keys in ``<schema>.subject_keys``."""

    def __init__(self, dsn: str, schema: str, role: str | None = None) -> None:
        """Connect as (or ``SET ROLE`` to) the key role, with the search path on ``schema``."""
        self._db: psycopg.Connection[Any] = connect(dsn, role, schema)

    def keys_for_tags(self, tags: Collection[bytes], *, create: bool) -> dict[bytes, SubjectKey]:
        """The live key of each tag; with ``create``, missing ones are created and committed."""
        wanted = list(dict.fromkeys(tags))
        if not wanted:
            return {}
        if not create:
            return self._by_tags(wanted)
        # One statement for the whole batch (not one per key), keeping any existing key (ON
        # CONFLICT DO NOTHING); the keys it wrote come back with RETURNING, the others (that
        # existed already, or were created meanwhile by another writer) are read.
        with self._db.transaction(), self._db.cursor(binary=True) as cursor:
            cursor.execute(
                "INSERT INTO subject_keys(key_id, account_tag, key) "
                "SELECT * FROM unnest(%b::text[], %b::bytea[], %b::bytea[]) "
                "ON CONFLICT (account_tag) DO NOTHING RETURNING account_tag, key_id, key",
                ([new_key_id() for _ in wanted], wanted, [new_key() for _ in wanted]),
            )
            found = {bytes(t): SubjectKey(k, bytes(key)) for t, k, key in cursor.fetchall()}
        existing = [t for t in wanted if t not in found]
        if existing:
            found.update(self._by_tags(existing))
        return found

    def _by_tags(self, tags: list[bytes]) -> dict[bytes, SubjectKey]:
        # The tags as one JSON array of hex strings: no array parameter for PostgreSQL to
        # plan around (an `= ANY` of a batch's tags is planned slowly for its first ten
        # executions on a connection) nor for psycopg to build element by element.
        with self._db.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT k.account_tag, k.key_id, k.key "
                "FROM jsonb_array_elements_text(%s::jsonb) AS w(tag) "
                "JOIN subject_keys k ON k.account_tag = decode(w.tag, 'hex')",
                (json.dumps([tag.hex() for tag in tags]),),
            )
            return {bytes(t): SubjectKey(k, bytes(key)) for t, k, key in cursor.fetchall()}

    def orphan_key(self) -> SubjectKey:
        """A new committed key tied to no account."""
        key = SubjectKey(new_key_id(), new_key())
        self._db.execute(
            "INSERT INTO subject_keys(key_id, account_tag, key) VALUES (%s, NULL, %s)",
            (key.key_id, key.key),
        )
        return key

    def keys(self, key_ids: Collection[str]) -> dict[str, SubjectKey]:
        """The keys that still exist among ``key_ids``."""
        with self._db.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT key_id, key FROM subject_keys WHERE key_id = ANY(%b)",
                (sorted(set(key_ids)),),
            )
            return {k: SubjectKey(k, bytes(key)) for k, key in cursor.fetchall()}

    def destroy(self, tag: bytes) -> int:
        """Delete the keys of a tag (committed); return how many were deleted."""
        cursor = self._db.execute("DELETE FROM subject_keys WHERE account_tag = %s", (tag,))
        return cursor.rowcount

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
