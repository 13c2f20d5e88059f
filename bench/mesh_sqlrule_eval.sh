#!/usr/bin/env bash
# bench/mesh_sqlrule_eval.sh — what the statement evaluating a mesh table's SQL rules costs the
# server (not CI): the statement exactly as od_mesh_sqlrule_sql writes it (local rows read by key)
# for the rule "remote.balance >= local.balance AND remote.updated_by <> 'batch'" on a 100,000-row
# table, prepared once and executed three times each for 1, 10 and 500 pairs; prints PostgreSQL's
# execution time (EXPLAIN ANALYZE, TIMING OFF). Measured under the machine's load. Environment: PG_BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-sqlrule.XXXXXX")
cleanup() { local rc=$?; trap - EXIT; pgb_stop_all; rm -rf "$TMP"; exit "$rc"; }
trap cleanup EXIT
pgb_start a "$TMP/a"
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$(pgb_dsn a postgres)" "$@"; }
q -c "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL, updated_by text NOT NULL, note text)" \
  -c "INSERT INTO accounts SELECT g, g % 1000, 'app', repeat('x', 40) FROM generate_series(1, 100000) g" \
  -c "ANALYZE accounts"
T='"public"."accounts"'
EV="PREPARE ev(int4[], text[], text[]) AS SELECT p.i, o.sw, (remote.balance >= local.balance AND remote.updated_by <> 'batch'
) FROM unnest(\$1, \$2, \$3) AS p (i, rj, lj) CROSS JOIN LATERAL (SELECT json_populate_record(NULL::$T, p.rj::json) AS row) r \
CROSS JOIN LATERAL (SELECT json_populate_record(NULL::$T, p.lj::json) AS row WHERE p.lj IS NOT NULL UNION ALL SELECT x FROM $T x \
WHERE p.lj IS NULL AND x.\"id\" = (r.row).\"id\") l CROSS JOIN (VALUES (false), (true)) AS o (sw) CROSS JOIN LATERAL (SELECT \
((CASE WHEN o.sw THEN l.row ELSE r.row END)).*) AS remote CROSS JOIN LATERAL (SELECT ((CASE WHEN o.sw THEN r.row ELSE l.row END)).*) AS local;"
echo "load: $(uptime | sed 's/.*load average: //')"
for n in 1 10 500; do
  {
    echo "$EV"
    echo "SELECT (SELECT array_agg(g)::text FROM generate_series(0, $((n - 1))) g) AS a1, (SELECT array_agg(json_build_object('id', (g * 7 + 1)::text, 'balance', '5', 'updated_by', 'app', 'note', 'y')::text)::text FROM generate_series(0, $((n - 1))) g) AS a2, array_fill(NULL::text, ARRAY[$n])::text AS a3 \\gset"
    for _ in 1 2 3; do echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) EXECUTE ev(:'a1', :'a2', :'a3');"; done
  } >"$TMP/ev.sql"
  echo "$n pair(s): $(q -f "$TMP/ev.sql" | sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p' | paste -sd/) ms"
done
