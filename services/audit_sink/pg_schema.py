"""PostgreSQL DDL for the log and the key store, with their roles (pure: returns SQL text).

Run by the schema **owner** (a role that is not used by the sink at run time); the sink
connects as, or ``SET ROLE``s to, roles with only what they need:

* the **writer** role: ``SELECT, INSERT`` on the append-only tables, ``DELETE`` on
  ``payloads`` (a trigger still refuses any row not listed in ``erased``), ``SELECT,
  INSERT, UPDATE`` on ``positions``; no UPDATE, DELETE or TRUNCATE anywhere else;
* the **reader** role: ``SELECT`` only (verify, query, proof, export);
* the **key store** role: ``SELECT, INSERT, DELETE`` on the key table, in a schema of its
  own that the log roles cannot read (and the key role cannot read the log).

Triggers refuse UPDATE and DELETE on every append-only table (row triggers) and TRUNCATE
(statement triggers), accept leaves only at the next indices (a statement trigger over the
statement's new rows, so a batch written with one COPY is checked once) and a checkpoint only
larger than the last, and are ``ENABLE ALWAYS``: ``SET session_replication_role = replica`` does not
skip them. The owner or a superuser can still disable or drop them; that is why the verifier,
not the database, is the control.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["heads_schema_sql", "keystore_schema_sql", "log_schema_sql", "quote_identifier"]

_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_APPEND_ONLY: Final = (
    "meta",
    "leaves",
    "records",
    "sources",
    "erased",
    "checkpoints",
    "payloads",
    "traces",
)


def quote_identifier(name: str) -> str:
    """Return ``"name"`` for a plain lower-case SQL identifier (``ValueError`` otherwise)."""
    if _IDENTIFIER.fullmatch(name) is None:
        raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    return f'"{name}"'


def _refuse(schema: str, name: str, message: str, record: str = "NULL") -> str:
    return f"""
CREATE OR REPLACE FUNCTION {schema}.{name}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RAISE EXCEPTION '{message}', TG_TABLE_NAME USING ERRCODE = 'P0001';
    RETURN {record};
END $fn$;"""


def log_schema_sql(schema: str, writer: str | None = None, reader: str | None = None) -> str:
    """The idempotent DDL of the log schema, its triggers, and the grants to its roles."""
    s = quote_identifier(schema)
    parts = [
        f"""
