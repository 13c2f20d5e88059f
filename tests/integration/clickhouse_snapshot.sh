#!/usr/bin/env bash
# clickhouse_snapshot.sh — the initial snapshot into ClickHouse through bulk loading (one
# TabSeparated INSERT per table per chunk), next to the apply() path, then a SIGKILL in the middle
# of a bulk snapshot and a restart, then streamed changes over the loaded rows.
#
# Source table snap: SNAP_CH_ROWS (50,000) rows, bigint key, text with TOASTed values (every 97th
# row ~64 kB), NULLs in every nullable column, numeric(14,3), timestamptz, date, float8, bool.
# Three runs, one after the other, each a pipeline of its own into a database of its own:
#   apply  bulk_load: false — chunks through apply() as OD_OP_READ upserts (the "before");
#   bulk   the default (bulk loading), uninterrupted (the "after");
#   k9     bulk loading with small chunks, killed with SIGKILL while some but not all chunks are
#          marked, restarted: the resumed run copies only the missing chunks; then a workload of
#          updates (TOASTed values too), deletes and inserts streams over the loaded rows.
# Asserts: each database's view equals the source row for row (FINAL, values as text); FINAL holds
# each key once and the raw table of the uninterrupted runs exactly one row per key; the bulk runs
# logged bulk loading and the apply run did not; the k9 kill landed mid-snapshot, nothing was
# acknowledged before the snapshot ended; after the stream the k9 view equals the source again.
# Prints both rates (rows/s, from odsync's own "copied ... rows in S s" line) for docs/BENCHMARKS.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init clickhouse_snapshot
test_extra_cleanup() { ch_cleanup_all; }
ROWS=${SNAP_CH_ROWS:-50000}
pg_start shop
ch_start || fail "clickhouse-server did not start"

log "source: $ROWS rows"
pg_psql <<SQL
CREATE TABLE snap (id bigint PRIMARY KEY, t text, big text, n numeric(14,3), at timestamptz, d date, f float8,
  b bool, i int);
INSERT INTO snap SELECT g,
  CASE WHEN g % 11 = 0 THEN NULL ELSE E'row\t' || g || E' \\\\ ünï\n' || md5(g::text) END,
  CASE WHEN g % 97 = 0 THEN (SELECT string_agg(md5(g::text || x), '') FROM generate_series(1, 2000) x)
       WHEN g % 5 = 0 THEN NULL ELSE 'short ' || g END,
  CASE WHEN g % 13 = 0 THEN NULL ELSE (g * 1.001) - 25000 END,
  CASE WHEN g % 17 = 0 THEN NULL ELSE '2020-01-01 00:00:00+00'::timestamptz + g * interval '37 s' END,
  CASE WHEN g % 19 = 0 THEN NULL ELSE '2001-02-03'::date + g % 5000 END,
  CASE WHEN g % 23 = 0 THEN NULL ELSE g / 8.0 END,
  CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,
  CASE WHEN g % 29 = 0 THEN NULL ELSE g % 100000 END
FROM generate_series(1, $ROWS) g;
ANALYZE snap;
SQL
toast=$(pg_psql -c "SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'snap'::regclass")
toasted=$(pg_psql -c "SELECT count(DISTINCT chunk_id) FROM $toast")
((toasted > 0)) || fail "no value of snap stored out of line (TOAST)"
log "$toasted values of snap stored out of line (TOAST)"

PGQ="SELECT id, t, big, n, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), d, f, b::int, i FROM snap ORDER BY id"
compare_db() { ch_compare_table "snap_$1" "$PGQ" "SELECT id, t, big, n, at, d, f, b, i FROM $1.snap_current ORDER BY id"; }

# run NAME EXTRA_SINK_KEYS CHUNK_ROWS: write the config of pipeline NAME (database NAME).
config() {
  cat >"$TEST_TMP/$1.yaml" <<YAML
state_dir: $TEST_TMP/state_$1
pipelines:
  - name: $1
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.snap], snapshot_workers: 1, snapshot_chunk_rows: $3 }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: $1, user: odsync,
            password: "\${env:CH_PASSWORD}"$2 }
