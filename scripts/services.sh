#!/usr/bin/env bash
# Install and run signald's real test servers on 127.0.0.1:
#   - Redis 7 (Debian's redis-server), AOF on, own instance (not the system one)
#   - ClickHouse 26.7 (the engine inside chDB's libchdb.so), native protocol,
#     served by scripts/chdb_launcher.c
#
# Usage: scripts/services.sh up|down|status|env
#   eval "$(scripts/services.sh env)"   # exports SIGNALD_REDIS_ADDR, SIGNALD_CLICKHOUSE_ADDR
#
# Environment:
#   SIGNALD_SERVICES_DIR      state dir (data, logs, pids, bin)   default: <repo>/.services
#   SIGNALD_REDIS_PORT        default 16379
#   SIGNALD_CH_PORT           default 19000
#   SIGNALD_CACHE             download cache  default: ${XDG_CACHE_HOME:-$HOME/.cache}/signald
#   SIGNALD_SERVICES_TIMEOUT  seconds to wait for each server in `up` (default 120)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)

SVC_DIR=${SIGNALD_SERVICES_DIR:-$REPO_ROOT/.services}
REDIS_PORT=${SIGNALD_REDIS_PORT:-16379}
CH_PORT=${SIGNALD_CH_PORT:-19000}
# A local three-master Redis Cluster from the same redis-server binary, for
# the transport's conformance suite on Cluster.
CLUSTER_PORTS=${SIGNALD_REDIS_CLUSTER_PORTS:-"17001 17002 17003"}
WAIT_SECS=${SIGNALD_SERVICES_TIMEOUT:-120}
HOST=127.0.0.1

CHDB_VERSION=26.7.3-stable.1
CHDB_PKG=@chdb/lib-linux-x64-gnu
CHDB_TGZ_NAME=chdb-lib-linux-x64-gnu-$CHDB_VERSION.tgz
CACHE_DIR=${SIGNALD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signald}
CHDB_DIR=$CACHE_DIR/chdb/$CHDB_VERSION
CHDB_LIB=$CHDB_DIR/libchdb.so

LAUNCHER_SRC=$SCRIPT_DIR/chdb_launcher.c
# The query that keeps the engine serving: it never ends (one row every 3 s,
# the per-block sleep limit), and the TCP listener lives as long as it runs.
CH_SERVE_QUERY="SYSTEM START LISTEN TCP; SELECT sleepEachRow(3) FROM system.numbers SETTINGS max_block_size=1"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

for p in "$REDIS_PORT" "$CH_PORT" "$WAIT_SECS"; do
    [[ $p =~ ^[0-9]+$ ]] || die "not a number: '$p' (check SIGNALD_REDIS_PORT, SIGNALD_CH_PORT, SIGNALD_SERVICES_TIMEOUT)"
done
[[ $REDIS_PORT != "$CH_PORT" ]] || die "SIGNALD_REDIS_PORT and SIGNALD_CH_PORT are both $REDIS_PORT"

# Absolute paths only: the servers and the pid files must not depend on the cwd.
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
SVC_DIR=$(abspath "$SVC_DIR")
CACHE_DIR=$(abspath "$CACHE_DIR")
CHDB_DIR=$CACHE_DIR/chdb/$CHDB_VERSION
CHDB_LIB=$CHDB_DIR/libchdb.so

LOG_DIR=$SVC_DIR/logs
REDIS_DATA=$SVC_DIR/redis
REDIS_PID=$SVC_DIR/redis.pid
REDIS_LOG=$LOG_DIR/redis.log
CH_DATA=$SVC_DIR/clickhouse
CH_PID=$SVC_DIR/clickhouse.pid
CH_LOG=$LOG_DIR/clickhouse.log
LAUNCHER_BIN=$SVC_DIR/bin/chdb_launcher

# ---------------------------------------------------------------- helpers

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        as_root apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

