#!/usr/bin/env bash
# mesh_counter.sh — counter columns in a 3-node mesh (mesh.counters: merged as a sum of deltas).
#
# stock(id, qty) on a, b, c (REPLICA IDENTITY FULL: the delta needs the old row), 5 rows of 10000.
# pgbench at all three nodes at once, 2 clients x COUNTER_TXNS transactions of
# `UPDATE stock SET qty = qty - 1 WHERE id = random(1, 5)` (one in four as two updates of the row in one
# transaction, -2 then +1: every update's delta counts), replicated live (so concurrent updates of
# one row are frequent). Asserts after quiescing: every node holds identical rows, the total is
# exactly 50000 - 3 x 2 x COUNTER_TXNS (no decrement lost or applied twice), and concurrent updates
# were detected (update_update conflicts logged) — i.e. the merge, not luck, kept the sum.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

TXNS=${COUNTER_TXNS:-300}
test_init mesh_counter
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL);
ALTER TABLE stock REPLICA IDENTITY FULL;
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
INSERT INTO stock SELECT g, 10000 FROM generate_series(1, 5) g;
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.stock, public.mesh_marker" "  counters: [public.stock.qty]"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed on the counter mesh: $out"
node_psql c -c "ALTER TABLE stock REPLICA IDENTITY DEFAULT"
rc=0; out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || rc=$?
[[ $rc == 1 ]] && grep -q 'mesh node c: counter public.stock.qty: table public.stock needs REPLICA IDENTITY FULL' <<<"$out" ||
  fail "odsync check did not flag the counter table without REPLICA IDENTITY FULL (exit $rc): $out"
node_psql c -c "ALTER TABLE stock REPLICA IDENTITY FULL"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
printf '%s\n' '\set k random(1, 5)' 'UPDATE stock SET qty = qty - 1 WHERE id = :k;' >"$TEST_TMP/dec.sql"
# one transaction updating the row twice (-2, then +1): both deltas count
printf '%s\n' '\set k random(1, 5)' 'BEGIN;' 'UPDATE stock SET qty = qty - 2 WHERE id = :k;' \
  'UPDATE stock SET qty = qty + 1 WHERE id = :k;' 'COMMIT;' >"$TEST_TMP/two.sql"
log "3 nodes x 2 clients x $TXNS decrements"
pids=()
for n in a b c; do
  pgbench -n -h 127.0.0.1 -p "${NODE_PORT[$n]}" -U postgres -c 2 -j 1 -t "$TXNS" -f "$TEST_TMP/dec.sql@3" -f "$TEST_TMP/two.sql@1" shop \
    >"$TEST_TMP/pgbench_$n.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "pgbench failed: $(tail -n 5 "$TEST_TMP"/pgbench_*.log)"; done
for n in a b c; do grep -q "number of transactions actually processed: $((2 * TXNS))/" "$TEST_TMP/pgbench_$n.log" ||
  fail "pgbench at $n did not complete: $(cat "$TEST_TMP/pgbench_$n.log")"; done
for round in 1 2; do
  mesh_wait_marker 300 a b; mesh_wait_marker 300 b c; mesh_wait_marker 300 c a
  mesh_wait_marker 300 a c; mesh_wait_marker 300 c b; mesh_wait_marker 300 b a
done
mesh_compare a b public.stock || fail "a and b differ"
mesh_compare a c public.stock || fail "a and c differ"
want=$((50000 - 3 * 2 * TXNS))
for n in a b c; do
  got=$(node_psql $n -c "SELECT sum(qty) FROM stock")
  conf=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE kind = 'update_update'")
  log "node $n: total $got (expected $want), $conf concurrent updates merged"
  [[ $got == "$want" ]] || fail "node $n: total stock $got, expected $want"
  ((conf > 0)) || fail "node $n: no concurrent update detected; the test did not exercise the merge"
done
odsync_stop
log "ok"