YAML
}
snapshot_done() { grep -q "pipeline $1: initial snapshot done" "$TEST_TMP/$1.log"; }
rate() { # rows/s of the table's copy in NAME's log
  sed -n 's/.*snapshot: public.snap: copied .* \([0-9,]*\) rows in \([0-9.]*\) s.*/\1 \2/p' "$TEST_TMP/$1.log" | tail -n1 |
    awk '{ gsub(",", "", $1); s = $2 < 0.05 ? 0.05 : $2; printf "%d rows in %.2f s: %.0f rows/s", $1, $2, $1 / s }'
}
one_per_key() { # FINAL holds each key once; $2 = raw: the table itself holds one row per key
  local d
  d=$(ch_query "SELECT count() - uniqExact(id) FROM $1.snap FINAL")
  [[ $d == 0 ]] || fail "$1: $d duplicate keys under FINAL"
  if [[ ${2:-} == raw ]]; then
    d=$(ch_query "SELECT count() FROM $1.snap")
    [[ $d == "$ROWS" ]] || fail "$1: the table holds $d rows for $ROWS keys"
  fi
}

for p in apply bulk; do
  if [[ $p == apply ]]; then config apply ", bulk_load: false" 10000; else config bulk "" 10000; fi
  odsync_start "$TEST_TMP/$p.yaml" "$TEST_TMP/$p.log"
  wait_for "snapshot_done $p" 600 || fail "$p: the snapshot did not finish within 600 s"
  odsync_stop
  wait_for "compare_db $p >/dev/null" 60 || { compare_db $p || true; fail "$p: ClickHouse differs from the source"; }
  one_per_key $p raw
done
grep -q "snapshot chunks load in bulk" "$TEST_TMP/apply.log" && fail "apply: bulk_load: false still loaded in bulk"
grep -q "clickhouse sink .*table snap: snapshot chunks load in bulk" "$TEST_TMP/bulk.log" || fail "bulk: no bulk loading"
RATE_APPLY=$(rate apply)
RATE_BULK=$(rate bulk)
log "snapshot of $ROWS rows, apply path: $RATE_APPLY"
log "snapshot of $ROWS rows, bulk path:  $RATE_BULK"

log "k9: bulk snapshot killed mid-way"
config k9 "" 500
mark_count() { ch_query "SELECT count() FROM k9._odsync_checkpoint FINAL WHERE match(key, '^k9/snapshot/public.snap/[0-9]+\$')" 2>/dev/null || echo 0; }
odsync_start "$TEST_TMP/k9.yaml" "$TEST_TMP/k9.log"
N=$((ROWS / 500))
wait_for "(( \$(mark_count) >= 3 ))" 300 || fail "k9: no chunk marked within 300 s"
odsync_kill9
done_chunks=$(mark_count)
log "k9: killed with $done_chunks chunk marks (about $N chunks)"
((done_chunks >= 3 && done_chunks < N)) || fail "k9: the kill did not land mid-snapshot ($done_chunks of ~$N chunks)"
snapshot_done k9 && fail "k9: the snapshot had finished before the kill"
[[ -z $(ch_query "SELECT text FROM k9._odsync_checkpoint FINAL WHERE key = 'k9'") ]] ||
  fail "k9: a checkpoint was written before the snapshot finished"
loaded=$(ch_query "SELECT count() FROM k9.snap")
log "k9: $loaded rows in the table at the kill"
((loaded > 0)) || fail "k9: no row loaded before the kill"
RUN2_FROM=$(($(wc -l <"$TEST_TMP/k9.log") + 1))
odsync_start "$TEST_TMP/k9.yaml" "$TEST_TMP/k9.log"
wait_for "snapshot_done k9" 600 || fail "k9: the resumed snapshot did not finish within 600 s"
tail -n +"$RUN2_FROM" "$TEST_TMP/k9.log" | grep_q "chunks already done; copying the other" ||
  fail "k9: the restart did not resume from the chunks already done"
wait_for "compare_db k9 >/dev/null" 120 || { compare_db k9 || true; fail "k9: ClickHouse differs from the source after the restart"; }
one_per_key k9

log "k9: streaming updates, deletes and inserts over the loaded rows"
pg_psql >/dev/null <<SQL
UPDATE snap SET t = 'updated ' || id, n = NULL WHERE id % 7 = 0;
UPDATE snap SET big = repeat(md5(id::text), 3000) WHERE id % 1000 = 1;
UPDATE snap SET i = -i WHERE id % 97 = 0;
DELETE FROM snap WHERE id % 10 = 3;
INSERT INTO snap (id, t, big, n, at, d, f, b, i) SELECT $ROWS + g, 'new', NULL, 1.5, now(), current_date, 0.5, true, g
FROM generate_series(1, 1000) g;
SQL
wait_for "compare_db k9 >/dev/null" 180 || { compare_db k9 || true; fail "k9: ClickHouse differs after the stream"; }
one_per_key k9
odsync_stop
compare_db k9 >/dev/null || fail "k9: ClickHouse differs after the stop"
log "all assertions passed; apply: $RATE_APPLY; bulk: $RATE_BULK"
