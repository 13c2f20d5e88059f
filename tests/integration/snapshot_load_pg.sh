#!/usr/bin/env bash
# snapshot_load_pg.sh — the initial snapshot into a PostgreSQL sink through bulk loading (COPY,
# binary where the types allow, primary keys built once at the end), interrupted by SIGKILL in
# the middle of a table of several million rows while a workload writes to every table, then
# resumed: the result is exact, and the resumed run copies only the chunks not yet done.
#
# Tables (source "shop" -> target "warehouse", two servers):
#   big  SNAP_BIG_ROWS (3,000,000) rows, bigint key: binary COPY, key ranges, deferred key;
#   bt   built-in types with edge values (NaN, ±Infinity, -0, huge numeric, BC and infinite
#        timestamps, escapes, arrays with NULLs, ...), int key: binary COPY, compared byte-exact;
#   ut   an enum column (read as text inside the binary COPY, stored as text) and a composite
#        (int, text) key whose index INCLUDEs v (not part of the key): binary COPY, page ranges,
#        deferred
#        composite key;
#   rt   a regclass column (an OID in binary: names differ between databases): text COPY;
#   kl   keyless, REPLICA IDENTITY FULL: COPY, no key to build;
#   pre  exists on the target before odsync with a primary key and rows under the source's keys
#        (other values): bulk loading meets the duplicate keys, rolls the chunk back and applies
#        that table as upserts, so the target ends up equal to the source.
# Asserts: the kill lands while some but not all chunks of big are marked; nothing was
# acknowledged and no key was built yet on big; the restart copies exactly the missing chunks of
# big; big, bt, ut and pre have their primary keys afterwards (kl none); big, bt and ut were loaded
# in binary, rt in text; the target equals the source exactly (od_compare_pg: values and types,
# keyless as multisets), also after the streamed workload; no duplicate keys.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init snapshot_load_pg
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
BIG_ROWS=${SNAP_BIG_ROWS:-3000000}
CHUNK_ROWS=${SNAP_CHUNK_ROWS:-50000}
pg_start_pair shop warehouse
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
SLOT=odsync_load
TABLES=(--table public.big --table public.bt --table public.ut --table public.rt --table public.kl --table public.pre)


log "source: $BIG_ROWS rows in big, edge values in bt, enum + composite key in ut, keyless kl, pre"
pg_psql <<SQL
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'très "content"');
CREATE TABLE big (id bigint PRIMARY KEY, v text, n int, at timestamptz, d numeric(12,2));
INSERT INTO big SELECT g, md5(g::text), g % 1000, '2024-01-01'::timestamptz + g * interval '1 s', (g % 100000) / 100.0
FROM generate_series(1, $BIG_ROWS) g;
CREATE TABLE bt (id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric, f4 real, f8 double precision,
  t text, vc varchar(12), ch char(4), b bytea, bo boolean, dt date, tm time, ttz timetz, ts timestamp,
  tstz timestamptz, iv interval, u uuid, j json, jb jsonb, ia int[], ta text[], fa float8[], nr numrange,
  tr tstzrange, mr int4multirange, ip inet, cd cidr, mac macaddr, m money, bi bit(8), vb varbit, tv tsvector,
  tq tsquery, pt point, bx box, pg polygon, x xml, o oid, l pg_lsn, jp jsonpath, ti tid, xi xid, x8 xid8,
  sn pg_snapshot, ts2 txid_snapshot, rc refcursor, li line, ls lseg, pa path, ci circle, m8 macaddr8, nm name,
  qc "char", i8r int8range, dr daterange, tsr tsrange, dmr datemultirange, ivd interval day to second(3),
  ivy interval year to month, t3 timestamp(3) with time zone, n52 numeric(5,2), ba bytea[], ua uuid[], ja jsonb[]);