CREATE SCHEMA IF NOT EXISTS {s};
REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.leaves (
    idx bigint PRIMARY KEY CHECK (idx >= 0),
    leaf bytea NOT NULL,
    leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32)
);
CREATE TABLE IF NOT EXISTS {s}.payloads (
    idx bigint PRIMARY KEY REFERENCES {s}.leaves(idx),
    key_id text NOT NULL,
    account_tag bytea,
    sealed bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS payloads_by_tag ON {s}.payloads(account_tag);
CREATE TABLE IF NOT EXISTS {s}.records (
    idx bigint PRIMARY KEY REFERENCES {s}.leaves(idx),
    audit_id text NOT NULL UNIQUE,
    kind text NOT NULL,
    event_id text NOT NULL,
    recipient_id text,
    order_ref text,
    outcome text,
    occurred_at bigint NOT NULL,
    reason_codes text NOT NULL,
    content_mac bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_event ON {s}.records(event_id);
CREATE INDEX IF NOT EXISTS records_by_recipient ON {s}.records(recipient_id);
CREATE INDEX IF NOT EXISTS records_by_order ON {s}.records(order_ref);
CREATE INDEX IF NOT EXISTS records_by_time ON {s}.records(occurred_at);
CREATE TABLE IF NOT EXISTS {s}.sources (
    topic text NOT NULL,
    part integer NOT NULL,
    off bigint NOT NULL,
    content_mac bytea NOT NULL,
    idx bigint REFERENCES {s}.leaves(idx),
    PRIMARY KEY (topic, part, off, content_mac)
);
CREATE TABLE IF NOT EXISTS {s}.erased (
    idx bigint PRIMARY KEY REFERENCES {s}.leaves(idx),
    erasure_idx bigint NOT NULL REFERENCES {s}.leaves(idx)
);
CREATE TABLE IF NOT EXISTS {s}.checkpoints (
    size bigint PRIMARY KEY,
    note text NOT NULL,
    peaks bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.traces (
    idx bigint PRIMARY KEY REFERENCES {s}.leaves(idx),
    trace_id text NOT NULL CHECK (length(trace_id) = 32)
);
CREATE TABLE IF NOT EXISTS {s}.positions (
    topic text NOT NULL,
    part integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, part)
);""",
        _refuse(s, "refuse_change", "audit log: % is append-only", "NULL"),
        f"""
CREATE OR REPLACE FUNCTION {s}.leaves_next_index() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    first_idx bigint;
    last_idx bigint;
    inserted bigint;
    below bigint;
BEGIN
    -- Once per statement (an INSERT or a COPY of a whole batch): the new rows must be
    -- exactly the indices following those already there, with none above them.
    SELECT min(idx), max(idx), count(*) INTO first_idx, last_idx, inserted FROM new_leaves;
    IF inserted = 0 THEN
        RETURN NULL;
    END IF;
    SELECT COALESCE(max(idx), -1) INTO below FROM {s}.leaves WHERE idx < first_idx;
    IF first_idx <> below + 1 OR last_idx - first_idx + 1 <> inserted
       OR EXISTS (SELECT 1 FROM {s}.leaves WHERE idx > last_idx) THEN
        RAISE EXCEPTION 'audit log: a leaf is appended at the next index only'
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
END $fn$;
CREATE OR REPLACE FUNCTION {s}.checkpoints_grow() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.size <= (SELECT COALESCE(max(size), -1) FROM {s}.checkpoints) THEN
        RAISE EXCEPTION 'audit log: checkpoints only grow' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $fn$;
CREATE OR REPLACE FUNCTION {s}.payloads_insert_unerased() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM new_payloads n JOIN {s}.erased e ON e.idx = n.idx) THEN
        RAISE EXCEPTION 'audit log: payloads are written once' USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
END $fn$;
CREATE OR REPLACE FUNCTION {s}.payloads_delete_erased_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {s}.erased WHERE idx = OLD.idx) THEN
        RAISE EXCEPTION 'audit log: only erased payloads may be deleted'
            USING ERRCODE = 'P0001';
    END IF;
    RETURN OLD;
END $fn$;
DROP TRIGGER IF EXISTS leaves_next_index ON {s}.leaves;
CREATE TRIGGER leaves_next_index AFTER INSERT ON {s}.leaves
    REFERENCING NEW TABLE AS new_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.leaves_next_index();
CREATE OR REPLACE TRIGGER checkpoints_grow BEFORE INSERT ON {s}.checkpoints
    FOR EACH ROW EXECUTE FUNCTION {s}.checkpoints_grow();
DROP TRIGGER IF EXISTS payloads_insert_unerased ON {s}.payloads;
CREATE TRIGGER payloads_insert_unerased AFTER INSERT ON {s}.payloads
    REFERENCING NEW TABLE AS new_payloads
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.payloads_insert_unerased();
CREATE OR REPLACE TRIGGER payloads_delete_erased_only BEFORE DELETE ON {s}.payloads
    FOR EACH ROW EXECUTE FUNCTION {s}.payloads_delete_erased_only();
ALTER TABLE {s}.leaves ENABLE ALWAYS TRIGGER leaves_next_index;
ALTER TABLE {s}.checkpoints ENABLE ALWAYS TRIGGER checkpoints_grow;
ALTER TABLE {s}.payloads ENABLE ALWAYS TRIGGER payloads_insert_unerased;
ALTER TABLE {s}.payloads ENABLE ALWAYS TRIGGER payloads_delete_erased_only;""",
    ]
    for table in _APPEND_ONLY:
        parts.append(f"""
