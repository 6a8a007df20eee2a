#!/bin/bash
# Usage: benches/realtime/compare.sh [quick]
# Issue 12's table: boxoffice beside a plain Node.js `ws` server (benches/node-peer), each
# pinned to core 1, the same compiled load client pinned to core 0, contract C's plain
# JSON WebSocket, senders writing on their own sockets (--send ws). Prints one line per
# run. Loopback only; every run is bounded and stops by itself.
#   1. 10 rooms x 100 members, 10 msg/s each: server CPU per delivery (runs alternate).
#   2. 1 room x 1,000 members at rising rates: p99 and losses (the highest rate with
#      p99 <= 100 ms and nothing lost is the figure).
#   3. 10,000 and 19,000 idle sockets: server RSS per socket.
# Needs: cargo build --release -j2; npm ci --prefix benches/node-peer; ulimit -n >= 20000.
set -uo pipefail
cd "$(dirname "$0")/../.."
export BOXOFFICE_JWT_SECRET=load-secret
ulimit -n 20000
LOAD=target/release/boxoffice-load
ROUNDS=${ROUNDS:-3}

start() { # start node|bo: sets PID and URL and EXTRA
    if [ "$1" = node ]; then
        taskset -c 1 node benches/node-peer/server.js 19100 >/dev/null 2>&1 & PID=$!
        URL=http://127.0.0.1:19100; EXTRA=--peer
    else
        DATA=$(mktemp -d)
        BOXOFFICE_RATE_LIMIT=off BOXOFFICE_DATA_DIR=$DATA BOXOFFICE_BIND=127.0.0.1:18900 BOXOFFICE_WORKERS=1 \
            BOXOFFICE_CHAT_MAX_PARTICIPANTS=2000 RUST_LOG=warn \
            taskset -c 1 target/release/boxoffice serve --no-demo >/dev/null 2>&1 & PID=$!
        URL=http://127.0.0.1:18900; EXTRA=
    fi
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/${URL##*:}) 2>/dev/null && break; sleep 0.05; done
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null; [ "${DATA:-}" ] && rm -rf "$DATA"; DATA=; }
run() { # run node|bo ARGS...: the load tool's JSON report on stdout
    local who=$1; shift
    start "$who"
    taskset -c 0 $LOAD "$@" --url "$URL" $EXTRA --server-pid "$PID" --no-progress --json --timeout 200s
    stop
}
fanout() { python3 -c '
import json, sys
r = json.load(sys.stdin); f = r["figures"]; l = r["latency_ms"]["delivery (send->receive)"]
print("%-5s %12s: %9.0f deliveries/s, %6.2f us server CPU per delivery, server %5.1f%% of a core, p50 %.1f ms, p99 %.1f ms, lost %d, duplicated %d" % (
    sys.argv[1], sys.argv[2], f["deliveries_per_s"], f["server_cpu_us_per_delivery"], r["server"]["cpu_pct"], l["p50"], l["p99"], f["lost"], f["duplicates"]))' "$@"; }
idle() { python3 -c '
import json, sys
r = json.load(sys.stdin); f = r["figures"]
print("%-5s %12s: opened %d/%d in %s s, %s KB RSS per socket (%s -> %s KB)" % (
    sys.argv[1], sys.argv[2], f["opened"], f["requested"], f["open_phase_s"], f["server_rss_kb_per_connection"], f["server_rss_kb_before"], f["server_rss_kb_all_open"]))' "$@"; }

echo "== 10 rooms x 100 members x 10 msg/s (10,000 deliveries/s), $ROUNDS rounds"
for i in $(seq "$ROUNDS"); do
    for who in node bo; do
        run $who chat-fanout --rooms 10 --members 100 --senders 2 --rate 100 --duration 20s --send ws | fanout $who "10x100 #$i"
    done
done

echo "== 1 room x 1,000 members, rising rates"
for rate in ${NODE_RATES:-20 30 40 60}; do
    run node chat-fanout --rooms 1 --members 1000 --senders 2 --rate "$rate" --duration 10s --send ws | fanout node "1x1000 @$rate"
done
for rate in ${BO_RATES:-80 120 160 200 300}; do
    run bo chat-fanout --rooms 1 --members 1000 --senders 2 --rate "$rate" --duration 10s --send ws | fanout bo "1x1000 @$rate"
done

echo "== idle sockets"
for n in 10000 19000; do
    for who in node bo; do
        run $who connections --count "$n" --hold 5s --concurrency 256 | idle $who "$n idle"
    done
done
