#!/bin/bash
# Usage: benches/chat/room_memory.sh SERVER_BIN LOAD_BIN
# One room of 60,000 messages (chat-fanout at 1,000 msg/s for 60 s), the server restarted,
# then a member's room list, the newest page and page 100: RSS after start, after the
# list and after reading the room, and each call's time. Loopback only; stops by itself.
set -euo pipefail
BIN=$1; LOAD=$2; PORT=${PORT:-18191}; D=$(mktemp -d); export BOXOFFICE_JWT_SECRET=load-secret
rss() { grep VmRSS /proc/$1/status | awk '{print $2/1024 " MiB"}'; }
start() { BOXOFFICE_RATE_LIMIT=off BOXOFFICE_DATA_DIR=$D BOXOFFICE_BIND=127.0.0.1:$PORT RUST_LOG=warn $BIN serve > /dev/null 2>&1 & PID=$!; for i in $(seq 100); do curl -s -o /dev/null 127.0.0.1:$PORT/healthz && break; sleep 0.05; done; }
start
$LOAD chat-fanout --url http://127.0.0.1:$PORT --rooms 1 --members 2 --senders 2 --rate 1000 --duration 60s --no-progress --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print("sent", r["figures"]["messages_sent_ok"])'
kill -TERM $PID; wait $PID
start; sleep 2; echo "after start: $(rss $PID)"
T=$($BIN token --user 1000000 --ttl 1h)
ROOM=$(curl -s 127.0.0.1:$PORT/chat/rooms/ -H "Authorization: Bearer $T" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["rooms"][0]["room_id"])')
echo "list: $(rss $PID)"
curl -s -o /dev/null -w "messages page %{http_code} %{time_total}s\n" "127.0.0.1:$PORT/chat/rooms/$ROOM/messages/?page=1&page_size=50" -H "Authorization: Bearer $T"
curl -s -o /dev/null -w "messages page 100 %{http_code} %{time_total}s\n" "127.0.0.1:$PORT/chat/rooms/$ROOM/messages/?page=100&page_size=50" -H "Authorization: Bearer $T"
curl -s -o /dev/null -w "list %{http_code} %{time_total}s\n" 127.0.0.1:$PORT/chat/rooms/ -H "Authorization: Bearer $T"
echo "after reading the room: $(rss $PID)"
du -sb $D | awk '{print "data " $1 " B"}'
kill -TERM $PID; wait $PID; rm -rf $D
