#!/usr/bin/env bash
# The waiting room over edges: a core, two edges and nats-server on loopback; N users take
# queue tokens and wait on GET /waiting/ws, spread over the edges, while the queue admits
# 10 a second. Samples each process's CPU over 20 s of waiting and prints one RESULT line.
#
#   benches/queue/waiting.sh N [BINARY] [LOAD_TOOL]
#
# Past 10,000 sockets one load tool would pass its 20,000 open files: with N > 10000 two
# load tools run, each with N/2 users on its own edge (user ids apart), and the sampling
# starts once both edges hold nearly all their sockets (or after 90 s).
#
# Defaults: target/release/boxoffice and target/release/boxoffice-load. Everything is on
# 127.0.0.1, bounded in time (the load tool stops after 45 s), and killed at the end.
set -u
N=$1
BIN=${2:-target/release/boxoffice}
LOAD=${3:-target/release/boxoffice-load}
SECRET=qw-secret
D=$(mktemp -d)
PORTN=$((20000 + RANDOM % 20000))
nats-server -p $PORTN -a 127.0.0.1 >/dev/null 2>&1 & NATS=$!
sleep 0.5
common="BOXOFFICE_JWT_SECRET=$SECRET BOXOFFICE_NATS_URL=nats://127.0.0.1:$PORTN BOXOFFICE_RATE_LIMIT=off RUST_LOG=warn"
env $common BOXOFFICE_BIND=127.0.0.1:18801 BOXOFFICE_DATA_DIR=$D/core $BIN serve >$D/core.log 2>&1 & CORE=$!
sleep 1
env $common BOXOFFICE_ROLE=edge BOXOFFICE_BIND=127.0.0.1:18802 BOXOFFICE_DATA_DIR=$D/a $BIN serve >$D/a.log 2>&1 & A=$!
env $common BOXOFFICE_ROLE=edge BOXOFFICE_BIND=127.0.0.1:18803 BOXOFFICE_DATA_DIR=$D/b $BIN serve >$D/b.log 2>&1 & B=$!
sleep 2
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
ulimit -n 20000 2>/dev/null
admin() { env BOXOFFICE_JWT_SECRET=$SECRET $BIN token --user 9 --admin; }
waiting_on() { curl -s -H "Authorization: Bearer $(admin)" http://127.0.0.1:$1/metrics | awk '/^boxoffice_queue_sockets\{state="waiting"\}/{print int($2)}'; }
if [ "$N" -le 10000 ]; then
    BOXOFFICE_JWT_SECRET=$SECRET timeout 70 $LOAD queue-wait --url http://127.0.0.1:18801 --ws-url http://127.0.0.1:18802,http://127.0.0.1:18803 \
      --users $N --admit-rate 10 --max-active 100000 --active-ttl 60s --timeout 45s --concurrency 256 --json --no-progress >$D/load.json 2>$D/load.err &
    L=$!
    sleep 15
else
    H=$((N / 2))
    BOXOFFICE_JWT_SECRET=$SECRET timeout 170 $LOAD queue-wait --url http://127.0.0.1:18801 --ws-url http://127.0.0.1:18802 \
      --users $H --user-base 1000000 --admit-rate 10 --max-active 100000 --active-ttl 120s --timeout 150s --concurrency 256 --json --no-progress >$D/load.json 2>$D/load.err &
    L=$!
    BOXOFFICE_JWT_SECRET=$SECRET timeout 170 $LOAD queue-wait --url http://127.0.0.1:18801 --ws-url http://127.0.0.1:18803 \
      --users $H --user-base 2000000 --admit-rate 10 --max-active 100000 --active-ttl 120s --timeout 150s --concurrency 256 --json --no-progress >$D/load2.json 2>$D/load2.err &
    L="$L $!"
    for _ in $(seq 90); do
        sleep 1
        wa=$(waiting_on 18802); wb=$(waiting_on 18803)
        [ "${wa:-0}" -ge $((H * 9 / 10)) ] && [ "${wb:-0}" -ge $((H * 9 / 10)) ] && break
    done
    sleep 3
fi
c0=$(cpu $CORE); a0=$(cpu $A); b0=$(cpu $B); n0=$(cpu $NATS)
sleep 20
c1=$(cpu $CORE); a1=$(cpu $A); b1=$(cpu $B); n1=$(cpu $NATS)
HZ=$(getconf CLK_TCK)
reqs=$(curl -s -H "Authorization: Bearer $(env BOXOFFICE_JWT_SECRET=$SECRET $BIN token --user 9 --admin)" http://127.0.0.1:18801/metrics | grep '^boxoffice_nats_requests_total' | tr '\n' ' ')
socks_a=$(curl -s -H "Authorization: Bearer $(env BOXOFFICE_JWT_SECRET=$SECRET $BIN token --user 9 --admin)" http://127.0.0.1:18802/metrics | grep '^boxoffice_queue_sockets' | tr '\n' ' ')
# Admission to socket event (boxoffice_queue_admission_push_seconds), both edges: the
# bucket bound under which 50% and 99% of the pushes fell.
push=$(for port in 18802 18803; do
    curl -s -H "Authorization: Bearer $(env BOXOFFICE_JWT_SECRET=$SECRET $BIN token --user 9 --admin)" http://127.0.0.1:$port/metrics
done | python3 -c '
import re, sys
b = {}
for line in sys.stdin:
    m = re.match(r"boxoffice_queue_admission_push_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)", line)
    if m: b[m.group(1)] = b.get(m.group(1), 0) + int(m.group(2))
n = b.get("+Inf", 0)
les = sorted((float(k), v) for k, v in b.items() if k != "+Inf")
q = lambda f: next((str(le) for le, c in les if c >= f * n), "+Inf") if n else "none"
print("admission_pushes=%d push_p50_le=%s push_p99_le=%s" % (n, q(0.5), q(0.99)))')
echo "RESULT N=$N waiting_a=$(waiting_on 18802) waiting_b=$(waiting_on 18803) $push core_cpu_ms_per_s=$(( (c1-c0)*1000/HZ/20 )) edgeA_ms_per_s=$(( (a1-a0)*1000/HZ/20 )) edgeB_ms_per_s=$(( (b1-b0)*1000/HZ/20 )) nats_ms_per_s=$(( (n1-n0)*1000/HZ/20 )) core_rss_kb=$(grep VmRSS /proc/$CORE/status | awk '{print $2}') edgeA_rss_kb=$(grep VmRSS /proc/$A/status | awk '{print $2}') | $reqs | $socks_a"
kill $L $CORE $A $B $NATS 2>/dev/null; wait 2>/dev/null
rm -rf "$D"
