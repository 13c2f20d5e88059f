#!/usr/bin/env bash
# pg_causal_order.sh — consistency: causal (apply_workers: 4) into a PostgreSQL sink: a reader of
# the target never sees a key go back in time, a transaction without the transactions it depends
# on, or part of a transaction.
#
# Source workload (4 psql sessions for a few seconds, COMMIT per transaction):
#   counters   40 keys; each transaction picks 1-3 keys, bumps their `version` by one and moves an
#              amount between them (the sum of `balance` stays 40000.00);
#   orders,    per order: T1 inserts it ('new'); T2 sets it 'shipped' AND inserts its shipment;
#   shipments  T3 sets the shipment delivered AND the order 'delivered'. T2 depends on T1, T3 on
#              T2 (they write the same order row).
# A reader on the TARGET samples continuously, each sample one autocommit statement (one snapshot):
#   (a) per key, `version` never decreases from one sample to the next (per-key order);
#   (b) every shipment has its order, in status 'shipped' (or 'delivered' exactly when the
#       shipment is delivered), and every non-new order has its shipment (dependencies, atomicity);
#   (c) counters hold 40 rows summing to 40000.00 (a transaction is atomic).
#
# Phases, on the same two servers with fresh databases:
#   1. teeth: `consistency: eventual` (changes spread by key hash over 4 writers) makes the reader
#      observe (b) and (c) violations — so the checks can see a dependency applied out of order and
#      a split transaction; (a) must still hold (eventual keeps per-key order too, so (a) has no
#      such demonstration here);
#   2. `consistency: causal`: no violation of (a), (b) or (c) in >= 500 samples (a sample reads
#      every row of the three tables: ~1,500-5,000 samples per phase on 2 cores).
# Each phase ends with the target equal to the source (od_compare_pg).
#
# Note: target tables are created from one-row transactions, waited for one at a time, so that
# only one sink writer runs DDL in a batch (see the note in pg_strong_bank.sh about the hang when
# the carrier takes the sink's DDL lock before the helpers).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_causal_order
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-8}
KEYS=40
TOTAL="$KEYS:40000.00"

pg_start_pair shop warehouse
WORKLOAD_PIDS=()
test_extra_cleanup() {
  local pid
  for pid in "${WORKLOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${WORKLOAD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
}

# One sample = one statement = one snapshot of the target:
#   "<dependency violations> <orders past 'new' without shipment> <count:sum of counters> <versions by key> <shipments>"
READER_SQL=$TEST_TMP/reader.sql
for _ in $(seq 1 200); do
  cat <<'SQL'
SELECT (SELECT count(*) FROM shipments s LEFT JOIN orders o ON o.id = s.order_id
         WHERE o.id IS NULL OR o.status NOT IN ('shipped', 'delivered') OR (o.status = 'delivered') <> s.delivered)
       || ' ' || (SELECT count(*) FROM orders o WHERE o.status <> 'new'
                   AND NOT EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id))
       || ' ' || (SELECT count(*) || ':' || coalesce(sum(balance), 0) FROM counters)
       || ' ' || (SELECT coalesce(string_agg(version::text, ',' ORDER BY k), '-') FROM counters)
       || ' ' || (SELECT count(*) FROM shipments);
SQL
done >"$READER_SQL"

