#!/usr/bin/env bash
# bench/http_ingest.sh — HTTP ingest (`type: http`) into SQLite: events/s with 8 concurrent
# clients posting batches of 100, and the p95 acknowledgement latency (a 200 means fsync'd in the
# journal). Then the end-to-end delivery: how long until the SQLite sink holds every event.
# On demand, never in CI. BENCH_BATCHES (per client, default 200), BENCH_CLIENTS (8), BENCH_SIZE (100).
# Wall-clock figures on a shared machine: report them as "measured under load".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build-release/odsync}
[[ -x $ODSYNC_BIN ]] || ODSYNC_BIN=$ROOT/build/odsync
CLIENTS=${BENCH_CLIENTS:-8} BATCHES=${BENCH_BATCHES:-200} SIZE=${BENCH_SIZE:-100}
TMP=$(mktemp -d /tmp/odsync-bench-http.XXXXXX)
PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/odsync.yml" <<YAML
state_dir: $TMP/state
pipelines:
  - name: bench
    source:
      type: http
      listen: 127.0.0.1:$PORT
      tables: ["public.bench (id bigint key, a integer, b text, c timestamptz, d numeric(12,2))"]
    sink: { type: sqlite, path: $TMP/sink.db }
YAML
"$ODSYNC_BIN" run -c "$TMP/odsync.yml" >"$TMP/odsync.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$PORT/v1/health" >/dev/null && break; sleep 0.1; done
echo "odsync: $ODSYNC_BIN; $CLIENTS clients x $BATCHES batches x $SIZE events"
t0=$(date +%s.%N)
python3 "$HERE/http_ingest_load.py" "http://127.0.0.1:$PORT" "$CLIENTS" "$BATCHES" "$SIZE" | tee "$TMP/load.json"
want=$((CLIENTS * BATCHES * SIZE))
for _ in $(seq 1 1200); do
  n=$(sqlite3 "$TMP/sink.db" "SELECT count(*) FROM bench" 2>/dev/null || echo 0)
  [[ $n -ge $want ]] && break
  sleep 0.1
done
t1=$(date +%s.%N)
[[ $n -eq $want ]] || { echo "sink holds $n of $want rows" >&2; exit 1; }
echo "delivered: $want rows in SQLite $(python3 -c "print(round($t1-$t0,2))") s after the first post" \
  "($(python3 -c "print(round($want/($t1-$t0)))") events/s end to end)"
echo "journal: $(du -sh "$TMP/state/http/bench" | cut -f1) left; group commits (one fdatasync each): $(curl -s "http://127.0.0.1:$PORT/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["group_commits"])') for $((CLIENTS * BATCHES)) requests"
