#!/usr/bin/env bash
# A real PostgreSQL server (Debian's packaged cluster) for development and integration tests.
#
# Usage: scripts/postgres.sh install|start|stop|status|dsn
#
#   install  apt-get install postgresql when the server binaries are missing.
#   start    install if needed, create the Debian cluster '<version> main' if it is missing,
#            make it listen on 127.0.0.1:POSTGRES_PORT only, start it, wait until pg_isready,
#            create (idempotently) the role and the test database it owns, print the DSN.
#   stop     stop the cluster (nothing to do when PostgreSQL is not installed).
#   status   exit 0 when the cluster is running and accepts the test role's login; print the DSN.
#   dsn      print the DSN (e.g. export SHARING_GUARD_TEST_PG_DSN=$(scripts/postgres.sh dsn)).
#
# Settings (environment; defaults in brackets):
#   POSTGRES_VERSION [newest installed, else what apt installs]   POSTGRES_PORT [5432]
#   POSTGRES_DB [sharing_guard_test]   POSTGRES_USER [sharing_guard]
#   PGPASSWORD_TEST [sharing_guard]    the role's password. TEST-ONLY: the server listens on
#                                      loopback only and holds nothing but test data; never
#                                      reuse this password or this setup for real data.
#   POSTGRES_START_TIMEOUT [60]
#
# The role can log in, create databases and roles (tests of privileges need a role with fewer
# rights than the owner) and owns the test database; it is not a superuser.
# Runs as root (it becomes the postgres user with runuser) or as the postgres user.
set -euo pipefail

readonly PG_HOST=127.0.0.1
POSTGRES_PORT=${POSTGRES_PORT:-5432}
POSTGRES_DB=${POSTGRES_DB:-sharing_guard_test}
POSTGRES_USER=${POSTGRES_USER:-sharing_guard}
PGPASSWORD_TEST=${PGPASSWORD_TEST:-sharing_guard}
POSTGRES_START_TIMEOUT=${POSTGRES_START_TIMEOUT:-60}
readonly CLUSTER=main

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
since() { awk -v from="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - from }'; }
die() { log "error: $*"; exit 1; }

if ! [[ $POSTGRES_PORT =~ ^[0-9]+$ ]] || ((POSTGRES_PORT < 1 || POSTGRES_PORT > 65535)); then
    die "POSTGRES_PORT must be a TCP port number, got '$POSTGRES_PORT'"
fi
for name in POSTGRES_DB POSTGRES_USER; do
    [[ ${!name} =~ ^[a-z_][a-z0-9_]*$ ]] || die "$name must be a plain lower-case SQL identifier"
done

# Newest server version installed (the directory name under /usr/lib/postgresql).
installed_version() {
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x $bin ]] && basename "$(dirname "$(dirname "$bin")")"
    done | sort -n | tail -n1
}

pg_version() {
    local version=${POSTGRES_VERSION:-$(installed_version)}
    [[ -n $version ]] || die "no PostgreSQL server installed (scripts/postgres.sh install)"
    [[ -x /usr/lib/postgresql/$version/bin/postgres ]] ||
        die "PostgreSQL $version is not installed (POSTGRES_VERSION=$version)"
    echo "$version"
}

cmd_install() {
    if command -v pg_ctlcluster >/dev/null && [[ -n $(installed_version) ]]; then
        log "PostgreSQL $(pg_version) already installed"
        return 0
    fi
    command -v apt-get >/dev/null || die "PostgreSQL missing and apt-get not available"
    ((EUID == 0)) || die "PostgreSQL missing; installing it needs root (apt-get)"
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    log "apt-get install postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    log "installed PostgreSQL $(pg_version)"
}

as_postgres() {
    if [[ $(id -un) == postgres ]]; then
        "$@"
    elif ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        die "run as root or as the postgres user"
    fi
}

cluster_exists() { pg_lsclusters -h "$1" "$CLUSTER" >/dev/null 2>&1; }

cluster_online() {
    # pg_lsclusters -h: version cluster port status owner datadir logfile
    [[ $(pg_lsclusters -h "$1" "$CLUSTER" 2>/dev/null | awk '{print $4}') == online* ]]
}

# Sets a server parameter in postgresql.conf; prints "changed" when the value was different.
# (Only for values pg_conftool quotes right: it writes 127.0.0.1 unquoted, which breaks the file.)
set_parameter() {
    local version=$1 name=$2 value=$3 current
    current=$(pg_conftool -s "$version" "$CLUSTER" show "$name" 2>/dev/null || true)
    if [[ $current != "$value" ]]; then
        pg_conftool "$version" "$CLUSTER" set "$name" "$value"
        echo changed
    fi
}

