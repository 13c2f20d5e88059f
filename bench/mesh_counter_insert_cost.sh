#!/usr/bin/env bash
# bench/mesh_counter_insert_cost.sh — what counters cost an application's inserts (docs/MULTI_MASTER.md,
# "Counter columns"): the backend's CPU (utime+stime from /proc, 10 ms ticks) for 5000 single-row
# inserts into a counter table in one transaction, its _odsync_keylock trigger running the counter
# tables' function (_odsync_keylock_counter) vs the plain one (_odsync_keylock) (alternated, 2
# pairs), on node a of a 2-node mesh whose sink session created the triggers (odsync then stopped).
# Three cases: keys without a tombstone (the common one: one index probe that finds nothing), keys
# with a tombstone without a balance (a probe before the key's stripe lock, one after), and keys
# whose tombstone holds a balance (the probe, the tombstone locked and read again, a logical
# message, the balance cleared). Needs root or the servers' user (reads /proc/<backend>/stat).
# ODSYNC_BIN/ODSYNC_BUILD_DIR as for the tests (a Release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tests/env/common.sh
source tests/env/pg.sh
source tests/env/mesh.sh
source bench/lib_backend.sh
test_init mesh_counter_insert_cost
mesh_start_nodes a b
for n in a b; do
  node_psql $n -c "CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL); ALTER TABLE stock REPLICA IDENTITY FULL; CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);" >/dev/null
done
CONFIG=$TEST_TMP/odsync.yaml
mesh_config "$CONFIG" last_writer_wins "public.stock, public.mesh_marker" "  counters: [public.stock.qty]"
odsync_start "$CONFIG" "$TEST_TMP/odsync.log"
mesh_wait_active 90
odsync_stop
measure() { bench_backend_cpu "$1" "${NODE_PORT[a]}" shop 5000 "$2"; } # LABEL SQL
# the table emptied without its triggers (no tombstones written), then the case's tombstones
reset() {
  node_psql a -c "SET session_replication_role = replica; DELETE FROM stock; DELETE FROM _odsync_tombstones; $1 CREATE OR REPLACE TRIGGER _odsync_keylock BEFORE INSERT OR UPDATE OF id ON stock FOR EACH ROW WHEN (current_setting('odsync.mesh_sink', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION $2('id')" >/dev/null
}
ins="DO \$\$ BEGIN FOR i IN 1..5000 LOOP INSERT INTO stock VALUES (i, 10); END LOOP; END \$\$;"
for pair in 1 2; do
  for fn in _odsync_keylock_counter _odsync_keylock; do
    echo "pair $pair function $fn, $(uptime | sed 's/.*load average/load average/')"
    reset "" $fn
    measure "  no tombstone       " "$ins"
    reset "INSERT INTO _odsync_tombstones (tbl, key) SELECT 'public.stock', i::text FROM generate_series(1, 5000) i;" $fn
    measure "  tombstone, none    " "$ins"
    reset "INSERT INTO _odsync_tombstones (tbl, key, ctr) SELECT 'public.stock', i::text, '{\"qty\": 5}' FROM generate_series(1, 5000) i;" $fn
    measure "  tombstone, balance " "$ins"
  done
done
