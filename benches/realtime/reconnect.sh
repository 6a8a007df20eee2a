#!/bin/bash
# Usage: benches/realtime/reconnect.sh [BINARY] [DROP_MS] [RATE]
# A SignalR stateful reconnect during a message stream (reconnect.js): the official client
# through a proxy that cuts its TCP connection and keeps the network away for DROP_MS
# (default 5000) while the seller posts RATE messages a second (default 100). One JSON
# line per hub protocol: lost, duplicated, in order, and the recovery times. Needs a
# release build (or BINARY) and `npm ci --prefix tests/signalr`. Loopback only, bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/boxoffice}
DROP=${2:-5000}
RATE=${3:-100}
export BOXOFFICE_JWT_SECRET=bench-secret
DATA=$(mktemp -d)
PORT=18950
BOXOFFICE_RATE_LIMIT=off BOXOFFICE_DATA_DIR=$DATA BOXOFFICE_BIND=127.0.0.1:$PORT RUST_LOG=warn \
    "$BIN" serve --no-demo >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
for protocol in json messagepack; do
    BUYER=$("$BIN" token --user 15 --name buyer)
    SELLER=$("$BIN" token --user 20 --name seller)
    node benches/realtime/reconnect.js "http://127.0.0.1:$PORT" "$BUYER" "$SELLER" "$protocol" "$DROP" "$RATE"
done
