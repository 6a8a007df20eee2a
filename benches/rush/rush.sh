#!/usr/bin/env bash
# Server CPU per request of a POST /reservations rush (contract Q), measured with wrk.
#
#   benches/rush/rush.sh BINARY MODE [DURATION] [USERS]
#
#   BINARY    the boxoffice binary to measure (e.g. target/release/boxoffice)
#   MODE      hot    : every request on schedule 1 of demo concert 1 (50 seats), random
#                      seat: after the seats are taken nearly every answer is 409
#             spread : one concert with $SCHEDULES schedules of $SEATS seats created first
#                      through the admin API, a random schedule and seat per request
#   DURATION  wrk -d (default 20s)
#   USERS     users (JWT + active queue token each), request i uses user i mod USERS
#             (default 64)
#
# Environment (all optional):
#   HOLD_TTL=5m          BOXOFFICE_HOLD_TTL of the server
#   CONNECTIONS=64       wrk -c          WRK_THREADS=2   wrk -t
#   SCHEDULES=1000       spread mode:    SEATS=50 seats per created schedule
#   SERVER_LOG=FILTER    RUST_LOG of the server (default warn: no per-request access lines)
#   TASKSET_SERVER=CPUS  pin the server with taskset -c CPUS (e.g. 0)
#   TASKSET_WRK=CPUS     pin wrk with taskset -c CPUS (e.g. 1)
#   PERF_SECONDS=N       also `perf record -g -p SERVER` for N s during the run (starts
#                        PERF_DELAY=3 s into it); report in $OUT_DIR. The release build has no
#                        frame pointers: PERF_CALLGRAPH=dwarf,16384 gives callers (default: -g)
#   OUT_DIR=/tmp/rush-results   where logs, the users file and perf data go
#   KEEP_DATA=1          keep the data dir instead of deleting it
#   MAX_REQUESTS=N       stop after ~N requests (DURATION is then the upper bound). The
#                        baseline's CPU per request grows with the requests already made
#                        (every user's idempotency ledger is rewritten whole on each
#                        request), so compare builds at a fixed N, not a fixed duration
#
# Prints the figures and a final one-line `RESULT ...` with all of them. Everything runs on
# 127.0.0.1, every wait is bounded, and the server is killed on any exit (trap).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 2 ]] || usage
BIN="$(readlink -f "$1")"
MODE="$2"
DURATION="${3:-20s}"
USERS="${4:-64}"
[[ -x "$BIN" ]] || { echo "not an executable: $1" >&2; exit 2; }
[[ "$MODE" == hot || "$MODE" == spread ]] || { echo "MODE must be hot or spread" >&2; exit 2; }
[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge 1 ]] || { echo "USERS must be a positive integer" >&2; exit 2; }

HOLD_TTL="${HOLD_TTL:-5m}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
SCHEDULES="${SCHEDULES:-1000}"
SEATS="${SEATS:-50}"
PERF_SECONDS="${PERF_SECONDS:-0}"
PERF_DELAY="${PERF_DELAY:-3}"
OUT_DIR="${OUT_DIR:-/tmp/rush-results}"
SECRET=load-secret
USER_BASE=1000000
ADMIN_ID=999999

# ---- tools -------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "installing ${need[*]} with apt-get" >&2
  timeout 300 apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
    { timeout 300 apt-get update >/dev/null 2>&1 && timeout 300 apt-get install -y "${need[@]}" >/dev/null; }
fi
if [[ "$PERF_SECONDS" != 0 ]] && ! command -v perf >/dev/null; then
  echo "PERF_SECONDS set but perf is not installed" >&2; exit 2
fi

TS_SERVER=(); TS_WRK=()
[[ -n "${TASKSET_SERVER:-}" ]] && TS_SERVER=(taskset -c "$TASKSET_SERVER")
[[ -n "${TASKSET_WRK:-}" ]] && TS_WRK=(taskset -c "$TASKSET_WRK")

