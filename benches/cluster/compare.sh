#!/usr/bin/env bash
# chat-fanout on one node, then on a core and two edges over NATS (the receivers' sockets
# spread over both edges, REST on the core), alternating, RUNS times each. Every run has
# fresh processes and a fresh data dir. Prints the load tool's summaries; the server CPU of
# the cluster runs is the sum over the core and both edges, and nats-server's own CPU is
# reported beside it (--extra-pid).
#
#   cargo build --release -j2 --bin boxoffice -p boxoffice -p boxoffice-load
#   benches/cluster/compare.sh                      # 10 rooms x 100 members, 100 msg/s, 15 s
#   ROOMS=1 MEMBERS=1000 RATE=100 benches/cluster/compare.sh
#
# Settings (environment): ROOMS, MEMBERS, RATE (messages/s in total), SENDERS (per room),
# DURATION, RUNS, PROTOCOL (plain|signalr), SEND (rest|ws), EDGE_WORKERS, CORE_WORKERS,
# MODES ("single cluster": which setups, in order), BIN and LOAD (the binaries),
# NATS_SERVER, OUT (a directory for the logs and summaries).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-target/release/boxoffice}
LOAD=${LOAD:-target/release/boxoffice-load}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-100}
SENDERS=${SENDERS:-2}
RATE=${RATE:-100}
DURATION=${DURATION:-15s}
RUNS=${RUNS:-2}
PROTOCOL=${PROTOCOL:-plain}
SEND=${SEND:-rest}
CORE_WORKERS=${CORE_WORKERS:-0}
EDGE_WORKERS=${EDGE_WORKERS:-0}
MODES=${MODES:-single cluster}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=load-secret

for f in "$BIN" "$LOAD" "$NATS_SERVER"; do
    [ -x "$f" ] || { echo "missing $f (see the header of this script)" >&2; exit 2; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ok() { # URL
    for _ in $(seq 1 200); do
        curl -fs "$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 never became healthy" >&2
    exit 1
}

node() { # NAME PORT WORKERS EXTRA_ENV...
    local name=$1 port=$2 workers=$3
    shift 3
    env BOXOFFICE_RATE_LIMIT=off BOXOFFICE_DATA_DIR="$OUT/data-$name-$RANDOM" BOXOFFICE_BIND=127.0.0.1:$port BOXOFFICE_JWT_SECRET=$SECRET \
        BOXOFFICE_CHAT_MAX_PARTICIPANTS=$((MEMBERS + 1)) BOXOFFICE_WORKERS=$workers RUST_LOG=${RUST_LOG:-warn} \
        "$@" "$BIN" serve >"$OUT/$name.out" 2>"$OUT/$name.log" &
    PIDS+=($!)
    LAST=$!
}

load() { # NAME ARGS...
    local name=$1
    shift
    BOXOFFICE_JWT_SECRET=$SECRET "$LOAD" chat-fanout --rooms "$ROOMS" --members "$MEMBERS" --senders "$SENDERS" \
        --rate "$RATE" --duration "$DURATION" --protocol "$PROTOCOL" --send "$SEND" --no-progress \
        --user-base $((1000000 + RANDOM * 100)) "$@" | tee "$OUT/$name.txt"
}

single() {
    local run=$1 port
    port=$(free_port)
    node "single-$run" "$port" "$CORE_WORKERS"
    local pid=$LAST
    wait_ok "http://127.0.0.1:$port"
    echo "== run $run: one node (pid $pid)"
    load "single-$run" --url "http://127.0.0.1:$port" --server-pid "$pid"
    { kill -9 "$pid"; wait "$pid"; } 2>/dev/null || true
}

cluster() {
    local run=$1 nport cport e1port e2port
    nport=$(free_port)
    "$NATS_SERVER" -a 127.0.0.1 -p "$nport" >"$OUT/nats-$run.log" 2>&1 &
    local nats=$!
    PIDS+=($nats)
    cport=$(free_port)
    node "core-$run" "$cport" "$CORE_WORKERS" BOXOFFICE_NATS_URL=nats://127.0.0.1:$nport
    local core=$LAST
    wait_ok "http://127.0.0.1:$cport"
    e1port=$(free_port)
    node "edge1-$run" "$e1port" "$EDGE_WORKERS" BOXOFFICE_ROLE=edge BOXOFFICE_NATS_URL=nats://127.0.0.1:$nport
    local e1=$LAST
    e2port=$(free_port)
    node "edge2-$run" "$e2port" "$EDGE_WORKERS" BOXOFFICE_ROLE=edge BOXOFFICE_NATS_URL=nats://127.0.0.1:$nport
    local e2=$LAST
    wait_ok "http://127.0.0.1:$e1port"
    wait_ok "http://127.0.0.1:$e2port"
    echo "== run $run: core (pid $core) + edges (pids $e1, $e2) over nats-server (pid $nats)"
    load "cluster-$run" --url "http://127.0.0.1:$cport" \
        --ws-url "http://127.0.0.1:$e1port,http://127.0.0.1:$e2port" \
        --server-pid "$core,$e1,$e2" --extra-pid "$nats"
    { kill -9 "$e1" "$e2" "$core" "$nats"; wait "$e1" "$e2" "$core" "$nats"; } 2>/dev/null || true
}

echo "chat-fanout: $ROOMS rooms x $MEMBERS members, $RATE msg/s, $DURATION, $PROTOCOL, send $SEND; logs in $OUT"
for run in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
        "$mode" "$run"
    done
done
