#!/usr/bin/env bash
# pg_sink_lock_timeout.sh — a lock held on the PostgreSQL target never hangs a pipeline.
#
# A user session on the target holds ACCESS EXCLUSIVE on the replicated table (an open
# transaction) while changes arrive. With sink.lock_timeout_ms: 500 the sink's batch fails with
# lock_not_available, which is retriable: odsync logs a retry and keeps running. Once the user
# transaction ends, the target catches up and equals the source (od_compare_pg), and SIGTERM
# exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_sink_lock_timeout
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair shop warehouse
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items] }
    sink: { type: postgres, dsn: "$DST_DSN", lock_timeout_ms: 500 }
YAML
odsync_start "$CONFIG" "$LOG"
pg_psql -c "INSERT INTO items VALUES (1, 'first')"
wait_for "PGPORT=$DST_PORT PGDATABASE=warehouse pg_psql -c 'SELECT v FROM items WHERE id = 1' | grep_q first" 60 ||
  fail "the first row never reached the target"

# A user transaction on the target holds the table for a few seconds.
PGPORT=$DST_PORT PGDATABASE=warehouse pg_psql -c "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT" >/dev/null &
LOCKER=$!
sleep 0.5
pg_psql -c "INSERT INTO items SELECT g, 'v' || g FROM generate_series(2, 500) g"
wait_for "grep -q 'lock timeout' '$LOG'" 30 || fail "the sink did not time out on the held lock"
odsync_running || fail "odsync exited instead of retrying"
grep -q "retrying in" "$LOG" || fail "no retry after the lock timeout"
wait "$LOCKER"

deadline=$(($(date +%s) + 60))
until out=$("$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.items 2>&1); do
  (($(date +%s) < deadline)) || { echo "$out" >&2; fail "target not equal after the lock was released"; }
  sleep 1
done
echo "$out"
odsync_stop
