#!/usr/bin/env bash
# mesh_node_restart.sh — a 3-node mesh whose PostgreSQL servers crash and restart under load.
#
# Applications write at all three nodes at once (one transaction each: a counter decrement of one
# of 5 stock rows, a row in `ops` naming that transaction, and an upsert or delete of one of 20
# shared `items` keys) while node b's server is crashed twice (pg_ctl -m immediate: no shutdown
# checkpoint, open transactions lost, odsync's sessions and walsenders cut) and node c's is
# restarted once (-m fast); odsync runs throughout and is never restarted. A write whose client saw
# an error may or may not have committed: `ops` says which did.
#
# Asserts, after the load stops and every stream has caught up:
#  - every stock row's qty is exactly 1000 minus the number of `ops` rows that decremented it, on
#    every node: no decrement lost or applied twice across the crashes (counters merge as deltas,
#    each applied once under the sink's checkpoint and replication origin);
#  - the three nodes hold the same items, stock and ops row for row (od_compare_pg);
#  - the crashes were real: b's server log shows two crash recoveries, and writes at b failed
#    while it was down.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_node_restart
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
mesh_psql_all <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL);
ALTER TABLE stock REPLICA IDENTITY FULL;
CREATE TABLE ops (id text PRIMARY KEY, sid int NOT NULL);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.stock, public.ops, public.mesh_marker" \
  "  counters: [public.stock.qty]"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
node_psql a -c "INSERT INTO stock SELECT g, 1000 FROM generate_series(1, 5) g"
mesh_wait_marker 120 a b
mesh_wait_marker 120 a c

STOP=$TEST_TMP/stop-load
workload() { # NODE: one transaction at a time until the stop file exists (at most 2000)
  local n=$1 i=0 sid k ok=0 err=0
  while [[ ! -e $STOP ]] && ((i < 2000)); do
    i=$((i + 1))
    sid=$((RANDOM % 5 + 1)) k=$((RANDOM % 20 + 1))
    if ((RANDOM % 4 == 0)); then item="DELETE FROM items WHERE id = $k"
    else item="INSERT INTO items VALUES ($k, '$n$i', 0) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = items.n + 1"; fi
    if node_psql "$n" -c "BEGIN; UPDATE stock SET qty = qty - 1 WHERE id = $sid; INSERT INTO ops VALUES ('$n-$i', $sid); $item; COMMIT" \
      >/dev/null 2>&1; then ok=$((ok + 1)); else err=$((err + 1)); sleep 0.1; fi
  done
  echo "$ok $err" >"$TEST_TMP/load-$n"
}
LOAD_PIDS=()
for n in a b c; do
  workload $n &
  LOAD_PIDS+=($!)
done
sleep 4
log "crash b (immediate)"
mesh_restart_node b immediate
sleep 4
log "restart c (fast)"
mesh_restart_node c fast
sleep 4
log "crash b again (immediate)"
mesh_restart_node b immediate
sleep 4
touch "$STOP"
wait "${LOAD_PIDS[@]}"
for n in a b c; do read -r ok err <"$TEST_TMP/load-$n"; log "load at $n: $ok committed (as the client saw it), $err failed"; done
read -r _ berr <"$TEST_TMP/load-b"
((berr > 0)) || fail "no write at b failed: the crashes did not interrupt the load"
[[ $(grep -c "database system was not properly shut down; automatic recovery in progress" "${NODE_DIR[b]}/server.log") -ge 2 ]] ||
  fail "b's server log does not show two crash recoveries"

odsync_running || fail "odsync exited during the restarts"
for round in 1 2; do
  for f in a b c; do
    for t in a b c; do [[ $f != "$t" ]] && mesh_wait_marker 240 $f $t; done
  done
done
mesh_wait_equal 120 public.items public.stock public.ops
total=$(node_psql a -c "SELECT count(*) FROM ops")
log "ops committed at all nodes: $total"
((total > 30)) || fail "only $total transactions committed"
for n in a b c; do
  bad=$(node_psql $n -c "SELECT coalesce(string_agg(s.id || ': qty ' || s.qty || ', ops ' || coalesce(o.c, 0), '; '), '') FROM stock s LEFT JOIN (SELECT sid, count(*) AS c FROM ops GROUP BY sid) o ON o.sid = s.id WHERE s.qty <> 1000 - coalesce(o.c, 0)")
  [[ -z $bad ]] || fail "node $n: counters differ from the committed decrements: $bad"
done
odsync_stop
log "ok"
