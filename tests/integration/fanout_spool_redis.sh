#!/usr/bin/env bash
# fanout_spool_redis.sh — PostgreSQL -> SQLite (a) + Redis (cache, hash mode), Redis stopped for
# ~20 s during a load of inserts, updates and deletes: the spool with a non-SQL sink.
#
# Asserts: while redis-server is down, sink a receives every change (equal to the source before
# Redis is back) and the session never restarts; a SIGKILL while Redis is down and a restart while
# it is still down (a goes on); Redis back: its spool drains and its hashes equal the source row for
# row; SIGTERM exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"

test_init fanout_spool_redis
test_extra_cleanup() { redis_cleanup_all; }
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
redis_start || fail "redis-server did not start"
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
      - { name: cache, type: redis, port: $REDIS_PORT, user: odsync, password: "\${env:REDIS_PASSWORD}", prefix: c }
YAML
redis_equal() { redis_compare items "SELECT 'c:items:' || id, id, v, n FROM items" 'c:items:*' id v n; }
# batch FROM TO: insert FROM..TO, update every 5th row inserted so far, delete every 11th of these.
batch() {
  pg_psql -c "BEGIN; INSERT INTO items SELECT g, 'v' || g, g FROM generate_series($1, $2) g;
              UPDATE items SET v = v || '+', n = n + 1 WHERE id BETWEEN $1 AND $2 AND id % 5 = 0;
              DELETE FROM items WHERE id BETWEEN $1 AND $2 AND id % 11 = 0; COMMIT"
}
export REDIS_PASSWORD
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
batch 1 500
wait_equal 60 >/dev/null
wait_for redis_equal 60 || { redis_equal || true; fail "Redis does not hold the first rows"; }
log "500 rows in both sinks; stopping redis-server"

redis_stop_server
t0=$(date +%s)
next=501
while (($(date +%s) - t0 < 20)); do
  batch $next $((next + 299))
  next=$((next + 300))
  sleep 0.3
done
wait_equal 60 >/dev/null
log "Redis down $(($(date +%s) - t0)) s: sink a equal to the source ($(pg_psql -c 'SELECT count(*) FROM items') rows)"
[[ $(grep -c "pipeline shop: streaming from" "$LOG") -eq 1 ]] || fail "the session restarted while Redis was down"
grep -q "sink cache: .*its spool" "$LOG" || fail "no spooling for the Redis sink in the log"
odsync_kill9
odsync_start "$CONFIG" "$LOG"
batch $next $((next + 299)); next=$((next + 300))
wait_equal 60 >/dev/null
grep -q "sink cache is unreachable" "$LOG" || fail "the restart did not start without Redis"
log "SIGKILL, restart with Redis still down: sink a equal again"
redis_restart_server || fail "redis-server did not restart"
wait_for redis_equal 120 || { redis_equal || true; fail "Redis differs from the source 120 s after it came back"; }
batch $next $((next + 299)); next=$((next + 300))
wait_equal 60 >/dev/null
wait_for redis_equal 60 || { redis_equal || true; fail "Redis differs from the source after more changes"; }
log "Redis back: its spool drained, hashes equal the source ($(pg_psql -c 'SELECT count(*) FROM items') rows)"
odsync_stop
log "all assertions passed"
