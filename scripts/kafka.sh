#!/usr/bin/env bash
# A real, single-node Apache Kafka 4 broker for development, integration tests and benchmarks.
#
# Usage: scripts/kafka.sh install|start|stop|status|topics|reset
#
#   install  fetch Apache Kafka (org.apache.kafka:kafka_2.13 and kafka-tools) from Maven Central
#            into the cache; installs Java 17 and Maven with apt-get if they are missing.
#            Skips when the version is already there.
#   start    install if needed, format the KRaft storage once (combined broker+controller,
#            node 1, loopback only), start the broker in the background, wait until it answers
#            a metadata request with its own cluster id, create the topics, print the bootstrap
#            address. Does nothing but check readiness when it is already running.
#   stop     SIGTERM, wait KAFKA_STOP_TIMEOUT seconds, then SIGKILL.
#   status   exit 0 when the broker started here is running and answers; 1 otherwise.
#   topics   create the topics of scripts/kafka/topics.txt (idempotent; partitions only grow).
#   reset    stop, then delete all data and logs (not the installed jars).
#
# Settings (environment; defaults in brackets):
#   KAFKA_VERSION [4.3.1]                 KAFKA_PORT [19092]  KAFKA_CONTROLLER_PORT [19093]
#   KAFKA_CACHE_DIR [<repo>/.cache/kafka] installed jars, one directory per version, and the
#                                         Maven repository they came through
#   KAFKA_RUN_DIR [<repo>/.cache/kafka-run] config, data (log.dirs), logs, pid file
#   KAFKA_HEAP_OPTS [-Xms256m -Xmx1g]     KAFKA_START_TIMEOUT [60]  KAFKA_STOP_TIMEOUT [30]
#   KAFKA_AUTO_CREATE_TOPICS [false]      KAFKA_TOPICS_FILE [scripts/kafka/topics.txt]
#   KAFKA_TOPIC_PARTITIONS, KAFKA_TOPIC_PARTITIONS_<NAME>  partition overrides (see topics.txt)
#   PYTHON [<repo>/.venv/bin/python]      an interpreter with kafka-python (`make setup`)
#
# Auto-creation is off by default: a misspelt topic name then fails loudly instead of
# becoming a one-partition topic, and the guard creates its compacted changelog topics itself
# at start with CreateTopics. Set KAFKA_AUTO_CREATE_TOPICS=true to allow it.
#
# The script never talks to a broker it did not start: if the ports are taken by anything
# else, `start` fails, and readiness requires the cluster id written by `start`'s format.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly KAFKA_HOST=127.0.0.1
KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_CACHE_DIR=${KAFKA_CACHE_DIR:-$REPO_ROOT/.cache/kafka}
KAFKA_RUN_DIR=${KAFKA_RUN_DIR:-$REPO_ROOT/.cache/kafka-run}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_AUTO_CREATE_TOPICS=${KAFKA_AUTO_CREATE_TOPICS:-false}
KAFKA_TOPICS_FILE=${KAFKA_TOPICS_FILE:-$REPO_ROOT/scripts/kafka/topics.txt}
PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}

