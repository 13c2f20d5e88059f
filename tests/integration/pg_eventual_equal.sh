#!/usr/bin/env bash
# pg_eventual_equal.sh — consistency: eventual (apply_workers: 4) into a PostgreSQL sink: whatever
# a reader may see meanwhile, the final state of the target is exact.
#
# Workload (4 concurrent psql sessions for a few seconds), starting right after the slot is
# active, so the target tables are created by the sink from parallel batches:
#   bulk session: 2,000-row inserts in one transaction, range deletes, multi-row updates of
#     overlapping groups, primary-key changes, a keyless table (REPLICA IDENTITY FULL) with
#     duplicate rows updated/deleted one at a time, TRUNCATE + refill of a table inside one
#     transaction and on its own, one TRUNCATE of the insert-only keyless log;
#   3 hot sessions: single-row updates of the same 300 keys (overlapping between sessions),
#     upserts and deletes on a composite-key table, inserts into the keyless log, keyless updates
#     and deletes.
# Asserts: odsync logs "consistency eventual, 4 sink writers" and holds 4 connections to the
# target while it applies; after the workload the target equals the source exactly
# (od_compare_pg, all five tables, duplicates in keyless tables counted); SIGTERM exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_eventual_equal
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-12}

pg_start_pair shop warehouse
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
WORKLOAD_LOG=$TEST_TMP/workload.log
TABLES=(--table public.items --table public.kv --table public.events --table public.ledger --table public.staging)
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${TABLES[@]}"; }
WORKLOAD_PIDS=()
test_extra_cleanup() {
  local pid
  for pid in "${WORKLOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${WORKLOAD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
}

log "source on port $SRC_PORT, target on port $DST_PORT"
pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, qty int NOT NULL, note text, attrs jsonb,
                    updated_at timestamptz);
CREATE SEQUENCE item_ids START 1000;                                 -- 1..300: the hot keys
CREATE TABLE kv (tenant int, key text, val numeric(12,3), PRIMARY KEY (tenant, key));
CREATE TABLE events (kind text, n int, payload text);                    -- keyless, insert-only
CREATE TABLE ledger (account text, amount numeric(12,2), memo text);     -- keyless, updated
ALTER TABLE ledger REPLICA IDENTITY FULL;
CREATE TABLE staging (id int PRIMARY KEY, round int, v text);            -- truncated again and again

CREATE PROCEDURE bulk(secs float8) LANGUAGE plpgsql AS $$
DECLARE
  it int := 0; lo bigint;
  stop_at timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
  WHILE clock_timestamp() < stop_at OR it < 8 LOOP
    it := it + 1;
    INSERT INTO items SELECT nextval('item_ids'), g % 50, g, 'bulk ' || it, jsonb_build_object('it', it, 'g', g),
                             clock_timestamp()
      FROM generate_series(1, 2000) g;
    INSERT INTO ledger SELECT 'acct ' || (g % 7), (g % 3) * 1.25, 'dup' FROM generate_series(1, 30) g;
    COMMIT;
    UPDATE items SET qty = qty + 1000, note = 'grp bump ' || it WHERE grp = it % 50 AND id % 3 = 0;
    COMMIT;
    lo := (SELECT min(id) FROM items WHERE id > 300);
    DELETE FROM items WHERE id BETWEEN lo AND lo + 700;
    COMMIT;
    -- key changes: move a few rows to a new id (the old key disappears on the target)
    UPDATE items SET id = id + 1000000000, note = 'moved' WHERE id IN (SELECT id FROM items WHERE id > 300
      AND id < 1000000000 ORDER BY id DESC LIMIT 3);
    COMMIT;
    -- keyless: change and remove one of several identical rows
    UPDATE ledger SET memo = 'one dup changed' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE memo = 'dup');
    DELETE FROM ledger WHERE ctid = (SELECT max(ctid) FROM ledger WHERE memo = 'dup');
    COMMIT;
    -- truncate + refill in one transaction, then a plain truncate now and then
    TRUNCATE staging;
    INSERT INTO staging SELECT g, it, md5((it * g)::text) FROM generate_series(1, 300) g;
    COMMIT;
    UPDATE staging SET v = 'updated' WHERE id % 10 = it % 10;
    COMMIT;
    IF it % 3 = 0 THEN
      TRUNCATE staging;
      COMMIT;
      INSERT INTO staging SELECT g, -it, 'after plain truncate' FROM generate_series(1, 50) g;
      COMMIT;
    END IF;
    IF it = 4 THEN
      TRUNCATE events;
      COMMIT;
    END IF;
  END LOOP;
  RAISE NOTICE 'bulk: % rounds', it;