INSERT INTO bt SELECT g,
  (ARRAY[-32768, 32767, 0, NULL])[g % 4 + 1],
  (ARRAY[-9223372036854775808, 9223372036854775807, 0, NULL])[g % 4 + 1],
  (ARRAY['NaN', '-0.000', repeat('9', 1000) || '.' || repeat('1', 300), '1e-300', 'Infinity', NULL])[g % 6 + 1]::numeric,
  (ARRAY['-0', 'NaN', 'Infinity', '-1.4e-45', '3.4028235e+38', '1.1', NULL])[g % 7 + 1]::real,
  (ARRAY['-0', 'NaN', '-Infinity', '5e-324', '1.7976931348623157e308', '0.1', NULL])[g % 7 + 1]::float8,
  (ARRAY[E'tab\there nl\nx cr\rx bs\\\\ \\\\N', '', 'ünïcödé ☃ 日本語 🎉', repeat('long ', 2000), NULL])[g % 5 + 1],
  (ARRAY['a', '🎉🎉🎉', ' ', NULL])[g % 4 + 1],
  (ARRAY['ab', 'é', '', NULL])[g % 4 + 1],
  (ARRAY['\x00', '\x', '\x5c4e0a0d09', NULL])[g % 4 + 1]::bytea,
  (ARRAY[true, false, NULL])[g % 3 + 1],
  (ARRAY['4713-01-01 BC', '5874897-12-31', 'infinity', '-infinity', NULL])[g % 5 + 1]::date,
  (ARRAY['00:00:00', '24:00:00', '23:59:59.999999', NULL])[g % 4 + 1]::time,
  (ARRAY['00:00:00+15:59', '12:34:56.789012+05:45', NULL])[g % 3 + 1]::timetz,
  (ARRAY['4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999', 'infinity', NULL])[g % 4 + 1]::timestamp,
  (ARRAY['1900-01-01 00:00:00+05:53:28', '-infinity', '2000-01-01 00:00:00.000001+00', NULL])[g % 4 + 1]::timestamptz,
  (ARRAY['1 year 2 mons -3 days 04:05:06.789012', '-178000000 years', '0', NULL])[g % 4 + 1]::interval,
  (ARRAY['00000000-0000-0000-0000-000000000000', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL])[g % 3 + 1]::uuid,
  (ARRAY['  {"a" : 1, "a": 2 }  ', '[1, 2.50, 1e400, -0]', NULL])[g % 3 + 1]::json,
  (ARRAY['{"n": {"ü": [null, 1.50, -0]}}', '"\ud83d\ude00"', NULL])[g % 3 + 1]::jsonb,
  (ARRAY['{{1,NULL,3},{4,5,NULL}}', '[0:1][-1:0]={{1,2},{3,4}}', '{}', NULL])[g % 4 + 1]::int[],
  (ARRAY['{"a b","c,d","\"q\"",NULL,"NULL"}', '{""}', NULL])[g % 3 + 1]::text[],
  (ARRAY['{Infinity,-Infinity,NaN,-0,5e-324}', '{NULL}', NULL])[g % 3 + 1]::float8[],
  (ARRAY['empty', '[1.5,2.25)', '(,)', NULL])[g % 4 + 1]::numrange,
  (ARRAY['[2024-01-01 00:00:00+00,infinity)', 'empty', NULL])[g % 3 + 1]::tstzrange,
  (ARRAY['{[1,3),[5,9)}', '{}', NULL])[g % 3 + 1]::int4multirange,
  (ARRAY['192.168.0.1/24', '::ffff:1.2.3.4', NULL])[g % 3 + 1]::inet,
  (ARRAY['10.0.0.0/8', '2001:db8::/32', NULL])[g % 3 + 1]::cidr,
  (ARRAY['08:00:2b:01:02:03', NULL])[g % 2 + 1]::macaddr,
  (ARRAY['-92233720368547758.08', '92233720368547758.07', '0', NULL])[g % 4 + 1]::money,
  (ARRAY['10101010', '00000000', NULL])[g % 3 + 1]::bit(8),
  (ARRAY['1', '', '1010101010101010101', NULL])[g % 4 + 1]::varbit,
  (ARRAY['a fat cat:1A sat:2B', '', NULL])[g % 3 + 1]::tsvector,
  (ARRAY['fat & (rat | !cat)', 'x:*', NULL])[g % 3 + 1]::tsquery,
  (ARRAY['(1.5,-0)', '(NaN,Infinity)', NULL])[g % 3 + 1]::point,
  (ARRAY['(1,1),(0,0)', NULL])[g % 2 + 1]::box,
  (ARRAY['((0,0),(1,1),(1,0))', NULL])[g % 2 + 1]::polygon,
  (ARRAY['<a x="1">t&amp;</a>', 'text only', NULL])[g % 3 + 1]::xml,
  (ARRAY[0, 4294967295, NULL])[g % 3 + 1]::oid,
  (ARRAY['0/0', 'FFFFFFFF/FFFFFFFF', NULL])[g % 3 + 1]::pg_lsn,
  (ARRAY['$.a[*] ? (@ > 1)', NULL])[g % 2 + 1]::jsonpath,
  (ARRAY['(0,0)', '(4294967295,65535)', NULL])[g % 3 + 1]::tid,
  (ARRAY['0', '4294967295', NULL])[g % 3 + 1]::xid,
  (ARRAY['0', '18446744073709551615', NULL])[g % 3 + 1]::xid8,
  (ARRAY['10:20:10,14,15', '1:1:', NULL])[g % 3 + 1]::pg_snapshot,
  (ARRAY['3:10:3,5,7', NULL])[g % 2 + 1]::txid_snapshot,
  (ARRAY['cur', '', NULL])[g % 3 + 1]::refcursor,
  (ARRAY['{1,-1,0}', '{0.5,NaN,-0}', NULL])[g % 3 + 1]::line,
  (ARRAY['[(0,0),(1,-0)]', NULL])[g % 2 + 1]::lseg,
  (ARRAY['[(0,0),(1,1),(2,0)]', '((0,0),(1,1))', NULL])[g % 3 + 1]::path,
  (ARRAY['<(0,0),1.5>', NULL])[g % 2 + 1]::circle,
  (ARRAY['08:00:2b:01:02:03:04:05', NULL])[g % 2 + 1]::macaddr8,
  (ARRAY[repeat('n', 63), 'a"b', '', NULL])[g % 4 + 1]::name,
  (ARRAY['a', E'\\\\377', '', NULL])[g % 4 + 1]::"char",
  (ARRAY['[-9223372036854775808,9223372036854775807)', 'empty', NULL])[g % 3 + 1]::int8range,
  (ARRAY['[4713-01-01 BC,infinity)', NULL])[g % 2 + 1]::daterange,
  (ARRAY['(,2000-01-01 00:00:00.000001]', NULL])[g % 2 + 1]::tsrange,
  (ARRAY['{[2000-01-01,2000-02-01),[2001-01-01,)}', NULL])[g % 2 + 1]::datemultirange,
  (ARRAY['1 day 02:03:04.5678', '-00:00:00.001', NULL])[g % 3 + 1]::interval day to second(3),
  (ARRAY['1 year 11 mons', '-1 mons', NULL])[g % 3 + 1]::interval year to month,
  (ARRAY['2024-01-01 12:00:00.1235+00', 'infinity', NULL])[g % 3 + 1]::timestamptz(3),
  (ARRAY['-999.99', '0.005', 'NaN', NULL])[g % 4 + 1]::numeric(5,2),
  (ARRAY['{"\\\\x00",NULL,"\\\\x"}', '{}', NULL])[g % 3 + 1]::bytea[],
  (ARRAY['{00000000-0000-0000-0000-000000000000,NULL}', NULL])[g % 2 + 1]::uuid[],
  (ARRAY['{"{\\"a\\": -0}",null}', NULL])[g % 2 + 1]::jsonb[]