mkdir -p "$OUT_DIR"
STAMP="$(date +%Y%m%d-%H%M%S)-$MODE-$$"
LOG="$OUT_DIR/$STAMP"
DATA="$(mktemp -d /tmp/rush-data.XXXXXX)"
WORK="$(mktemp -d /tmp/rush-work.XXXXXX)"
TICK="$(getconf CLK_TCK)"
SERVER_PID=""
PERF_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$PERF_PID" ]] && kill -0 "$PERF_PID" 2>/dev/null; then kill -INT "$PERF_PID" 2>/dev/null || true; fi
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  [[ "${KEEP_DATA:-0}" == 1 ]] && echo "data dir kept: $DATA" >&2 || rm -rf "$DATA"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"

# utime+stime of a process in microseconds.
cpu_us() { awk -v t="$TICK" '{ sub(/^.*\) /, ""); print ($12 + $13) * 1000000 / t }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
now_ns() { date +%s%N; }
flushes() { curl -s --max-time 5 "$URL/healthz" | jq -r '.store.flushes // "?"'; }

# Start the server on $DATA; sets SERVER_PID and STARTUP_MS (exec until /healthz is 200).
start_server() {
  local t0 code
  t0="$(now_ns)"
  env BOXOFFICE_RATE_LIMIT=off BOXOFFICE_BIND="127.0.0.1:$PORT" BOXOFFICE_DATA_DIR="$DATA" BOXOFFICE_JWT_SECRET="$SECRET" \
    BOXOFFICE_QUEUE_ADMIT_RATE=1000000 BOXOFFICE_QUEUE_MAX_ACTIVE=1000000 \
    BOXOFFICE_HOLD_TTL="$HOLD_TTL" RUST_LOG="${SERVER_LOG:-warn}" \
    "${TS_SERVER[@]}" "$BIN" serve >>"$LOG.server.out" 2>>"$LOG.server.err" &
  SERVER_PID=$!
  for _ in $(seq 6000); do # 60 s at most
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/healthz" || true)"
    [[ "$code" == 200 ]] && { STARTUP_MS=$(( ($(now_ns) - t0) / 1000000 )); return 0; }
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $LOG.server.err" >&2; tail -5 "$LOG.server.err" >&2; exit 1; }
    sleep 0.01
  done
  echo "server did not answer /healthz within 60 s" >&2
  exit 1
}

stop_server() {
  local t0 rc=0
  t0="$(now_ns)"
  kill -TERM "$SERVER_PID"
  for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done # 30 s
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server did not stop within 30 s of SIGTERM; killing it" >&2
    kill -KILL "$SERVER_PID" || true
  fi
  wait "$SERVER_PID" 2>/dev/null || rc=$?
  STOP_MS=$(( ($(now_ns) - t0) / 1000000 ))
  STOP_RC=$rc
  SERVER_PID=""
}

mint() { # user [--admin]
  BOXOFFICE_JWT_SECRET="$SECRET" "$BIN" token --user "$1" --ttl 4h "${@:2}"
}

echo "== rush: $MODE, $DURATION, $USERS users, $CONNECTIONS connections, $WRK_THREADS wrk threads, hold TTL $HOLD_TTL"
echo "binary: $BIN ($(stat -c '%s bytes, %y' "$BIN"))"
echo "loadavg at start: $(cat /proc/loadavg)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

start_server
echo "server pid $SERVER_PID on $URL, first start ${STARTUP_MS} ms"

# ---- catalog (spread) ------------------------------------------------------------------
CONCERT=1
SCHED_FILE="$WORK/schedules"
if [[ "$MODE" == spread ]]; then
  ADMIN_JWT="$(mint "$ADMIN_ID" --admin --name rush-admin)"
  CONCERT="$(curl -sS --max-time 10 -H "Authorization: Bearer $ADMIN_JWT" -H 'Content-Type: application/json' \
    -d '{"title":"rush spread"}' "$URL/concerts" | jq -er .concertId)"
  # One curl process, one keep-alive connection, $SCHEDULES requests.
  base=$(( $(date +%s) + 30 * 24 * 3600 ))
  seq 0 $((SCHEDULES - 1)) | awk -v b="$base" '{ print "@" (b + $1 * 3600) }' |
    date -u -f - +%Y-%m-%dT%H:%M:%SZ >"$WORK/starts"
  {
    first=1
    while read -r s; do
      ((first)) || echo next
      first=0
      echo "url = \"$URL/concerts/$CONCERT/schedules\""
      echo "header = \"Authorization: Bearer $ADMIN_JWT\""
      echo "header = \"Content-Type: application/json\""
      echo "data = \"{\\\"startsAt\\\":\\\"$s\\\",\\\"totalSeats\\\":$SEATS,\\\"price\\\":80000}\""
      echo "max-time = 10"
      echo "silent"
    done <"$WORK/starts"
  } >"$WORK/curl-catalog"
  t0="$(now_ns)"
  timeout 300 curl -K "$WORK/curl-catalog" | jq -r '.scheduleId // empty' >"$SCHED_FILE"
  n="$(wc -l <"$SCHED_FILE")"
  [[ "$n" == "$SCHEDULES" ]] || { echo "created $n of $SCHEDULES schedules" >&2; exit 1; }
  echo "created concert $CONCERT with $n schedules of $SEATS seats in $(( ($(now_ns) - t0) / 1000000 )) ms"
else
  echo 1 >"$SCHED_FILE"
fi

# ---- users: JWT + active queue token ----------------------------------------------------
USERS_FILE="$LOG.users"
: >"$USERS_FILE"
for i in $(seq 0 $((USERS - 1))); do
  u=$((USER_BASE + i))
  j="$(mint "$u")"
  r="$(curl -sS --max-time 10 -H "Authorization: Bearer $j" -H 'Content-Type: application/json' \
    -d "{\"userId\":$u}" "$URL/waiting/issue")"
  [[ "$(jq -r .active <<<"$r")" == true ]] || { echo "queue token of $u not active: $r" >&2; exit 1; }
  echo "$u $j $(jq -r .token <<<"$r")" >>"$USERS_FILE"
done
echo "issued $USERS active queue tokens"

# ---- the rush ------------------------------------------------------------------------
sync
DU_BEFORE="$(du -sb "$DATA" | cut -f1)"
FLUSH_BEFORE="$(flushes)"
RSS_BEFORE="$(rss_kb "$SERVER_PID")"
LOAD_RUN="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "loadavg before wrk: $(cat /proc/loadavg)"
CPU0="$(cpu_us "$SERVER_PID")"
T0="$(now_ns)"
if [[ "$PERF_SECONDS" != 0 ]]; then
  PERF_CG=(-g); [[ -n "${PERF_CALLGRAPH:-}" ]] && PERF_CG=(--call-graph "$PERF_CALLGRAPH" -F 499)
  ( sleep "$PERF_DELAY"; exec perf record -q "${PERF_CG[@]}" -p "$SERVER_PID" -o "$LOG.perf.data" -- sleep "$PERF_SECONDS" ) \
    >"$LOG.perf.log" 2>&1 &
  PERF_PID=$!
fi
secs="$(awk '{ n = $0 + 0; if ($0 ~ /m$/) n *= 60; if ($0 ~ /h$/) n *= 3600; print int(n) + 1 }' <<<"$DURATION")"
TIMEFORMAT='%U %S'
{ time env RUSH_USERS="$USERS_FILE" RUSH_MODE="$MODE" RUSH_CONCERT="$CONCERT" RUSH_SCHEDULES="$SCHED_FILE" \
    RUSH_SEATS="$SEATS" RUSH_THREADS="$WRK_THREADS" RUSH_RUN="$STAMP" RUSH_MAX_REQUESTS="${MAX_REQUESTS:-0}" \
    timeout $((secs + 60)) "${TS_WRK[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency \
    -s "$HERE/reservations.lua" "$URL" >"$LOG.wrk" ; } 2>"$WORK/wrk-time"
CPU1="$(cpu_us "$SERVER_PID")"
T1="$(now_ns)"
RSS_AFTER="$(rss_kb "$SERVER_PID")"
HWM="$(hwm_kb "$SERVER_PID")"
FLUSH_AFTER="$(flushes)"
DU_AFTER="$(du -sb "$DATA" | cut -f1)"
if [[ -n "$PERF_PID" ]]; then wait "$PERF_PID" || true; PERF_PID=""; fi
cat "$LOG.wrk"

read -r WRK_U WRK_S < <(tail -n 1 "$WORK/wrk-time")
summary="$(grep '^RUSH_SUMMARY' "$LOG.wrk")"
status="$(grep '^RUSH_STATUS' "$LOG.wrk" | cut -d' ' -f2-)"
get() { sed -nE "s/.* $1=([0-9]+).*/\1/p" <<<" $summary"; }
REQ="$(get requests)"; DUR_US="$(get duration_us)"
P50="$(get p50_us)"; P99="$(get p99_us)"; P999="$(get p999_us)"
ERRS="connect=$(get err_connect) read=$(get err_read) write=$(get err_write) timeout=$(get err_timeout)"
[[ "$REQ" -gt 0 ]] || { echo "wrk made no requests" >&2; exit 1; }
CPU_DELTA_US="$(awk -v a="$CPU0" -v b="$CPU1" 'BEGIN { print b - a }')"
fmt() { awk "BEGIN { printf \"$1\", $2 }"; }
RPS="$(fmt %.0f "$REQ / ($DUR_US / 1e6)")"
CPU_PER_REQ="$(fmt %.1f "$CPU_DELTA_US / $REQ")"
CPU_PCT="$(fmt %.0f "100 * $CPU_DELTA_US / $DUR_US")" # over wrk's active time
WRK_CPU_PER_REQ="$(fmt %.1f "($WRK_U + $WRK_S) * 1e6 / $REQ")"
BYTES_PER_REQ="$(fmt %.0f "($DU_AFTER - $DU_BEFORE) / $REQ")"
FLUSHES="$(fmt %.0f "$FLUSH_AFTER - $FLUSH_BEFORE" 2>/dev/null || echo '?')"

# ---- restart on the same data --------------------------------------------------------
stop_server
DU_STOPPED="$(du -sb "$DATA" | cut -f1)"
FIRST_STOP_MS=$STOP_MS; FIRST_STOP_RC=$STOP_RC
start_server
RESTART_MS=$STARTUP_MS
sleep 0.2
RESTART_RSS="$(rss_kb "$SERVER_PID")"
stop_server

echo
echo "== figures ($MODE, $DURATION, $USERS users, $CONNECTIONS connections)"
echo "loadavg (1/5/15 min)          start $LOAD_START; before wrk $LOAD_RUN"
echo "requests                      $REQ in $(fmt %.2f "$DUR_US / 1e6") s = $RPS req/s"
echo "status codes                  $status   (socket errors: $ERRS)"
echo "latency p50 / p99 / p99.9     $(fmt %.2f "$P50 / 1000") / $(fmt %.2f "$P99 / 1000") / $(fmt %.2f "$P999 / 1000") ms"
echo "server CPU                    $(fmt %.2f "$CPU_DELTA_US / 1e6") s = $CPU_PER_REQ us per request (${CPU_PCT}% of one core)"
echo "wrk CPU                       $(fmt %.2f "$WRK_U + $WRK_S") s = $WRK_CPU_PER_REQ us per request"
echo "store flushes                 $FLUSHES ($(fmt %.2f "$FLUSHES / $REQ") per request)"
echo "server RSS                    before $((RSS_BEFORE / 1024)) MiB, after $((RSS_AFTER / 1024)) MiB, peak $((HWM / 1024)) MiB"
echo "data dir (du -sb)             before $DU_BEFORE, after $DU_AFTER, after stop $DU_STOPPED = $BYTES_PER_REQ bytes per request"
echo "stop (SIGTERM until exit)     ${FIRST_STOP_MS} ms, exit code $FIRST_STOP_RC"
echo "restart on the same data      ${RESTART_MS} ms until /healthz 200, RSS $((RESTART_RSS / 1024)) MiB"
[[ -f "$LOG.perf.data" ]] && echo "perf data                     $LOG.perf.data"
echo "logs                          $LOG.*"
echo "RESULT mode=$MODE duration=$DURATION users=$USERS conns=$CONNECTIONS load=\"$LOAD_START\" requests=$REQ rps=$RPS" \
  "status=\"$status\" p50_ms=$(fmt %.2f "$P50 / 1000") p99_ms=$(fmt %.2f "$P99 / 1000") cpu_us_per_req=$CPU_PER_REQ" \
  "server_cpu_pct=$CPU_PCT wrk_cpu_us_per_req=$WRK_CPU_PER_REQ flushes=$FLUSHES rss_mib=$((RSS_AFTER / 1024))" \
  "du_after=$DU_AFTER bytes_per_req=$BYTES_PER_REQ restart_ms=$RESTART_MS restart_rss_mib=$((RESTART_RSS / 1024))" \
  | tee -a "$OUT_DIR/results.txt"
