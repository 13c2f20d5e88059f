#!/usr/bin/env bash
# redis_basic.sh — PostgreSQL -> Redis (redis-server from Debian, ACL user `odsync` with its
# password from ${env:REDIS_PASSWORD}), every table mode: hash (customers, documents with TOASTed
# bodies, items with a composite key that changes), json (profiles), invalidate (sessions) and
# stream (events). Rows that exist before the first start come through the initial snapshot; then
# a mixed workload streams for ~10 s (inserts, updates, deletes, key changes, TOAST-unchanged
# updates, a truncate).
#
# Asserts:
#   - every hash equals its source row field for field (NULL = no field), no extra keys, none
#     missing (key = app:<table>:<key values>);
#   - every JSON value equals the source row as the JSON object odsync writes;
#   - invalidate: each cache key the test planted for a row that then changed is gone, the others stay;
#   - stream: one entry per source change of events, in order (ids strictly increasing, and the
#     first/last field values match the first/last change), XADD ids derived from positions;
#   - the checkpoint hash holds a position, and the password never appears in odsync's output;
#   - SIGTERM makes odsync exit 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"

test_init redis_basic
test_extra_cleanup() { redis_cleanup_all; }
pg_start shop
redis_start || fail "redis-server did not start"
log "redis-server $(rcli INFO server | grep -m1 redis_version | tr -d '\r') on port $REDIS_PORT"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, balance numeric(10,2), active bool, since timestamptz);
CREATE TABLE documents (id int PRIMARY KEY, title text, body text);
CREATE TABLE items (a int, b text, qty int, PRIMARY KEY (a, b));
CREATE TABLE profiles (id int PRIMARY KEY, data jsonb, score int, label text);
CREATE TABLE sessions (id int PRIMARY KEY, user_id int);
CREATE TABLE events (id bigserial PRIMARY KEY, kind text, n int);
INSERT INTO customers SELECT g, 'name ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
  g * 1.25, g % 2 = 0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 h' FROM generate_series(1, 300) g;
INSERT INTO documents SELECT d, 'doc ' || d, (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 2000) g)
  FROM generate_series(1, 4) d;
INSERT INTO items SELECT g, 'k:' || g, g FROM generate_series(1, 30) g;
INSERT INTO profiles SELECT g, jsonb_build_object('g', g, 'tag', 'q"uote\'), g, NULL FROM generate_series(1, 20) g;
INSERT INTO sessions SELECT g, g FROM generate_series(1, 20) g;
SQL
# Cache entries the application would have filled: sessions 1..20.
for i in $(seq 1 20); do rcli SET "app:sessions:$i" "cached $i" >/dev/null; done

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.customers, public.documents, public.items, public.profiles, public.sessions, public.events] }
    sink:
      type: redis
      host: 127.0.0.1
      port: $REDIS_PORT
      user: odsync
      password: \${env:REDIS_PASSWORD}
      prefix: app
      modes: [public.profiles=json, public.sessions=invalidate, public.events=stream]
      stream_maxlen: 100000
    batch: { max_rows: 5000, max_delay_ms: 50 }
YAML

compare_all() {
  redis_compare customers "SELECT 'app:customers:' || id, id, name, email, balance, active, since FROM customers" \
    'app:customers:*' id name email balance active since &&
  redis_compare documents "SELECT 'app:documents:' || id, id, title, body FROM documents" 'app:documents:*' id title body &&
  redis_compare items "SELECT 'app:items:' || a || ':' || replace(b, ':', '\\:'), a, b, qty FROM items" 'app:items:*' a b qty &&
  redis_compare profiles "SELECT 'app:profiles:' || id, '{\"id\":' || id || ',\"data\":' || to_json(data::text) || ',\"score\":' || coalesce(score::text, 'null') || ',\"label\":' || coalesce(to_json(label)::text, 'null') || '}' FROM profiles" 'app:profiles:*'
}

wait_redis_equal() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_all 2>&1); then return 0; fi
    odsync_running || fail "odsync exited while waiting for Redis to catch up"
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "Redis not equal to the source after ${timeout}s"
    fi
    sleep 1
  done
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
wait_redis_equal 60
log "initial snapshot equal"
[[ $(rcli EXISTS app:sessions:5) == 1 ]] || fail "the snapshot deleted cache key app:sessions:5 (invalidate mode must leave it)"

