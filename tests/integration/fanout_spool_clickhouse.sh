#!/usr/bin/env bash
# fanout_spool_clickhouse.sh — PostgreSQL -> SQLite (a) + ClickHouse (dw), clickhouse-server stopped
# for ~20 s during a load of inserts, updates and deletes: the spool with a sink that replays
# idempotently (no atomic checkpoint: a batch applied again collapses by version).
#
# Asserts: while clickhouse-server is down, sink a receives every change (equal to the source before
# ClickHouse is back) and the session never restarts; a SIGKILL while it is down and a restart while
# it is still down (a goes on); ClickHouse back: its spool drains and its `_current` view equals the
# source row for row; SIGTERM exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init fanout_spool_clickhouse
test_extra_cleanup() { ch_cleanup_all; }
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
ch_start || fail "clickhouse-server did not start"
SINK_DB=$TEST_TMP/a.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text, n int)"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    reconnect_max_ms: 1000
    sinks:
      - { name: a, type: sqlite, path: $SINK_DB }
      - { name: dw, type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: dw, user: odsync, password: "\${env:CH_PASSWORD}" }
YAML
ch_equal() { ch_compare_table items "SELECT id, v, n FROM items ORDER BY id" "SELECT id, v, n FROM dw.items_current ORDER BY id"; }
# batch FROM TO: insert FROM..TO, update every 5th row inserted so far, delete every 11th of these.
batch() {
  pg_psql -c "BEGIN; INSERT INTO items SELECT g, 'v' || g, g FROM generate_series($1, $2) g;
              UPDATE items SET v = v || '+', n = n + 1 WHERE id BETWEEN $1 AND $2 AND id % 5 = 0;
              DELETE FROM items WHERE id BETWEEN $1 AND $2 AND id % 11 = 0; COMMIT"
}
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
batch 1 500
wait_equal 60 >/dev/null
wait_for ch_equal 60 || { ch_equal || true; fail "ClickHouse does not hold the first rows"; }
log "500 rows in both sinks; stopping clickhouse-server"

ch_stop_server
t0=$(date +%s)
next=501
while (($(date +%s) - t0 < 20)); do
  batch $next $((next + 299))
  next=$((next + 300))
  sleep 0.3
done
wait_equal 60 >/dev/null
log "ClickHouse down $(($(date +%s) - t0)) s: sink a equal to the source ($(pg_psql -c 'SELECT count(*) FROM items') rows)"
[[ $(grep -c "pipeline shop: streaming from" "$LOG") -eq 1 ]] || fail "the session restarted while ClickHouse was down"
grep -q "sink dw: .*its spool" "$LOG" || fail "no spooling for the ClickHouse sink in the log"
odsync_kill9
odsync_start "$CONFIG" "$LOG"
batch $next $((next + 299)); next=$((next + 300))
wait_equal 60 >/dev/null
grep -q "sink dw is unreachable" "$LOG" || fail "the restart did not start without ClickHouse"
log "SIGKILL, restart with ClickHouse still down: sink a equal again"
ch_restart_server || fail "clickhouse-server did not restart"
wait_for ch_equal 120 || { ch_equal || true; fail "ClickHouse differs from the source 120 s after it came back"; }
batch $next $((next + 299)); next=$((next + 300))
wait_equal 60 >/dev/null
wait_for ch_equal 60 || { ch_equal || true; fail "ClickHouse differs from the source after more changes"; }
log "ClickHouse back: its spool drained, items_current equals the source ($(pg_psql -c 'SELECT count(*) FROM items') rows)"
odsync_stop
log "all assertions passed"