# run_phase LEVEL: sets SAMPLES, DEP (samples breaking (b)), REGRESS (per-key regressions, (a)),
# ATOMIC (samples breaking (c)), STATES (distinct version vectors seen), SHIPPED (shipments at the end).
run_phase() {
  local level=$1 db=shop_$1 pid
  local config=$TEST_TMP/$level.yaml out=$TEST_TMP/$level.samples
  local src_dsn="host=127.0.0.1 port=$SRC_PORT dbname=$db user=postgres"
  local dst_dsn="host=127.0.0.1 port=$DST_PORT dbname=$db user=postgres"
  src_psql() { PGPORT=$SRC_PORT PGDATABASE=$db pg_psql "$@"; }
  dst_psql() { PGPORT=$DST_PORT PGDATABASE=$db pg_psql "$@"; }
  LOG=$TEST_TMP/$level.log
  PGPORT=$SRC_PORT pg_psql -d postgres -c "CREATE DATABASE $db"
  PGPORT=$DST_PORT pg_psql -d postgres -c "CREATE DATABASE $db"
  src_psql <<'SQL'
CREATE TABLE counters (k int PRIMARY KEY, version bigint NOT NULL, balance numeric(14,2) NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, customer int, amount numeric(10,2));
CREATE TABLE shipments (id int PRIMARY KEY, order_id int NOT NULL, carrier text, delivered bool NOT NULL);
CREATE SEQUENCE order_ids START 100;
CREATE SEQUENCE shipment_ids START 5000;

-- 1-3 keys per transaction (locked in key order): version + 1 each, an amount moved between them.
CREATE PROCEDURE bump(secs float8) LANGUAGE plpgsql AS $$
DECLARE
  n int := 0; a int; b int; c int; amt numeric; r record; ids int[]; deltas numeric[];
  stop_at timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
  WHILE clock_timestamp() < stop_at LOOP
    n := n + 1;
    a := 1 + floor(random() * 40)::int;
    b := 1 + (a + floor(random() * 38)::int) % 40;   -- never a
    c := 1 + (b + 1 + floor(random() * 3)::int) % 40;
    IF c = a THEN c := 1 + (c + 20) % 40; END IF;
    amt := round((1 + random() * 50)::numeric, 2);
    CASE n % 3
      WHEN 0 THEN ids := ARRAY[a]; deltas := ARRAY[0];
      WHEN 1 THEN ids := ARRAY[a, b]; deltas := ARRAY[-amt, amt];
      ELSE ids := ARRAY[a, b, c]; deltas := ARRAY[-amt, amt - 1, 1];
    END CASE;
    FOR r IN SELECT t.id, t.d FROM unnest(ids, deltas) AS t(id, d) ORDER BY t.id LOOP
      UPDATE counters SET version = version + 1, balance = balance + r.d WHERE k = r.id;
    END LOOP;
    COMMIT;
  END LOOP;
  RAISE NOTICE 'bump: % transactions', n;
END $$;

-- T1 new order; T2 ship an order (status + shipment row); T3 deliver (shipment + status).
CREATE PROCEDURE order_flow(secs float8) LANGUAGE plpgsql AS $$
DECLARE
  n int := 0; o int; pend int[] := '{}'; sent int[] := '{}';
  stop_at timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
  WHILE clock_timestamp() < stop_at LOOP
    n := n + 1;
    o := nextval('order_ids');
    INSERT INTO orders VALUES (o, 'new', n % 17, round((random() * 500)::numeric, 2));
    COMMIT;
    pend := pend || o;
    IF cardinality(pend) > (n % 3) THEN      -- ship at once, or an order placed a little earlier
      o := pend[1];
      pend := pend[2:];
      UPDATE orders SET status = 'shipped' WHERE id = o;
      INSERT INTO shipments VALUES (nextval('shipment_ids'), o, 'carrier ' || o % 5, false);
      COMMIT;
      sent := sent || o;
    END IF;
    IF n % 2 = 0 AND cardinality(sent) > 3 THEN
      o := sent[1];
      sent := sent[2:];
      UPDATE shipments SET delivered = true WHERE order_id = o;
      UPDATE orders SET status = 'delivered' WHERE id = o;
      COMMIT;
    END IF;
  END LOOP;
  RAISE NOTICE 'order_flow: % orders', n;
END $$;
SQL
  cat >"$config" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: $db
    source: { type: postgres, dsn: "$src_dsn", tables: [public.counters, public.orders, public.shipments] }
    sink: { type: postgres, dsn: "$dst_dsn" }
    consistency: $level
    apply_workers: 4
    apply_parallel_min_rows: 0
YAML
  odsync_start "$config" "$LOG"
  wait_slot_active "odsync_$db" 60
  # Seed: each target table created from a one-row transaction, one at a time.
  src_psql -c "INSERT INTO counters VALUES (1, 0, 1000)"
  wait_for "[[ \$(dst_psql -c 'SELECT count(*) FROM counters') == 1 ]]" 60 || fail "$level: counters did not reach the target"
  src_psql -c "INSERT INTO orders VALUES (1, 'new', 0, 1)"
  wait_for "[[ \$(dst_psql -c 'SELECT count(*) FROM orders') == 1 ]]" 60 || fail "$level: orders did not reach the target"
  src_psql -c "BEGIN; UPDATE orders SET status = 'shipped' WHERE id = 1; INSERT INTO shipments VALUES (1, 1, 'seed', false); COMMIT;"
  wait_for "[[ \$(dst_psql -c 'SELECT count(*) FROM shipments') == 1 ]]" 60 || fail "$level: shipments did not reach the target"
  src_psql -c "INSERT INTO counters SELECT g, 0, 1000 FROM generate_series(2, $KEYS) g"
  wait_for "[[ \$(dst_psql -c 'SELECT count(*) || chr(58) || sum(balance) FROM counters') == '$TOTAL' ]]" 60 ||
    fail "$level: the counters did not reach the target"
  log "$level: seeded; 2 bump + 2 order sessions for ${WORKLOAD_SECONDS}s"

  WORKLOAD_PIDS=()
  for proc in bump bump order_flow order_flow; do
    src_psql -c "CALL $proc($WORKLOAD_SECONDS)" >>"$TEST_TMP/$level.workload" 2>&1 &
    WORKLOAD_PIDS+=($!)
  done
  : >"$out"
  local running=1
  while ((running)); do
    running=0
    for pid in "${WORKLOAD_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    dst_psql -f "$READER_SQL" >>"$out"
  done
  for pid in "${WORKLOAD_PIDS[@]}"; do
    wait "$pid" || { cat "$TEST_TMP/$level.workload" >&2; fail "$level: a workload session failed"; }
  done
  WORKLOAD_PIDS=()
  grep -h 'NOTICE' "$TEST_TMP/$level.workload" | sed "s/^/[$level] /" || true

  local deadline=$(($(date +%s) + 60)) cmp
  local tables=(--table public.counters --table public.orders --table public.shipments)
  until cmp=$("$OD_COMPARE_PG" --source "$src_dsn" --target "$dst_dsn" "${tables[@]}" 2>&1); do
    if (($(date +%s) >= deadline)); then
      echo "$cmp" >&2
      fail "$level: target not equal to source after 60s (od_compare_pg report above)"
    fi
    sleep 1
  done
  echo "$cmp"
  grep -q "consistency $level, 4 sink writers" "$LOG" || fail "$level: the log does not show 4 sink writers"
  odsync_stop

  # One line of counts: samples, (b) violations, (a) per-key regressions, (c) violations, states.
  read -r SAMPLES DEP REGRESS ATOMIC STATES < <(awk -v total="$TOTAL" '
    { n++
      if ($1 != 0 || $2 != 0) { dep++; if (dep <= 3) print "dependency violation: " $0 > "/dev/stderr" }
      if ($3 != total) { atomic++; if (atomic <= 3) print "atomicity violation: " $3 > "/dev/stderr" }
      k = split($4, v, ",")
      for (i = 1; i <= k; i++) {
        if (i in last && v[i] + 0 < last[i] + 0) {
          regress++
          if (regress <= 3) print "key " i ": version " v[i] " after " last[i] " (sample " n ")" > "/dev/stderr"
        }
        last[i] = v[i]
      }
      if (!($4 in seen)) { seen[$4] = 1; states++ }
    }
    END { printf "%d %d %d %d %d\n", n, dep, regress, atomic, states }' "$out")
  SHIPPED=$(tail -n 1 "$out" | awk '{ print $5 }')
  log "$level: $SAMPLES samples ($STATES distinct version vectors, $SHIPPED shipments at the end):" \
    "$DEP dependency violations, $REGRESS per-key regressions, $ATOMIC atomicity violations"
}

log "source on port $SRC_PORT, target on port $DST_PORT"
# Phase 1 (teeth): with eventual, dependencies can become visible out of order.
run_phase eventual
((SAMPLES >= 500)) || fail "eventual: the reader took only $SAMPLES samples"
((STATES >= 50)) || fail "eventual: the reader saw only $STATES states; it did not sample while changes were applied"
((REGRESS == 0)) || fail "eventual: a key went back in time $REGRESS times (eventual keeps per-key order)"
((DEP > 0)) || fail "eventual: the reader never saw a dependency out of order in $SAMPLES samples; the check has no teeth"
((ATOMIC > 0)) || fail "eventual: the reader never saw part of a transaction in $SAMPLES samples; the check has no teeth"

# Phase 2: causal.
run_phase causal
((SAMPLES >= 500)) || fail "causal: the reader took only $SAMPLES samples"
((STATES >= 50)) || fail "causal: the reader saw only $STATES states; it did not sample while changes were applied"
((SHIPPED > 100)) || fail "causal: only $SHIPPED shipments were replicated"
((REGRESS == 0)) || fail "causal: a key went back in time $REGRESS times"
((DEP == 0)) || fail "causal: a dependent write was visible without its dependency in $DEP of $SAMPLES samples"
((ATOMIC == 0)) || fail "causal: part of a transaction was visible in $ATOMIC of $SAMPLES samples"
log "all assertions passed"