readonly POM="$REPO_ROOT/scripts/kafka/pom.xml"
readonly ADMIN_PY="$REPO_ROOT/scripts/kafka/topics.py"
readonly INSTALL_DIR="$KAFKA_CACHE_DIR/$KAFKA_VERSION"
readonly LIB_DIR="$INSTALL_DIR/libs"
readonly INSTALLED_MARKER="$INSTALL_DIR/.installed"
readonly CONFIG_DIR="$KAFKA_RUN_DIR/config"
readonly DATA_DIR="$KAFKA_RUN_DIR/data"
readonly LOG_DIR="$KAFKA_RUN_DIR/logs"
readonly PID_FILE="$KAFKA_RUN_DIR/kafka.pid"
readonly SERVER_PROPERTIES="$CONFIG_DIR/server.properties"
readonly LOG4J_PROPERTIES="$CONFIG_DIR/log4j2.properties"
readonly BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
since() { awk -v from="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - from }'; }
die() { log "error: $*"; exit 1; }

require_port() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
        die "$1 must be a TCP port number, got '$2'"
    fi
}
require_port KAFKA_PORT "$KAFKA_PORT"
require_port KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
[[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"

# ---------------------------------------------------------------------------------------------
# install

apt_updated=false
apt_install() {
    command -v apt-get >/dev/null || die "$* missing and apt-get not available; install them by hand"
    ((EUID == 0)) || die "$* missing; installing them needs root (apt-get)"
    if ! $apt_updated; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        apt_updated=true
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

java_major() {
    # `java -version` prints e.g. 'openjdk version "17.0.15" 2025-04-15' on stderr.
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

ensure_java() {
    local major=""
    command -v java >/dev/null && major=$(java_major)
    if [[ -z $major ]] || ((major < 17)); then
        apt_install openjdk-17-jre-headless
        major=$(java_major)
        ((major >= 17)) || die "Kafka 4 needs Java 17+, found '${major:-none}' after apt-get"
    fi
}

ensure_maven() {
    command -v mvn >/dev/null || apt_install maven
}

cmd_install() {
    if [[ -f $INSTALLED_MARKER ]]; then
        log "Kafka $KAFKA_VERSION already installed in $LIB_DIR"
        ensure_java
        return 0
    fi
    ensure_java
    ensure_maven
    local started=$EPOCHREALTIME tmp="$INSTALL_DIR.tmp"
    log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIB_DIR"
    rm -rf "$tmp"
    mkdir -p "$tmp" "$KAFKA_CACHE_DIR/m2"
    # A repository of our own under the cache: removing the cache really starts cold, and
    # nothing is written to ~/.m2.
    local output
    if ! output=$(mvn -q -B -Dstyle.color=never -f "$POM" \
        -Dmaven.repo.local="$KAFKA_CACHE_DIR/m2" \
        -Dkafka.version="$KAFKA_VERSION" \
        -DoutputDirectory="$tmp/libs" \
        dependency:copy-dependencies 2>&1); then
        # Maven's quiet mode still writes colour resets; strip escape sequences.
        printf '%s\n' "$output" | sed 's/\x1b\[[0-9;]*m//g' >&2
        die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
    fi
    [[ -f $tmp/libs/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar not fetched"
    echo "$KAFKA_VERSION" >"$tmp/.installed"
    rm -rf "$INSTALL_DIR"
    mv "$tmp" "$INSTALL_DIR"
    log "installed Kafka $KAFKA_VERSION ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars) in $(since "$started") s"
}

# ---------------------------------------------------------------------------------------------
# process bookkeeping

# The pid of the broker started here, if it is still that broker (pid files outlive reboots).
running_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $SERVER_PROPERTIES" || return 1
    echo "$pid"
}

port_in_use() {
    # Succeeds when something accepts connections on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

describe_listener() {
    if command -v ss >/dev/null; then
        ss -ltnpH "sport = :$1" 2>/dev/null || true
    fi
}

ensure_python() {
    [[ -x $PYTHON ]] || die "no Python at $PYTHON (run 'make setup' first, or set PYTHON)"
    "$PYTHON" -c 'import kafka' 2>/dev/null ||
        die "$PYTHON cannot import kafka-python (run 'make setup' first, or set PYTHON)"
}

cluster_id() {
    sed -n 's/^cluster\.id=//p' "$DATA_DIR/meta.properties" 2>/dev/null
}

admin() {
    "$PYTHON" "$ADMIN_PY" --bootstrap-server "$BOOTSTRAP" "$@"
}

show_log_tail() {
    local f
    for f in "$LOG_DIR/kafka.out" "$LOG_DIR/server.log"; do
        [[ -s $f ]] || continue
        log "last lines of $f:"
        tail -n 30 "$f" >&2
    done
}

# ---------------------------------------------------------------------------------------------
# start

write_config() {
    mkdir -p "$CONFIG_DIR" "$DATA_DIR" "$LOG_DIR"
    cat >"$SERVER_PROPERTIES" <<EOF
# Written by scripts/kafka.sh start; edits are overwritten. One node, broker and controller
# (KRaft combined mode), loopback only, single-replica defaults.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR

auto.create.topics.enable=$KAFKA_AUTO_CREATE_TOPICS
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers join at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
    cat >"$LOG4J_PROPERTIES" <<'EOF'
# Written by scripts/kafka.sh start: the broker's log in logs/server.log, rolled at 50 MB.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 5
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state-change.name = state.change.logger
logger.state-change.level = WARN
EOF
}

java_cmd() {
    # Word splitting of KAFKA_HEAP_OPTS is intended: it holds several JVM options.
    # shellcheck disable=SC2086
    echo java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true
}

format_storage() {
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    # A cluster id is a base64url UUID without padding (what `StorageTool random-uuid` prints),
    # drawn again while it begins with '-' (as Kafka's own Uuid.randomUuid does): the tools'
    # argument parsers would read such an id as an option (a 1-in-64 draw; it failed a run here).
    local id
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    log "formatting KRaft storage in $DATA_DIR (cluster id $id)"
    # shellcheck disable=SC2046
    $(java_cmd) -Dlog4j2.configurationFile="$LOG4J_PROPERTIES" -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$LIB_DIR/*" kafka.tools.StorageTool format \
        --cluster-id "$id" --config "$SERVER_PROPERTIES" >>"$LOG_DIR/kafka.out" 2>&1 ||
        { show_log_tail; die "formatting the storage failed"; }
}

cmd_start() {
    local pid
    if pid=$(running_pid); then
        ensure_python
        admin wait --cluster-id "$(cluster_id)" --pid "$pid" --timeout "$KAFKA_START_TIMEOUT" ||
            { show_log_tail; die "broker (pid $pid) is running but not answering on $BOOTSTRAP"; }
        log "already running (pid $pid)"
        admin create-topics --file "$KAFKA_TOPICS_FILE"
        echo "$BOOTSTRAP"
        return 0
    fi
    rm -f "$PID_FILE"
    cmd_install
    ensure_python
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_in_use "$port"; then
            describe_listener "$port" >&2
            die "$KAFKA_HOST:$port is already in use by another process; not starting (set KAFKA_PORT / KAFKA_CONTROLLER_PORT, or stop it)"
        fi
    done
    write_config
    format_storage
    echo "$KAFKA_VERSION" >"$KAFKA_RUN_DIR/version"
    local started=$EPOCHREALTIME
    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller $KAFKA_HOST:$KAFKA_CONTROLLER_PORT, logs in $LOG_DIR)"
    # setsid: the broker leaves this shell's session and outlives it.
    # shellcheck disable=SC2046
    setsid $(java_cmd) -Dlog4j2.configurationFile="$LOG4J_PROPERTIES" -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$LIB_DIR/*" kafka.Kafka "$SERVER_PROPERTIES" >>"$LOG_DIR/kafka.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    if ! admin wait --cluster-id "$(cluster_id)" --pid "$pid" --timeout "$KAFKA_START_TIMEOUT"; then
        show_log_tail
        terminate "$pid"
        rm -f "$PID_FILE"
        die "Kafka did not become ready on $BOOTSTRAP within ${KAFKA_START_TIMEOUT} s (stopped it; logs in $LOG_DIR)"
    fi
    log "ready in $(since "$started") s (pid $pid)"
    admin create-topics --file "$KAFKA_TOPICS_FILE"
    echo "$BOOTSTRAP"
}

# ---------------------------------------------------------------------------------------------
# stop, status, topics, reset

# SIGTERM (a controlled shutdown), then SIGKILL after KAFKA_STOP_TIMEOUT seconds.
terminate() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still running after ${KAFKA_STOP_TIMEOUT} s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    terminate "$pid"
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    pid=$(running_pid) || { log "not running"; return 1; }
    ensure_python
    if admin wait --cluster-id "$(cluster_id)" --pid "$pid" --timeout 10; then
        log "running and ready (pid $pid, Kafka $(cat "$KAFKA_RUN_DIR/version" 2>/dev/null || echo "?"))"
        echo "$BOOTSTRAP"
        return 0
    fi
    log "running (pid $pid) but not answering on $BOOTSTRAP"
    return 1
}

cmd_topics() {
    running_pid >/dev/null || die "not running (scripts/kafka.sh start)"
    ensure_python
    admin create-topics --file "$KAFKA_TOPICS_FILE"
}

cmd_reset() {
    cmd_stop
    log "deleting $KAFKA_RUN_DIR"
    rm -rf "$KAFKA_RUN_DIR"
}

main() {
    case "${1:-}" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        topics) cmd_topics ;;
        reset) cmd_reset ;;
        *)
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
            exit 2
            ;;
    esac
}

main "$@"