CREATE OR REPLACE TRIGGER {table}_no_update BEFORE UPDATE ON {s}.{table}
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {s}.{table}
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
ALTER TABLE {s}.{table} ENABLE ALWAYS TRIGGER {table}_no_update;
ALTER TABLE {s}.{table} ENABLE ALWAYS TRIGGER {table}_no_truncate;""")
        if table != "payloads":
            parts.append(f"""
CREATE OR REPLACE TRIGGER {table}_no_delete BEFORE DELETE ON {s}.{table}
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
ALTER TABLE {s}.{table} ENABLE ALWAYS TRIGGER {table}_no_delete;""")
    parts.append(f"""
REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;""")
    if writer is not None:
        w = quote_identifier(writer)
        appendable = ", ".join(f"{s}.{t}" for t in _APPEND_ONLY)
        parts.append(f"""
GRANT USAGE ON SCHEMA {s} TO {w};
GRANT SELECT, INSERT ON {appendable} TO {w};
GRANT DELETE ON {s}.payloads TO {w};
GRANT SELECT, INSERT, UPDATE ON {s}.positions TO {w};""")
    if reader is not None:
        r = quote_identifier(reader)
        parts.append(f"""
GRANT USAGE ON SCHEMA {s} TO {r};
GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r};""")
    return "\n".join(parts) + "\n"


def keystore_schema_sql(schema: str, role: str | None = None) -> str:
    """The idempotent DDL of the key store schema and the grants to its role."""
    k = quote_identifier(schema)
    sql = f"""
CREATE SCHEMA IF NOT EXISTS {k};
REVOKE ALL ON SCHEMA {k} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {k}.subject_keys (
    key_id text PRIMARY KEY,
    account_tag bytea UNIQUE,
    key bytea NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {k}.subject_keys FROM PUBLIC;
"""
    if role is not None:
        r = quote_identifier(role)
        sql += f"""GRANT USAGE ON SCHEMA {k} TO {r};
GRANT SELECT, INSERT, DELETE ON {k}.subject_keys TO {r};
"""
    return sql


def heads_schema_sql(schema: str, writer: str | None = None, reader: str | None = None) -> str:
    """The idempotent DDL of the heads notes of a sharded trail (:mod:`audit_sink.heads`):
    one append-only table, each note at the next sequence number."""
    s = quote_identifier(schema)
    sql = f"""
CREATE SCHEMA IF NOT EXISTS {s};
REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {s}.heads (
    seq bigint PRIMARY KEY CHECK (seq >= 1),
    note text NOT NULL
);
{_refuse(s, "refuse_change", "audit heads: % is append-only")}
CREATE OR REPLACE FUNCTION {s}.heads_next_seq() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.seq <> COALESCE((SELECT max(seq) FROM {s}.heads), 0) + 1 THEN
        RAISE EXCEPTION 'heads note % is not the next one', NEW.seq USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $fn$;
CREATE OR REPLACE TRIGGER heads_next_seq BEFORE INSERT ON {s}.heads
    FOR EACH ROW EXECUTE FUNCTION {s}.heads_next_seq();
CREATE OR REPLACE TRIGGER heads_no_update BEFORE UPDATE OR DELETE ON {s}.heads
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE OR REPLACE TRIGGER heads_no_truncate BEFORE TRUNCATE ON {s}.heads
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
ALTER TABLE {s}.heads ENABLE ALWAYS TRIGGER heads_next_seq;
ALTER TABLE {s}.heads ENABLE ALWAYS TRIGGER heads_no_update;
ALTER TABLE {s}.heads ENABLE ALWAYS TRIGGER heads_no_truncate;
REVOKE ALL ON {s}.heads FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;
"""
    if writer is not None:
        w = quote_identifier(writer)
        sql += f"GRANT USAGE ON SCHEMA {s} TO {w};\nGRANT SELECT, INSERT ON {s}.heads TO {w};\n"
    if reader is not None:
        r = quote_identifier(reader)
        sql += f"GRANT USAGE ON SCHEMA {s} TO {r};\nGRANT SELECT ON {s}.heads TO {r};\n"
    return sql