FROM generate_series(1, 5000) g;
CREATE TABLE ut (a int, b text, m mood, v text, PRIMARY KEY (a, b) INCLUDE (v));
INSERT INTO ut SELECT g % 1000, 'k' || (g / 1000), (ARRAY['sad', 'ok', 'happy', 'très "content"'])[g % 4 + 1]::mood,
  md5(g::text) FROM generate_series(1, 60000) g;
CREATE TABLE rt (id int PRIMARY KEY, r regclass, t text);
INSERT INTO rt SELECT g, (ARRAY['pg_class', 'pg_type', 'big', 'public.ut'])[g % 4 + 1]::regclass, md5(g::text)
FROM generate_series(1, 3000) g;
CREATE TABLE kl (a int, b text, c numeric(10,2));
ALTER TABLE kl REPLICA IDENTITY FULL;
INSERT INTO kl SELECT g % 5000, 'row ' || (g % 500), g % 7 FROM generate_series(1, 100000) g;
CREATE TABLE pre (id int PRIMARY KEY, v text);
INSERT INTO pre SELECT g, 'source ' || g || repeat('p', 300) FROM generate_series(1, 20000) g;
ANALYZE;
SQL
# The target already holds pre, with a primary key and other values under some of the keys.
dst_psql <<'SQL'
CREATE TABLE pre (id int PRIMARY KEY, v text);
INSERT INTO pre SELECT g, 'stale ' || g FROM generate_series(1, 20000, 3) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: load
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.big, public.bt, public.ut, public.rt, public.kl, public.pre],
              snapshot_workers: 2, snapshot_chunk_rows: $CHUNK_ROWS }
    sink: { type: postgres, dsn: "$DST_DSN", maintenance_work_mem: 256MB }