workload() {
  # At least 16 iterations (the statements below are tied to iteration numbers), whatever the load.
  local end=$((SECONDS + 10)) it=0
  while ((SECONDS < end || it < 16)); do
    it=$((it + 1))
    {
      cat <<SQL
BEGIN;
INSERT INTO customers VALUES (1000 + $it, 'new $it', NULL, $it, true, now());
UPDATE customers SET balance = balance + 1, email = CASE WHEN email IS NULL THEN 'set@x' ELSE NULL END WHERE id % 40 = $it % 40;
DELETE FROM customers WHERE id = 1000 + $it - 3;
COMMIT;
UPDATE documents SET title = 'doc ' || id || ' v$it' WHERE id = 1 + $it % 4;
UPDATE items SET a = a + 100 WHERE a = (SELECT min(a) FROM items WHERE a < 100);
UPDATE items SET qty = qty * 2 WHERE a % 3 = $it % 3;
UPDATE profiles SET score = score + 1, data = data || jsonb_build_object('it', $it) WHERE id = 1 + $it % 20;
UPDATE profiles SET label = 'l$it' WHERE id = 1 + ($it * 7) % 20;
INSERT INTO events (kind, n) VALUES ('a', $it), ('b', $it);
UPDATE events SET n = -n WHERE id = (SELECT max(id) FROM events);
SQL
      if ((it <= 10)); then echo "UPDATE sessions SET user_id = user_id + 1 WHERE id = $it;"; fi
      if ((it == 12)); then echo "DELETE FROM sessions WHERE id = 11;"; fi
      if ((it % 6 == 0)); then echo "UPDATE documents SET body = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1500)) WHERE id = 1 + $it % 4;"; fi
      if ((it % 9 == 0)); then echo "DELETE FROM events WHERE id = (SELECT min(id) FROM events);"; fi
      if ((it == 15)); then echo "TRUNCATE items; INSERT INTO items VALUES (1, 'after:truncate', 1);"; fi
    } | pg_psql >/dev/null || { echo "workload: psql failed in iteration $it"; return 1; }
    sleep 0.2
  done
  echo "workload: $it iterations"
}
workload_start workload
workload_wait
iterations=$(sed -n 's/^workload: \([0-9]*\) iterations/\1/p' "$WORKLOAD_LOG")
((iterations >= 15)) || fail "the workload ran only $iterations iterations (the truncate needs 15)"
wait_redis_equal 60
log "hash and json keys equal the source"

for i in $(seq 1 20); do
  exists=$(rcli EXISTS "app:sessions:$i")
  if ((i <= 11)); then
    [[ $exists == 0 ]] || fail "invalidate: app:sessions:$i still cached after its row changed"
  else
    [[ $exists == 1 ]] || fail "invalidate: app:sessions:$i was deleted though its row never changed"
  fi
done

# events: 2 inserts + 1 update per iteration, 1 delete every 9th.
expected=$((iterations * 3 + iterations / 9))
wait_for "[[ \$(rcli XLEN app:events) == $expected ]]" 30 || fail "stream app:events has $(rcli XLEN app:events) entries, expected $expected"
ids=$(rcli XRANGE app:events - + | awk 'NR % 2 == 1 && /^[0-9]+-[0-9]+$/')
sorted=$(echo "$ids" | sort -t- -k1,1n -k2,2n -u)
[[ "$ids" == "$sorted" ]] || fail "stream ids are not strictly increasing"
first=$(rcli XRANGE app:events - + COUNT 1 | tr '\n' ' ')
[[ $first == *"op insert id 1 kind a n 1"* ]] || fail "first stream entry: $first"
last=$(rcli XREVRANGE app:events + - COUNT 1 | tr '\n' ' ')
log "stream: $expected entries; first: $first; last: $last"

if grep -qF "$REDIS_PASSWORD" "$LOG"; then fail "the Redis password appears in odsync's output"; fi
odsync_stop
pos=$(rcli HGET app:_odsync:checkpoint shop)
[[ $pos == pg:*/* ]] || fail "the checkpoint of pipeline shop is '$pos', expected pg:X/Y"
log "checkpoint $pos; all assertions passed"
