#!/usr/bin/env bash
# bench/mesh_sqlrule_eval.sh — what the statement evaluating a mesh table's SQL rules costs the
# server (not CI): the statement exactly as od_mesh_sqlrule_sql writes it (local rows read by key)
# for the rule "remote.balance >= local.balance AND remote.updated_by <> 'batch'" on a 100,000-row
# table.
#  1. prepared once and executed three times each for 1, 10 and 500 pairs; prints PostgreSQL's
#     execution time (EXPLAIN ANALYZE, TIMING OFF);
#  2. the savepoint guard the sink puts around it (an error some pair raises is then no decision,
#     docs/MULTI_MASTER.md "Business rules"): pgbench, one client, the statement unnamed (as the sink
#     sends it) in a transaction, plain (BEGIN; statement; COMMIT) against guarded (BEGIN; one
#     pipeline of SAVEPOINT, statement, ROLLBACK TO SAVEPOINT, RELEASE; COMMIT: the same three round
#     trips), alternated twice, for 10 and 500 pairs: average latency per transaction;
#  3. the path after an error: every pair alone (one-pair statements, prepared, each followed by
#     ROLLBACK TO SAVEPOINT, in one pipeline) for 10 and 500 pairs.
# Measured under the machine's load (printed). Environment: PG_BIN; BENCH_TX (pgbench transactions
# per run, default 300).
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
# the statement with its four array parameters written P1..P4
STMT="SELECT p.i, o.sw, (remote.balance >= local.balance AND remote.updated_by <> 'batch'
) FROM unnest(P1::int4[], P2::text[], P3::text[], P4::text[]) AS p (i, rj, lj, dk) CROSS JOIN LATERAL (SELECT \
json_populate_record(NULL::$T, p.rj::json) AS row) r CROSS JOIN LATERAL (SELECT NULL::$T AS row WHERE p.dk = 'l' \
UNION ALL SELECT json_populate_record(NULL::$T, p.lj::json) WHERE p.dk IS DISTINCT FROM 'l' AND p.lj IS NOT NULL \
UNION ALL SELECT x FROM $T x WHERE p.dk IS DISTINCT FROM 'l' AND p.lj IS NULL AND x.\"id\" = (r.row).\"id\") l CROSS \
JOIN LATERAL (SELECT CASE WHEN p.dk = 'r' THEN NULL ELSE r.row END AS row) rv CROSS JOIN (VALUES (false), (true)) AS \
o (sw) CROSS JOIN LATERAL (SELECT ((CASE WHEN o.sw THEN l.row ELSE rv.row END)).*) AS remote CROSS JOIN LATERAL \
(SELECT ((CASE WHEN o.sw THEN rv.row ELSE l.row END)).*) AS local"
with_params() { local s=${STMT//P1/$1}; s=${s//P2/$2}; s=${s//P3/$3}; echo "${s//P4/$4}"; }
arrays() { # N: the psql \gset of a1..a4 for N pairs
  echo "SELECT (SELECT array_agg(g)::text FROM generate_series(0, $(($1 - 1))) g) AS a1, (SELECT array_agg(json_build_object('id', (g * 7 + 1)::text, 'balance', '5', 'updated_by', 'app', 'note', 'y')::text)::text FROM generate_series(0, $(($1 - 1))) g) AS a2, array_fill(NULL::text, ARRAY[$1])::text AS a3, array_fill(NULL::text, ARRAY[$1])::text AS a4 \\gset"
}
echo "load: $(uptime | sed 's/.*load average: //')"
echo "1. the statement, prepared, three executions (ms):"
for n in 1 10 500; do
  {
    echo "PREPARE ev(int4[], text[], text[], text[]) AS $(with_params '$1' '$2' '$3' '$4');"
    arrays "$n"
    for _ in 1 2 3; do echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) EXECUTE ev(:'a1', :'a2', :'a3', :'a4');"; done
  } >"$TMP/ev.sql"
  echo "  $n pair(s): $(q -f "$TMP/ev.sql" | sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p' | paste -sd/) ms"
done
TX=${BENCH_TX:-300}
PGBENCH=${PG_BIN:+$PG_BIN/}pgbench
echo "2. plain against guarded, $TX transactions each, average latency (ms), alternated:"
for n in 10 500; do
  vars=$(q -F '|' -c "$(arrays "$n" | sed 's/ \\gset$//')")
  IFS='|' read -r a1 a2 a3 a4 <<<"$vars"
  args=(-D "a1=$a1" -D "a2=$a2" -D "a3=$a3" -D "a4=$a4")
  STMTP=$(with_params ':a1' ':a2' ':a3' ':a4')
  printf 'BEGIN;\n%s;\nCOMMIT;\n' "${STMTP//$'\n'/ }" >"$TMP/plain.sql"
  printf 'BEGIN;\n\\startpipeline\nSAVEPOINT odsync_rule;\n%s;\nROLLBACK TO SAVEPOINT odsync_rule;\nRELEASE SAVEPOINT odsync_rule;\n\\endpipeline\nCOMMIT;\n' \
    "${STMTP//$'\n'/ }" >"$TMP/guarded.sql"
  line="  $n pairs:"
  for round in 1 2; do
    p=$("$PGBENCH" -n -M extended -c 1 -t "$TX" "${args[@]}" -f "$TMP/plain.sql" "$(pgb_dsn a postgres)" 2>&1 | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    g=$("$PGBENCH" -n -M extended -c 1 -t "$TX" "${args[@]}" -f "$TMP/guarded.sql" "$(pgb_dsn a postgres)" 2>&1 | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    line+=" round $round plain $p guarded $g;"
  done
  echo "$line"
done
echo "3. after an error: every pair alone (one pipeline), $TX transactions, average latency (ms):"
for n in 10 500; do
  {
    echo "BEGIN;"
    echo '\startpipeline'
    echo "SAVEPOINT odsync_rule;"
    for g in $(seq 0 $((n - 1))); do
      rj='{"{\"id\":\"'$((g * 7 + 1))'\",\"balance\":\"5\",\"updated_by\":\"app\"}"}'
      echo "$(with_params "'{0}'" "'$rj'" "'{NULL}'" "'{NULL}'" | tr '\n' ' ');"
      echo "ROLLBACK TO SAVEPOINT odsync_rule;"
    done
    echo "RELEASE SAVEPOINT odsync_rule;"
    echo '\endpipeline'
    echo "COMMIT;"
  } >"$TMP/alone.sql"
  echo "  $n pairs alone: $("$PGBENCH" -n -M prepared -c 1 -t "$((TX / 10 > 0 ? TX / 10 : 1))" -f "$TMP/alone.sql" "$(pgb_dsn a postgres)" 2>&1 | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p') ms"
done