YAML

workload() {
  local it=0 end=$((SECONDS + ${WORKLOAD_SECONDS:-20}))
  while ((SECONDS < end)); do
    it=$((it + 1))
    PGPORT=$SRC_PORT pg_psql >/dev/null <<SQL || { echo "workload: psql failed in iteration $it"; return 1; }
UPDATE big SET v = 'upd $it', n = n + 1 WHERE id IN ($((it * 7919 % BIG_ROWS + 1)), $((it * 104729 % BIG_ROWS + 1)));
DELETE FROM big WHERE id = $((it * 15485863 % BIG_ROWS + 1));
INSERT INTO big VALUES ($BIG_ROWS + $it, 'new $it', $it, now(), 1.5), (-$it, 'below $it', $it, NULL, NULL);
UPDATE big SET id = id + 2 * $BIG_ROWS WHERE id = $((it * 31337 % BIG_ROWS + 1));
UPDATE bt SET f8 = -f8, t = t || '$it' WHERE id = $((it % 5000 + 1));
UPDATE ut SET m = 'happy', v = 'upd $it' WHERE a = $((it % 1000)) AND b = 'k$((it % 60))';
INSERT INTO ut VALUES ($it, 'new', 'ok', 'n');
DELETE FROM ut WHERE a = $(((it * 7) % 1000)) AND b = 'k$((it % 60))';
INSERT INTO kl VALUES ($it % 5000, 'row 1', 1.5), ($it % 5000, 'row 1', 1.5);
DELETE FROM kl WHERE ctid = (SELECT max(ctid) FROM kl WHERE a = $(((it * 13) % 5000)));
UPDATE pre SET v = 'changed $it' WHERE id = $((it * 3 % 20000 + 1));
SQL
    sleep 0.1
  done
  echo "workload: $it iterations"
}

# A mark's value as a decimal: position marks hold "pg:X/Y" (position_text), integer marks a number.
mark() {
  local v
  v=$(dst_psql -c "SELECT coalesce(position_text, (position - '0/0'::pg_lsn)::text) FROM _odsync_checkpoint WHERE pipeline = '$1'" 2>/dev/null) || true
  if [[ $v == pg:* ]]; then lsn_to_int "${v#pg:}"; else echo "$v"; fi
}
chunks_marked() {
  dst_psql -c "SELECT count(*) FROM _odsync_checkpoint WHERE pipeline ~ '^load/snapshot/$1/[0-9]+\$'
    AND position_text = (SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'load/snapshot/$1/gen')" 2>/dev/null || echo 0
}
has_pkey() {
  dst_psql -c "SELECT count(*) FROM pg_index WHERE indrelid = 'public.$1'::regclass AND indisprimary"
}
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${TABLES[@]}"; }

odsync_start "$CONFIG" "$LOG"
workload_start workload

wait_for "[[ -n \$(mark load/snapshot/public.big/n) ]]" 90 || fail "the snapshot never planned big"
N_BIG=$(mark load/snapshot/public.big/n)
((N_BIG >= 20)) || fail "big has only $N_BIG chunks"
deadline=$(($(date +%s) + 120))
while true; do
  d=$(chunks_marked public.big)
  ((d >= 4)) && break
  odsync_running || fail "odsync exited during the snapshot"
  (($(date +%s) < deadline)) || fail "no progress on big's chunks"
  sleep 0.05
done
odsync_kill9
D_BIG=$(chunks_marked public.big)
log "killed with $D_BIG/$N_BIG chunks of big in the target"
((D_BIG >= 4 && D_BIG < N_BIG)) || fail "the kill did not land in the middle of big's copy ($D_BIG/$N_BIG)"
[[ -z "$(mark load)" ]] || fail "the target holds a checkpoint although the snapshot was not finished"
[[ -z "$(mark load/snapshot)" ]] || fail "the snapshot is marked done although it was not finished"
[[ $(has_pkey big) == 0 ]] || fail "big has its primary key before its load finished (it should be built at the end)"
grep -q "created table public.big (its primary key is built once the initial snapshot is in)" "$LOG" ||
  fail "big was not created for a deferred key"