END $$;

-- Overlapping single-row work on the same hot keys from several sessions.
CREATE PROCEDURE hot(secs float8, s int) LANGUAGE plpgsql AS $$
DECLARE
  n int := 0; k int; t int;
  stop_at timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
  WHILE clock_timestamp() < stop_at LOOP
    n := n + 1;
    k := 1 + floor(random() * 300)::int;
    INSERT INTO items VALUES (k, k % 50, 1, 'hot', NULL, clock_timestamp())
      ON CONFLICT (id) DO UPDATE SET qty = items.qty + 1, note = 'hot s' || s || ' n' || n,
                                     attrs = jsonb_build_object('s', s, 'n', n), updated_at = clock_timestamp();
    t := floor(random() * 5)::int;
    IF n % 4 = 0 THEN
      DELETE FROM kv WHERE tenant = t AND key = 'k' || (k % 40);
    ELSE
      INSERT INTO kv VALUES (t, 'k' || (k % 40), n * 0.001)
        ON CONFLICT (tenant, key) DO UPDATE SET val = kv.val + EXCLUDED.val;
    END IF;
    INSERT INTO events VALUES ('hot', s, CASE WHEN n % 5 = 0 THEN NULL ELSE 'n' || n END);
    COMMIT;
    IF n % 25 = 0 THEN
      DELETE FROM items WHERE id = k;     -- a hot key disappears, to come back later
      UPDATE ledger SET amount = amount + 1 WHERE ctid = (SELECT min(ctid) FROM ledger WHERE account = 'acct ' || s);
      COMMIT;
    END IF;
  END LOOP;
  RAISE NOTICE 'hot %: % transactions', s, n;
END $$;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items, public.kv, public.events, public.ledger, public.staging] }
    sink: { type: postgres, dsn: "$DST_DSN" }
    consistency: eventual
    apply_workers: 4
    apply_parallel_min_rows: 0
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
# The slot is already active while the initial snapshot holds its exported snapshot; streaming
# (and this line) follows once the copy is done.
wait_for "grep -q 'consistency eventual, 4 sink writers' '$LOG'" 60 ||
  fail "odsync does not log 'consistency eventual, 4 sink writers'"
log "slot active; bulk + 3 hot sessions for ${WORKLOAD_SECONDS}s"

pg_psql -c "CALL bulk($WORKLOAD_SECONDS)" >>"$WORKLOAD_LOG" 2>&1 &
WORKLOAD_PIDS+=($!)
for s in 1 2 3; do
  pg_psql -c "CALL hot($WORKLOAD_SECONDS, $s)" >>"$WORKLOAD_LOG" 2>&1 &
  WORKLOAD_PIDS+=($!)
done

# While the workload runs, the target must see the 4 sink connections (carrier + 3 helpers).
max_conns=0
while kill -0 "${WORKLOAD_PIDS[0]}" 2>/dev/null; do
  c=$(dst_psql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'odsync_shop_sink'")
  ((c > max_conns)) && max_conns=$c
  sleep 0.5
done
for pid in "${WORKLOAD_PIDS[@]}"; do
  wait "$pid" || { cat "$WORKLOAD_LOG" >&2; fail "a workload session failed"; }
done
WORKLOAD_PIDS=()
grep 'NOTICE' "$WORKLOAD_LOG" || true
log "workload done; up to $max_conns sink connections seen on the target"
((max_conns == 4)) || fail "expected 4 sink connections on the target (carrier + 3 helpers), saw at most $max_conns"

deadline=$(($(date +%s) + 60))
until out=$(compare_pg 2>&1); do
  if (($(date +%s) >= deadline)); then
    echo "$out" >&2
    echo "---- odsync's connections on the target (pid|state|wait event|holds the DDL lock|query) ----" >&2
    dst_psql -c "SELECT a.pid, a.state, a.wait_event_type || ':' || a.wait_event,
                        EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted),
                        left(a.query, 70)
                 FROM pg_stat_activity a WHERE a.application_name = 'odsync_shop_sink'" >&2 || true
    fail "target not equal to source 60s after the workload (od_compare_pg report above)"
  fi
  odsync_running || fail "odsync exited during the catch-up"
  sleep 1
done
echo "$out"
[[ $(pg_psql -c "SELECT count(*) FROM items WHERE id > 1000000000") -gt 0 ]] || fail "the workload made no key change"
odsync_stop
compare_pg >/dev/null || { compare_pg || true; fail "target differs from source after SIGTERM"; }
log "all assertions passed"