# Loopback only, in a drop-in under conf.d (Debian's postgresql.conf includes that directory
# last, so this wins); prints "changed" when the file was written.
set_listen_address() {
    local file="/etc/postgresql/$1/$CLUSTER/conf.d/sharing-guard.conf" content
    content="# Written by scripts/postgres.sh (sharing-guard): test server, loopback only.
listen_addresses = '$PG_HOST'"
    if [[ ! -f $file || $(<"$file") != "$content" ]]; then
        mkdir -p "$(dirname "$file")"
        printf '%s\n' "$content" >"$file"
        echo changed
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/$PG_HOST/$1") 2>/dev/null; }

urlencode() {
    local text=$1 i char out=""
    for ((i = 0; i < ${#text}; i++)); do
        char=${text:i:1}
        case $char in
            [a-zA-Z0-9.~_-]) out+=$char ;;
            *) out+=$(printf '%%%02X' "'$char") ;;
        esac
    done
    echo "$out"
}

dsn() {
    echo "postgresql://$POSTGRES_USER:$(urlencode "$PGPASSWORD_TEST")@$PG_HOST:$POSTGRES_PORT/$POSTGRES_DB"
}

# A psql single-quoted argument: backslashes and quotes doubled.
psql_quote() {
    local text=${1//\\/\\\\}
    printf "'%s'" "${text//\'/\'\'}"
}

create_role_and_database() {
    # The password goes through stdin, not the command line (visible in ps).
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$POSTGRES_PORT" -d postgres >/dev/null <<EOF
\set role $(psql_quote "$POSTGRES_USER")
\set db $(psql_quote "$POSTGRES_DB")
\set password $(psql_quote "$PGPASSWORD_TEST")
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role') \gexec
-- The audit tests prove that session_replication_role=replica cannot bypass the
-- append-only triggers; the test role must be allowed to try (PostgreSQL 15+).
SELECT format('GRANT SET ON PARAMETER session_replication_role TO %I', :'role') \gexec
EOF
}

# The test role logs in over TCP with its password: what the tests will do.
role_can_log_in() {
    PGPASSWORD=$PGPASSWORD_TEST PGCONNECT_TIMEOUT=5 psql -X -q -h "$PG_HOST" -p "$POSTGRES_PORT" \
        -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc 'SELECT 1' >/dev/null 2>&1
}

cmd_start() {
    cmd_install
    local version started=$EPOCHREALTIME
    version=$(pg_version)
    if ! cluster_exists "$version"; then
        log "creating cluster $version/$CLUSTER"
        pg_createcluster "$version" "$CLUSTER" >/dev/null
    fi
    local changed
    changed=$(set_listen_address "$version")$(set_parameter "$version" port "$POSTGRES_PORT")
    if cluster_online "$version"; then
        if [[ -n $changed ]]; then
            log "restarting cluster $version/$CLUSTER to listen on $PG_HOST:$POSTGRES_PORT"
            pg_ctlcluster "$version" "$CLUSTER" restart
        fi
    else
        if port_in_use "$POSTGRES_PORT"; then
            ss -ltnpH "sport = :$POSTGRES_PORT" >&2 2>/dev/null || true
            die "$PG_HOST:$POSTGRES_PORT is already in use by another process; not starting"
        fi
        log "starting cluster $version/$CLUSTER on $PG_HOST:$POSTGRES_PORT"
        pg_ctlcluster "$version" "$CLUSTER" start ||
            { tail -n 30 "/var/log/postgresql/postgresql-$version-$CLUSTER.log" >&2 || true; die "start failed"; }
    fi
    local deadline=$((SECONDS + POSTGRES_START_TIMEOUT))
    until pg_isready -q -h "$PG_HOST" -p "$POSTGRES_PORT" -t 2; do
        if ((SECONDS >= deadline)); then
            tail -n 30 "/var/log/postgresql/postgresql-$version-$CLUSTER.log" >&2 || true
            die "PostgreSQL not ready on $PG_HOST:$POSTGRES_PORT after ${POSTGRES_START_TIMEOUT} s"
        fi
        sleep 0.5
    done
    create_role_and_database
    role_can_log_in || die "role $POSTGRES_USER cannot log in to $POSTGRES_DB over TCP (pg_hba.conf?)"
    log "ready in $(since "$started") s: PostgreSQL $version, database $POSTGRES_DB owned by $POSTGRES_USER (test-only password)"
    dsn
}

cmd_stop() {
    local version
    if [[ -z ${POSTGRES_VERSION:-} && -z $(installed_version) ]]; then
        log "not installed, so not running"
        return 0
    fi
    version=$(pg_version)
    if cluster_exists "$version" && cluster_online "$version"; then
        pg_ctlcluster "$version" "$CLUSTER" stop
        log "stopped cluster $version/$CLUSTER"
    else
        log "not running"
    fi
}

cmd_status() {
    local version
    version=$(pg_version)
    if ! cluster_exists "$version" || ! cluster_online "$version"; then
        log "cluster $version/$CLUSTER not running"
        return 1
    fi
    pg_isready -q -h "$PG_HOST" -p "$POSTGRES_PORT" -t 5 ||
        { log "cluster $version/$CLUSTER running but not accepting connections on $PG_HOST:$POSTGRES_PORT"; return 1; }
    role_can_log_in ||
        { log "running, but $POSTGRES_USER cannot log in to $POSTGRES_DB (scripts/postgres.sh start)"; return 1; }
    log "running and ready: PostgreSQL $version on $PG_HOST:$POSTGRES_PORT"
    dsn
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    dsn) dsn ;;
    *)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
