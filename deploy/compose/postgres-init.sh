#!/usr/bin/env bash
# Runs once, when the compose PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# creates the audit trail's group roles (no login) and two login roles, each a member of only
# what its process needs (docs/audit-trail.md section 7; docs/operations.md):
#   audit_sink  (audit-sink ingest): audit_writer + audit_keys_rw
#   audit_api   (audit-sink serve):  audit_reader + audit_keys_rw
# The passwords come from the environment (AUDIT_SINK_DB_PASSWORD, AUDIT_API_DB_PASSWORD),
# never from this file. The schemas themselves are installed by the audit-schema service.
set -euo pipefail
: "${AUDIT_SINK_DB_PASSWORD:?}" "${AUDIT_API_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v sink_password="$AUDIT_SINK_DB_PASSWORD" -v api_password="$AUDIT_API_DB_PASSWORD" <<'SQL'
CREATE ROLE audit_writer NOLOGIN;
CREATE ROLE audit_reader NOLOGIN;
CREATE ROLE audit_keys_rw NOLOGIN;
CREATE ROLE audit_sink LOGIN PASSWORD :'sink_password' IN ROLE audit_writer, audit_keys_rw;
CREATE ROLE audit_api LOGIN PASSWORD :'api_password' IN ROLE audit_reader, audit_keys_rw;
SQL
