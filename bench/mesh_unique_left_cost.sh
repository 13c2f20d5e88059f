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
tick=$(getconf CLK_TCK)
measure() { # LABEL SQL: backend CPU ms per 1000 rows
  local pid t0 t1
  coproc P { PGPORT=${NODE_PORT[a]} PGDATABASE=shop pg_psql -q 2>&1; }
  echo "SELECT pg_backend_pid();" >&"${P[1]}"
  read -r pid <&"${P[0]}"
  t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  echo "$2" >&"${P[1]}"
  echo "SELECT 'done';" >&"${P[1]}"
  while read -r line <&"${P[0]}"; do [[ $line == done ]] && break; done
  t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  echo "\\q" >&"${P[1]}"
  wait $P_PID 2>/dev/null || true
  echo "$1: $(( (t1 - t0) * 1000 / tick / 5 )) ms CPU per 1000 rows"
}
for pair in 1 2; do
  for trig in ENABLE DISABLE; do
    node_psql a -c "TRUNCATE u; TRUNCATE _odsync_unique_left; INSERT INTO u SELECT i, 'e' || i, 'x' FROM generate_series(1, 5000) i; ALTER TABLE u $trig TRIGGER _odsync_unique_left" >/dev/null
    echo "pair $pair trigger $trig, $(uptime | sed 's/.*load average/load average/')"
    measure "  move  " "DO \$\$ BEGIN FOR i IN 1..5000 LOOP UPDATE u SET email = 'f' || i WHERE id = i; END LOOP; END \$\$;"
    measure "  delete" "DO \$\$ BEGIN FOR i IN 1..5000 LOOP DELETE FROM u WHERE id = i; END LOOP; END \$\$;"
  done
done
