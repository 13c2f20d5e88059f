#!/usr/bin/env bash
# bench/mesh_versions_upsert.sh — what the mesh sink's per-row version bookkeeping costs the server,
# in isolation (not CI): 50,000 rows written in statements of 30 (the batch size of the bidirectional
# benchmark) into a table shaped like _odsync_versions (tbl, key text primary key), as
#   upsert   INSERT … ON CONFLICT (tbl, key) DO UPDATE (what the sink runs today),
#   upsert C the same with the key columns COLLATE "C",
#   plain    a plain INSERT (what a known-new key would need),
# and, for scale, the same number of rows inserted into the benchmark's items table (bigint key).
# Wall-clock of one server-side DO loop per variant, twice each: measured under the machine's load.
# Environment: PG_BIN. Database locale C.UTF-8 (as bench/mesh.sh's servers).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-ver.XXXXXX")
cleanup() { local rc=$?; trap - EXIT; pgb_stop_all; rm -rf "$TMP"; exit "$rc"; }
trap cleanup EXIT
pgb_start a "$TMP/a"
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$(pgb_dsn a postgres)" "$@"; }
ms() { q -c "\\timing on" -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
loop() { echo "DO \$\$ BEGIN FOR i IN 0 .. 1665 LOOP $1; END LOOP; END \$\$"; }
echo "database collation: $(q -c "SELECT datcollate FROM pg_database WHERE datname = current_database()"); 49,980 rows in statements of 30, ms"
q -c "CREATE TABLE items (id bigint PRIMARY KEY, v text, n int)"
for r in 1 2; do
  q -c "TRUNCATE items"
  echo "  items insert (bigint key)      run $r: $(ms "$(loop "INSERT INTO items SELECT i * 30 + g, md5(g::text), 1 FROM generate_series(1, 30) g")")"
done
for variant in upsert "upsert C" plain; do
  c=""; [[ $variant == "upsert C" ]] && c='COLLATE "C"'
  oc="ON CONFLICT (tbl, key) DO UPDATE SET node = excluded.node, ts = excluded.ts, hlc = excluded.hlc, also = excluded.also"
  [[ $variant == plain ]] && oc=""
  q -c "DROP TABLE IF EXISTS v" -c "CREATE TABLE v (tbl text $c NOT NULL, key text $c NOT NULL, node text NOT NULL, ts int8 NOT NULL, hlc int8 NOT NULL, also text, PRIMARY KEY (tbl, key))" 2>/dev/null
  for r in 1 2; do
    q -c "TRUNCATE v"
    printf '  versions %-21s run %d: %s\n' "$variant" "$r" \
      "$(ms "$(loop "INSERT INTO v AS x (tbl, key, node, ts, hlc, also) SELECT 'public.items', (i * 30 + g)::text, 'a', 1, 1, NULL FROM generate_series(1, 30) g $oc")")"
  done
done