need_cmd() { # need_cmd CMD DEBIAN-PACKAGE...
    local cmd=$1; shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    apt_install "$@"
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing $*"
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# read_pid FILE NAME-PATTERN: print the pid in FILE if that process is alive and
# its command line matches NAME-PATTERN; remove the file if it is stale.
read_pid() {
    local file=$1 pattern=$2 pid
    [[ -f $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file" || true)
    if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"; then
        printf '%s\n' "$pid"
        return 0
    fi
    log "removing stale pid file $file (pid ${pid:-?} is not running)"
    rm -f "$file"
    return 1
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

port_owner() {
    command -v ss >/dev/null 2>&1 && ss -ltnpH "sport = :$1" 2>/dev/null | head -n 3
    return 0
}

rss_mb() { awk '/^VmRSS/ {printf "%d MB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "? MB"; }

now_ms() { date +%s%3N; }
elapsed_s() { local d=$(( $(now_ms) - $1 )); printf '%d.%01d' $((d / 1000)) $(((d % 1000) / 100)); }

tail_log() {
    local f=$1
    [[ -f $f ]] || { log "(no log file $f)"; return 0; }
    log "---- last 40 lines of $f ----"
    tail -n 40 "$f" >&2 || true
    log "---- end of $f ----"
}

# stop_pid NAME PID PIDFILE: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 pidfile=$3 i
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do # 30 s
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 30 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        pid_alive "$pid" && die "$name (pid $pid) survived SIGKILL"
    fi
    rm -f "$pidfile"
    log "$name stopped"
}

# Serialises up/down on one state dir. Servers must not inherit fd 8 (nor the
# download lock's fd 7), or the lock would live as long as they do.
lock_state_dir() {
    mkdir -p "$SVC_DIR"
    exec 8>"$SVC_DIR/.lock"
    flock -w 900 8 || die "another services.sh is busy on $SVC_DIR"
}

# ---------------------------------------------------------------- Redis Cluster
cluster_pidfile() { printf '%s/redis-cluster-%s.pid\n' "$SVC_DIR" "$1"; }

cluster_up() {
    local p pidf dir t0 i ok first addrs=()
    for p in $CLUSTER_PORTS; do
        addrs+=("$HOST:$p")
        pidf=$(cluster_pidfile "$p")
        if read_pid "$pidf" redis-server >/dev/null 2>&1; then
            continue
        fi
        if port_open "$p"; then
            port_owner "$p" >&2
            die "port $HOST:$p is taken by another process (not ours); set SIGNALD_REDIS_CLUSTER_PORTS"
        fi
        dir=$SVC_DIR/redis-cluster/$p
        mkdir -p "$dir" "$LOG_DIR"
        redis-server --port "$p" --bind "$HOST" --dir "$dir" --daemonize yes --pidfile "$pidf" \
            --logfile "$LOG_DIR/redis-cluster-$p.log" --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --appendonly no --save "" 7>&- 8>&- ||
            { tail_log "$LOG_DIR/redis-cluster-$p.log"; die "redis-server (cluster node $p) failed to start"; }
    done
    t0=$(now_ms)
    for p in $CLUSTER_PORTS; do
        until timeout 5 redis-cli -h "$HOST" -p "$p" ping 2>/dev/null | grep -qx PONG; do
            (($(now_ms) - t0 > WAIT_SECS * 1000)) && { tail_log "$LOG_DIR/redis-cluster-$p.log"; die "cluster node $p did not answer PING"; }
            sleep 0.2
        done
    done
    first=${CLUSTER_PORTS%% *}
    # Restarted nodes keep the cluster in nodes.conf and report
    # cluster_state:fail until they have found each other again: form the
    # cluster only when the first node knows no other node.
    if redis-cli -h "$HOST" -p "$first" cluster info 2>/dev/null | grep -q '^cluster_known_nodes:1\b'; then
        log "forming a Redis Cluster of ${addrs[*]}"
        redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$LOG_DIR/redis-cluster-create.log" 2>&1 ||
            { tail_log "$LOG_DIR/redis-cluster-create.log"; die "redis-cli --cluster create failed"; }
    fi
    for ((i = 0; ; i++)); do
        ok=1
        for p in $CLUSTER_PORTS; do
            redis-cli -h "$HOST" -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
        done
        ((ok)) && break
        (($(now_ms) - t0 > WAIT_SECS * 1000)) && die "Redis Cluster on ${addrs[*]} did not reach cluster_state:ok"
        sleep 0.2
    done
    log "redis cluster ready (${addrs[*]})"
}

cluster_down() {
    local p pid pidf
    for p in $CLUSTER_PORTS; do
        pidf=$(cluster_pidfile "$p")
        if pid=$(read_pid "$pidf" redis-server 2>/dev/null); then
            stop_pid "redis cluster node $p" "$pid" "$pidf"
        fi
    done
}

cluster_addrs() {
    local p out=""
    for p in $CLUSTER_PORTS; do out+="${out:+,}$HOST:$p"; done
    printf '%s\n' "$out"
}

# ---------------------------------------------------------------- Redis

redis_ping() { timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; }

redis_up() {
    need_cmd redis-server redis-server
    need_cmd redis-cli redis-tools
    local pid t0 i
    if pid=$(read_pid "$REDIS_PID" redis-server); then
        if redis_ping; then
            log "redis already running (pid $pid, port $REDIS_PORT)"
            return 0
        fi
        log "redis pid $pid is alive but not answering yet; waiting"
    else
        if port_open "$REDIS_PORT"; then
            port_owner "$REDIS_PORT" >&2
            die "port $HOST:$REDIS_PORT is taken by another process (not ours); set SIGNALD_REDIS_PORT"
        fi
        mkdir -p "$REDIS_DATA" "$LOG_DIR"
        log "starting redis-server on $HOST:$REDIS_PORT (data $REDIS_DATA)"
        t0=$(now_ms)
        redis-server --port "$REDIS_PORT" --bind "$HOST" --dir "$REDIS_DATA" \
            --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" \
            --appendonly yes --appendfsync everysec --save "" 7>&- 8>&- ||
            { tail_log "$REDIS_LOG"; die "redis-server failed to start"; }
    fi
    t0=${t0:-$(now_ms)}
    for ((i = 0; ; i++)); do
        redis_ping && break
        if ((i > 10)) && ! read_pid "$REDIS_PID" redis-server >/dev/null 2>&1; then
            tail_log "$REDIS_LOG"
            die "redis-server exited before answering PING"
        fi
        if (($(now_ms) - t0 > WAIT_SECS * 1000)); then
            tail_log "$REDIS_LOG"
            die "redis on $HOST:$REDIS_PORT did not answer PING within ${WAIT_SECS}s"
        fi
        sleep 0.2
    done
    pid=$(read_pid "$REDIS_PID" redis-server) || die "redis answers but $REDIS_PID is missing"
    log "redis ready in $(elapsed_s "$t0")s (pid $pid, RSS $(rss_mb "$pid"))"
}

redis_down() {
    local pid
    if pid=$(read_pid "$REDIS_PID" redis-server); then
        stop_pid redis "$pid" "$REDIS_PID"
    else
        log "redis not running"
    fi
}

# ---------------------------------------------------------------- ClickHouse (chDB)

# Download (npm pack) and extract libchdb.so into the cache, atomically.
chdb_fetch() {
    [[ -s $CHDB_LIB ]] && return 0
    mkdir -p "$CHDB_DIR"
    exec 7>"$CHDB_DIR/.lock"
    flock -w 1800 7 || die "timed out waiting for another download into $CHDB_DIR"
    if [[ -s $CHDB_LIB ]]; then exec 7>&-; return 0; fi

    local tgz=$CHDB_DIR/$CHDB_TGZ_NAME tmp attempt
    # An older cache layout kept the tgz one level up: reuse it.
    if [[ ! -s $tgz && -s $CACHE_DIR/chdb/$CHDB_TGZ_NAME ]]; then
        tgz=$CACHE_DIR/chdb/$CHDB_TGZ_NAME
    fi
    for attempt in 1 2; do
        if [[ ! -s $tgz ]]; then
            tgz=$CHDB_DIR/$CHDB_TGZ_NAME
            need_cmd npm npm
            tmp=$(mktemp -d "$CHDB_DIR/.pack.XXXXXX")
            log "downloading $CHDB_PKG@$CHDB_VERSION with npm pack (~178 MB)"
            (cd "$tmp" && npm pack --silent "$CHDB_PKG@$CHDB_VERSION" >/dev/null) ||
                { rm -rf "$tmp"; die "npm pack $CHDB_PKG@$CHDB_VERSION failed"; }
            [[ -s $tmp/$CHDB_TGZ_NAME ]] || { ls -la "$tmp" >&2; rm -rf "$tmp"; die "npm pack did not produce $CHDB_TGZ_NAME"; }
            mv -f "$tmp/$CHDB_TGZ_NAME" "$tgz"
            rm -rf "$tmp"
        fi
        log "extracting libchdb.so from $tgz"
        tmp=$(mktemp -d "$CHDB_DIR/.extract.XXXXXX")
        if tar -xzf "$tgz" -C "$tmp" package/libchdb.so && [[ -s $tmp/package/libchdb.so ]]; then
            chmod 0755 "$tmp/package/libchdb.so"
            mv -f "$tmp/package/libchdb.so" "$CHDB_LIB"
            rm -rf "$tmp"
            exec 7>&-
            log "cached $CHDB_LIB ($(du -m "$CHDB_LIB" | cut -f1) MB)"
            return 0
        fi
        rm -rf "$tmp"
        [[ $attempt -eq 1 ]] || break
        log "$tgz is damaged; removing it and downloading again"
        rm -f "$tgz"
    done
    die "could not extract package/libchdb.so from $tgz"
}

launcher_build() {
    [[ -f $LAUNCHER_SRC ]] || die "missing $LAUNCHER_SRC"
    if [[ -x $LAUNCHER_BIN && ! $LAUNCHER_SRC -nt $LAUNCHER_BIN ]]; then
        return 0
    fi
    need_cmd gcc gcc libc6-dev
    mkdir -p "$(dirname "$LAUNCHER_BIN")"
    log "compiling $LAUNCHER_BIN"
    gcc -O2 -Wall -o "$LAUNCHER_BIN.tmp" "$LAUNCHER_SRC" -ldl || die "gcc failed on $LAUNCHER_SRC"
    mv -f "$LAUNCHER_BIN.tmp" "$LAUNCHER_BIN"
}

ch_client() { # ch_client QUERY
    timeout 20 clickhouse-client --host "$HOST" --port "$CH_PORT" --connect_timeout 3 -q "$1"
}

ch_up() {
    need_cmd clickhouse-client clickhouse-client
    local pid t0 i ver=""
    if pid=$(read_pid "$CH_PID" chdb_launcher); then
        if ver=$(ch_client "SELECT version()" 2>/dev/null) && [[ -n $ver ]]; then
            log "clickhouse already running (pid $pid, port $CH_PORT, version $ver)"
            ch_client "CREATE DATABASE IF NOT EXISTS signald"
            return 0
        fi
        log "clickhouse pid $pid is alive but not answering yet; waiting"
        t0=$(now_ms)
    else
        if port_open "$CH_PORT"; then
            port_owner "$CH_PORT" >&2
            die "port $HOST:$CH_PORT is taken by another process (not ours); set SIGNALD_CH_PORT"
        fi
        chdb_fetch
        launcher_build
        mkdir -p "$CH_DATA" "$LOG_DIR"
        log "starting chDB ClickHouse on $HOST:$CH_PORT (data $CH_DATA)"
        printf '==== %s services.sh: starting chdb_launcher on %s:%s\n' "$(date -Is)" "$HOST" "$CH_PORT" >>"$CH_LOG"
        t0=$(now_ms)
        # bash writes its own pid, then execs the launcher (same pid) in a new
        # session, detached from this terminal.
        # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
        setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$CH_PID" \
            "$LAUNCHER_BIN" --supervise --lib "$CHDB_LIB" -- clickhouse \
            "--path=$CH_DATA/" "--tcp_port=$CH_PORT" "--listen_host=$HOST" \
            --multiquery "--query=$CH_SERVE_QUERY" \
            </dev/null >>"$CH_LOG" 2>&1 7>&- 8>&- &
        for ((i = 0; i < 50; i++)); do [[ -s $CH_PID ]] && break; sleep 0.1; done
    fi
    for ((;;)); do
        if ver=$(ch_client "SELECT version()" 2>/dev/null) && [[ $ver =~ ^[0-9]+\. ]]; then
            break
        fi
        if ! pid=$(read_pid "$CH_PID" chdb_launcher 2>/dev/null); then
            tail_log "$CH_LOG"
            die "chdb_launcher exited before ClickHouse answered"
        fi
        if (($(now_ms) - t0 > WAIT_SECS * 1000)); then
            tail_log "$CH_LOG"
            die "ClickHouse on $HOST:$CH_PORT did not answer 'SELECT version()' within ${WAIT_SECS}s (pid $pid still running; see $CH_LOG)"
        fi
        sleep 0.25
    done
    pid=$(read_pid "$CH_PID" chdb_launcher) || die "ClickHouse answers but $CH_PID is missing"
    ch_client "CREATE DATABASE IF NOT EXISTS signald" || { tail_log "$CH_LOG"; die "CREATE DATABASE signald failed"; }
    log "clickhouse $ver ready in $(elapsed_s "$t0")s (pid $pid, RSS $(rss_mb "$pid"))"
}

ch_down() {
    local pid
    if pid=$(read_pid "$CH_PID" chdb_launcher); then
        stop_pid clickhouse "$pid" "$CH_PID"
    else
        log "clickhouse not running"
    fi
}

# ---------------------------------------------------------------- commands

cmd_env() {
    printf 'export SIGNALD_REDIS_ADDR=%s:%s\n' "$HOST" "$REDIS_PORT"
    printf 'export SIGNALD_CLICKHOUSE_ADDR=%s:%s\n' "$HOST" "$CH_PORT"
    printf 'export SIGNALD_REDIS_CLUSTER_ADDRS=%s\n' "$(cluster_addrs)"
}

cmd_status() {
    local pid rc=0 ver
    if pid=$(read_pid "$REDIS_PID" redis-server 2>/dev/null); then
        if command -v redis-cli >/dev/null 2>&1 && redis_ping; then
            printf 'redis       running   %s:%s  pid %s  RSS %s  data %s\n' "$HOST" "$REDIS_PORT" "$pid" "$(rss_mb "$pid")" "$REDIS_DATA"
        else
            printf 'redis       NOT ANSWERING  %s:%s  pid %s  log %s\n' "$HOST" "$REDIS_PORT" "$pid" "$REDIS_LOG"; rc=1
        fi
    else
        printf 'redis       stopped   (%s:%s)\n' "$HOST" "$REDIS_PORT"; rc=1
    fi
    if pid=$(read_pid "$CH_PID" chdb_launcher 2>/dev/null); then
        if command -v clickhouse-client >/dev/null 2>&1 && ver=$(ch_client "SELECT version()" 2>/dev/null); then
            printf 'clickhouse  running   %s:%s  pid %s  RSS %s  version %s  data %s\n' "$HOST" "$CH_PORT" "$pid" "$(rss_mb "$pid")" "$ver" "$CH_DATA"
        else
            printf 'clickhouse  NOT ANSWERING  %s:%s  pid %s  log %s\n' "$HOST" "$CH_PORT" "$pid" "$CH_LOG"; rc=1
        fi
    else
        printf 'clickhouse  stopped   (%s:%s)\n' "$HOST" "$CH_PORT"; rc=1
    fi
    return $rc
}

# The outside tools the tests use beside the servers: promtool (the alert
# rules' unit tests and the dashboard's query check) and headless Chromium
# (the backtest report's rendering test).
tools_up() {
    need_cmd promtool --no-install-recommends prometheus
    # The package enables a Prometheus server; only promtool is used.
    if command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    need_cmd chromium --no-install-recommends chromium
}

cmd_up() {
    lock_state_dir
    tools_up
    redis_up
    cluster_up
    ch_up
    echo
    cmd_status || true
    echo
    echo "logs: $LOG_DIR    use: eval \"\$($SCRIPT_DIR/services.sh env)\""
    cmd_env
}

cmd_down() {
    lock_state_dir
    local rc=0
    ch_down || rc=1
    cluster_down || rc=1
    redis_down || rc=1
    return $rc
}

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
