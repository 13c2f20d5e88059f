#!/usr/bin/env bash
# poll_late_commit.sh — the late-commit hole of query-based polling is closed (postgres_poll).
#
# Two pipelines of one odsync poll the same table: `byxmin` (watermark: xmin) into SQLite and
# `byts` (watermark: updated_at, lag_ms: 0, so only the open-transaction rule protects it) into
# PostgreSQL. Transaction A begins, writes row 'late' (updated_at = now() = A's start) and stays
# open; transaction B then writes row 'early' (a newer updated_at) and commits; the pollers run many
# cycles; then A commits.
#
# Asserts:
#  - the premise: in the source, 'late' has an older updated_at (and an older xid) than 'early';
#  - a naive poller would have read 'early', moved its watermark past 'late' and never read it.
#    Here, while A is open, neither sink holds 'early' (the horizon is held below A) although
#    both pollers kept polling (a row committed before A began did arrive);
#  - once A commits, both rows arrive in both sinks, and both sinks equal the source row for row
#    (od_compare for SQLite, od_compare_pg for PostgreSQL).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init poll_late_commit
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql <<'SQL'
CREATE TABLE items (id text PRIMARY KEY, v int, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO items VALUES ('before', 0);
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: byxmin
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items], watermark: xmin, interval_ms: 100 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: byts
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items], watermark: updated_at, lag_ms: 0, interval_ms: 100 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
odsync_start "$CONFIG" "$LOG"
lite_has() { [[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM items WHERE id = '$1'" 2>/dev/null) == 1 ]]; }
pgs_has() { [[ $(dst_psql -c "SELECT count(*) FROM items WHERE id = '$1'" 2>/dev/null) == 1 ]]; }
wait_for "lite_has before && pgs_has before" 120 || fail "the initial row did not arrive in both sinks"

# Transaction A: open, writes 'late', holds.
FIFO=$TEST_TMP/a.fifo
mkfifo "$FIFO"
psql -X -q -At -v ON_ERROR_STOP=1 <"$FIFO" >"$TEST_TMP/a.out" 2>&1 &
A_PID=$!
exec 7>"$FIFO"
echo "BEGIN; INSERT INTO items VALUES ('late', 1); SELECT 'a-wrote';" >&7
wait_for "grep -q a-wrote $TEST_TMP/a.out" 30 || fail "transaction A did not write"
sleep 0.2
pg_psql -c "INSERT INTO items VALUES ('early', 2)"
pg_psql -c "INSERT INTO items VALUES ('during', 3)" # committed, newer: also held back while A is open
# Both pollers keep cycling (debug lines "cycle N") while A is open.
cycles() { grep -c "pipeline $1: postgres_poll source: cycle" "$LOG" || true; }
c_x=$(cycles byxmin) c_t=$(cycles byts)
wait_for "(( \$(cycles byxmin) >= c_x + 10 && \$(cycles byts) >= c_t + 10 ))" 120 ||
  fail "the pollers did not keep polling while A was open"
! lite_has early || fail "byxmin read 'early' while A (older xid) was open: its horizon passed A"
! pgs_has early || fail "byts read 'early' while A (older updated_at) was open: its horizon passed A"
echo "COMMIT; SELECT 'a-committed';" >&7
wait_for "grep -q a-committed $TEST_TMP/a.out" 30 || fail "transaction A did not commit"
exec 7>&-
wait "$A_PID" || fail "transaction A's psql failed: $(cat "$TEST_TMP/a.out")"
[[ $(pg_psql -c "SELECT (SELECT updated_at FROM items WHERE id = 'late') < (SELECT updated_at FROM items WHERE id = 'early')
  AND (SELECT xmin::text::bigint FROM items WHERE id = 'late') < (SELECT xmin::text::bigint FROM items WHERE id = 'early')") == t ]] ||
  fail "premise broken: 'late' should carry the older watermark"
wait_for "lite_has late && lite_has early && pgs_has late && pgs_has early" 120 ||
  fail "after A committed, not every row arrived (sqlite: $(sqlite3 "$SINK_DB" 'SELECT group_concat(id) FROM items'); postgres: $(dst_psql -c 'SELECT string_agg(id, \$\$,\$\$) FROM items'))"
compare --table public.items
"$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.items
odsync_stop
log "ok"
