"""Audit sink: the tamper-evident trail of the guard's decisions and governance changes.

Pure core: :mod:`~audit_sink.merkle` (RFC 6962 tree and proofs),
:mod:`~audit_sink.checkpoint` (C2SP signed-note checkpoints), :mod:`~audit_sink.proof_bundle`
(C2SP tlog-proof), :mod:`~audit_sink.canonical` and :mod:`~audit_sink.leaf` (the leaf
format), :mod:`~audit_sink.sealing` (AES-GCM per subject, keyed tags),
:mod:`~audit_sink.plan` (what a consumed batch appends), :mod:`~audit_sink.verify` (the
verification algorithm) and :mod:`~audit_sink.report` (its findings),
:mod:`~audit_sink.render`.

Ports and adapters: :mod:`~audit_sink.store` with :mod:`~audit_sink.store_sqlite` and
:mod:`~audit_sink.store_postgres` (DDL in :mod:`~audit_sink.pg_schema`);
:mod:`~audit_sink.keystore` with :mod:`~audit_sink.keystore_sqlite` and
:mod:`~audit_sink.keystore_postgres`; :mod:`~audit_sink.archive` (checkpoint files);
:mod:`~audit_sink.signing` (the key file).

Application: :mod:`~audit_sink.writer` (``AuditLog``: ingest, checkpoints, erasure),
:mod:`~audit_sink.verification`, :mod:`~audit_sink.proofs`, :mod:`~audit_sink.query`,
:mod:`~audit_sink.export`; wired by :mod:`~audit_sink.bootstrap` from
:mod:`~audit_sink.settings`; driven by :mod:`~audit_sink.cli`. See docs/audit-trail.md.
"""