grep -q "table public.big: snapshot chunks load with COPY (binary values)" "$LOG" || fail "big was not loaded in binary"
grep -q "table public.bt: snapshot chunks load with COPY (binary values)" "$LOG" || fail "bt was not loaded in binary"
grep -q "table public.ut: snapshot chunks load with COPY (binary values)" "$LOG" ||
  fail "ut (an enum column, read as text inside binary) was not loaded in binary"
grep -q "table public.rt: snapshot chunks load with COPY (text values)" "$LOG" ||
  fail "rt (a regclass column) was not loaded in text"
created=$(sed -n 's/.*created replication slot odsync_load at \([0-9A-F/]*\) exporting.*/\1/p' "$LOG")
[[ -n "$created" ]] || fail "no slot creation in the log"
wait_for "[[ \$(PGPORT=$SRC_PORT pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'\") == f ]]" 30 ||
  fail "slot still active after the kill"
confirmed=$(PGPORT=$SRC_PORT pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")
[[ "$confirmed" == "$created" ]] || fail "the slot was acknowledged during the snapshot ($created -> $confirmed)"

log "restarting"
RUN2_FROM=$(wc -l <"$LOG")
odsync_start "$CONFIG" "$LOG"
wait_for "tail -n +$RUN2_FROM '$LOG' | grep_q 'pipeline load: initial snapshot done'" 300 ||
  fail "the resumed snapshot did not finish within 300 s"
RUN2=$(tail -n +"$RUN2_FROM" "$LOG")
echo "$RUN2" | grep_q "pipeline load: resuming the initial snapshot" || fail "run 2 did not resume"
echo "$RUN2" | grep_q "snapshot: public.big: $D_BIG/$N_BIG chunks already done; copying the other $((N_BIG - D_BIG))" ||
  fail "run 2 did not report $D_BIG/$N_BIG chunks of big already done"
echo "$RUN2" | grep_q -E "snapshot: public\.big: copied $((N_BIG - D_BIG)) chunks? in this run \($D_BIG already done, $N_BIG in all\)" ||
  fail "run 2 did not copy exactly the $((N_BIG - D_BIG)) missing chunks of big"
grep -q "snapshot: public.pre: the target already holds rows with keys of chunk" "$LOG" ||
  fail "pre's duplicate keys did not switch it to upserts"
log "$(grep -m1 "snapshot: public.pre: the target already holds" "$LOG" | sed 's/.*INFO *//')"
for t in big bt ut rt; do
  grep -q "table public.$t: primary key built in" "$LOG" || fail "no primary key built for $t"
done
for t in big bt ut rt pre; do [[ $(has_pkey "$t") == 1 ]] || fail "$t has no primary key after the snapshot"; done
[[ $(has_pkey kl) == 0 ]] || fail "kl (keyless) got a primary key"
[[ $(dst_psql -c "SELECT string_agg(attname, ',' ORDER BY attname) FROM pg_index i JOIN pg_attribute a
      ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'public.ut'::regclass AND i.indisprimary") == a,b ]] ||
  fail "ut's primary key is not (a, b)"

log "waiting for the workload and the catch-up"
workload_wait
# A last transaction after the workload: the target holds it while odsync runs, so it has caught up
# (commit order); the row-for-row comparison (3M rows: about 20 s) follows the stop, once.
PGPORT=$SRC_PORT pg_psql -c "UPDATE pre SET v = 'after the workload' WHERE id = 1" >/dev/null
wait_for "[[ \$(dst_psql -c \"SELECT v FROM pre WHERE id = 1\") == 'after the workload' ]] || ! odsync_running" 180
odsync_running || fail "odsync exited while catching up"
[[ $(dst_psql -c "SELECT v FROM pre WHERE id = 1") == 'after the workload' ]] || fail "the target did not catch up within 180 s"
odsync_stop
out=$(compare_pg 2>&1) || { echo "$out" >&2; fail "the target differs from the source"; }
echo "$out"
dups=$(dst_psql -c "SELECT count(*) FROM (SELECT id FROM big GROUP BY id HAVING count(*) > 1) d")
[[ "$dups" == 0 ]] || fail "big has duplicated keys"
[[ $(dst_psql -c "SELECT count(*) FROM big") == $(PGPORT=$SRC_PORT pg_psql -c "SELECT count(*) FROM big") ]] ||
  fail "big's row count differs"
log "all assertions passed"
