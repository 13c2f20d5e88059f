#!/usr/bin/env bash
# bench/mesh_unique_left_cost.sh — what the _odsync_unique_left trigger costs an application: the
# backend's CPU (utime+stime from /proc, 10 ms ticks) for 5000 updates moving a row to another unique
# value and 5000 deletes, each set in one transaction, trigger enabled vs disabled (alternated, 2
# pairs) on node a of a 2-node mesh whose sink session created the triggers (odsync then stopped).
# Needs root or the servers' user (reads /proc/<backend>/stat). ODSYNC_BIN/ODSYNC_BUILD_DIR as for
# the tests (a Release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tests/env/common.sh
source tests/env/pg.sh
source tests/env/mesh.sh
source bench/lib_backend.sh
test_init mesh_unique_left_cost
mesh_start_nodes a b
for n in a b; do
  node_psql $n -c "CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE, v text); CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);" >/dev/null
done
CONFIG=$TEST_TMP/odsync.yaml
mesh_config "$CONFIG" last_writer_wins "public.u, public.mesh_marker"
odsync_start "$CONFIG" "$TEST_TMP/odsync.log"
mesh_wait_active 90
odsync_stop
measure() { bench_backend_cpu "$1" "${NODE_PORT[a]}" shop 5000 "$2"; } # LABEL SQL
for pair in 1 2; do
  for trig in ENABLE DISABLE; do
    node_psql a -c "TRUNCATE u; TRUNCATE _odsync_unique_left; INSERT INTO u SELECT i, 'e' || i, 'x' FROM generate_series(1, 5000) i; ALTER TABLE u $trig TRIGGER _odsync_unique_left" >/dev/null
    echo "pair $pair trigger $trig, $(uptime | sed 's/.*load average/load average/')"
    measure "  move  " "DO \$\$ BEGIN FOR i IN 1..5000 LOOP UPDATE u SET email = 'f' || i WHERE id = i; END LOOP; END \$\$;"
    measure "  delete" "DO \$\$ BEGIN FOR i IN 1..5000 LOOP DELETE FROM u WHERE id = i; END LOOP; END \$\$;"
  done
done
