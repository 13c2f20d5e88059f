#!/usr/bin/env bash
# snapshot_incremental_keys.sh — `odsync snapshot` (incremental, DBLog style) on tables whose key is
# not a single integer: a composite key (int, text) in an ICU collation, declared in another order
# than the columns; a uuid key; a three-column key (numeric, timestamptz, bytea); a table without
# primary key whose REPLICA IDENTITY is a unique index (text, int). Into both sinks
# at once: one odsync process runs pipeline ksq (-> SQLite) and pipeline kpg (-> PostgreSQL, a
# second database of the same server), both with `snapshot: never`, so only the incremental
# snapshot can fill the sinks. A writer inserts, updates, deletes and changes keys of all three
# tables throughout.
#
# Asserts:
#   1. refusals name the table and why: REPLICA IDENTITY NOTHING, a replica identity index with a
#      non-default operator class (exit 2).
#   2. both sinks' checkpoint tables of an earlier version (no position_text column) are migrated on
#      open, and an integer progress mark of an earlier version (table lt, key > 2000) is resumed
#      exactly: lt ends up holding rows 2001..5000 only, in both sinks.
#   3. before the snapshot the sinks differ from the source (the test can fail);
#   4. SIGKILL in the middle of the composite-key copy: each sink holds a text progress mark for
#      public.ck naming the key (b, a) with types and values; after the restart the log says both
#      pipelines continue from it, and every copy finishes while the writer still writes;
#   5. rows changed inside windows were taken from the stream (the watermark rule is exercised);
#   6. after the writer stops: ck, uk, mk, ri equal the source row for row in both sinks
#      (od_compare, od_compare_pg), and no incremental snapshot mark is left behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init snapshot_incremental_keys
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start shop
pg_psql -c "CREATE DATABASE warehouse" >/dev/null
SRC_DSN=$(pg_dsn shop)
DST_DSN=$(pg_dsn warehouse)
dst_psql() { PGDATABASE=warehouse pg_psql "$@"; }
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
WRITER_LOG=$TEST_TMP/writer.log
STOP_WRITER=$TEST_TMP/stop_writer
WRITER_PID=
KEYED=(--table public.ck --table public.uk --table public.mk --table public.ri)

test_extra_cleanup() {
  if [[ -n "$WRITER_PID" ]]; then
    touch "$STOP_WRITER"
    kill "$WRITER_PID" 2>/dev/null
    wait "$WRITER_PID" 2>/dev/null
  fi
  if [[ $TEST_RC -ne 0 && -f "$WRITER_LOG" ]]; then tail -n 20 "$WRITER_LOG" >&2; fi
}

# An ICU collation orders 'k..' and 'K..' apart from byte order: the keyset cursor must follow the
# server's collation, not bytes.
COLL=$(pg_psql -c "SELECT collname FROM pg_collation WHERE collname = 'und-x-icu'")
[[ -n "$COLL" ]] || COLL=C
log "text key collation: $COLL"

pg_psql <<SQL
-- b of row group x: mixed case (ICU sorts k/K together), random order (md5), unique (x)
CREATE FUNCTION ckb(x int) RETURNS text IMMUTABLE LANGUAGE sql
  AS \$\$ SELECT (CASE WHEN x % 2 = 0 THEN 'K' ELSE 'k' END) || substr(md5(x::text), 1, 6) || '-' || x \$\$;
CREATE TABLE ck (a int, b text COLLATE "$COLL", v text, n int, PRIMARY KEY (b, a));
INSERT INTO ck SELECT g % 50, ckb(g / 50), md5(g::text), g FROM generate_series(0, 99999) g;
CREATE TABLE uk (id uuid PRIMARY KEY, v text, n int);
INSERT INTO uk SELECT md5(g::text)::uuid, 'v ' || g, g FROM generate_series(1, 50000) g;
-- row g: d = (g % 100) * 1.25, t unique per g, bb = 4 bytes of md5(g)
CREATE FUNCTION mkt(g int) RETURNS timestamptz IMMUTABLE LANGUAGE sql
  AS \$\$ SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '61.123456 seconds' \$\$;
CREATE TABLE mk (d numeric(10,2), t timestamptz, bb bytea, v text, n int, PRIMARY KEY (d, t, bb));
INSERT INTO mk SELECT (g % 100) * 1.25, mkt(g), substr(decode(md5(g::text), 'hex'), 1, 4), 'v ' || g, g
  FROM generate_series(1, 5000) g;
CREATE TABLE ri (id int, code text NOT NULL, n int NOT NULL, v text);
CREATE UNIQUE INDEX ri_key ON ri (code, n);
ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_key;
INSERT INTO ri SELECT g, 'c' || (g % 7), g, 'v ' || g FROM generate_series(1, 3000) g;
CREATE TABLE lt (id int PRIMARY KEY, v text);
INSERT INTO lt SELECT g, 'lt ' || g FROM generate_series(1, 5000) g;
CREATE TABLE rn (id int PRIMARY KEY, v text);
ALTER TABLE rn REPLICA IDENTITY NOTHING;
CREATE TABLE ro (id int, code text NOT NULL);
CREATE UNIQUE INDEX ro_code ON ro (code text_pattern_ops);
ALTER TABLE ro REPLICA IDENTITY USING INDEX ro_code;
CREATE PUBLICATION isk_pub FOR TABLE ck, uk, mk, ri, lt;
ANALYZE;
SQL

# Both sinks as an earlier version left them: a checkpoint table without position_text, a
# pipeline in the middle of an incremental snapshot of lt with an integer progress mark
# (key 2000, stored as 2000 ^ 2^63) and no checkpoint (the pipelines start at their new slots).
LEGACY_POS=$((2000 ^ (1 << 63)))
sqlite3 "$SINK_DB" <<SQL
CREATE TABLE _odsync_checkpoint(pipeline TEXT PRIMARY KEY, position INTEGER NOT NULL,
  position_lsn TEXT NOT NULL, updated_at TEXT NOT NULL);
INSERT INTO _odsync_checkpoint VALUES ('ksq/isnap/any', 1, '0/1', '2026-01-01T00:00:00.000Z'),
  ('ksq/isnap/public.lt/requested', 1, '0/1', '2026-01-01T00:00:00.000Z'),
  ('ksq/isnap/public.lt/pos', $LEGACY_POS, '80000000/7D0', '2026-01-01T00:00:00.000Z');
SQL
dst_psql <<SQL
CREATE TABLE public._odsync_checkpoint (pipeline text PRIMARY KEY, position pg_lsn NOT NULL,
  updated_at timestamptz NOT NULL);
INSERT INTO public._odsync_checkpoint VALUES ('kpg/isnap/any', '0/1', now()),
  ('kpg/isnap/public.lt/requested', '0/1', now()),
  ('kpg/isnap/public.lt/pos', '80000000/7D0', now());
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: ksq
    source: { type: postgres, dsn: "$SRC_DSN", publication: isk_pub, snapshot: never, incremental_chunk_rows: 200 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: kpg
    source: { type: postgres, dsn: "$SRC_DSN", publication: isk_pub, snapshot: never, incremental_chunk_rows: 200 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

# One writer step per table, each its own transaction; random rows plus one row in every 10th key
# group (ck) / every 250th key (uk), so that many chunks' windows see changes of their own rows.
pg_psql <<'SQL'
CREATE FUNCTION wck(it int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r1 int := (random() * 99999)::int; r3 int := (random() * 99999)::int;
BEGIN
  UPDATE ck SET v = 'upd ' || it, n = n + 1 WHERE (a, b) IN ((r1 % 50, ckb(r1 / 50)), (r3 % 50, ckb(r3 / 50)));
  UPDATE ck SET n = n + 1 WHERE a = it % 50 AND b IN (SELECT ckb(x) FROM generate_series(it % 10, 1999, 10) x);
  DELETE FROM ck WHERE a = (r3 + 1) % 50 AND b = ckb((r3 + 1) / 50);
  INSERT INTO ck VALUES (it % 50, ckb(100000 + it), 'new ' || it, it);                      -- anywhere in key order
  UPDATE ck SET a = 100000 + it WHERE a = (r1 + 7) % 50 AND b = ckb((r1 + 7) / 50);         -- key change (a)
  UPDATE ck SET b = ckb(200000 + it) WHERE a = (r3 + 11) % 50 AND b = ckb((r3 + 11) / 50);  -- key change (b)
END $$;
CREATE FUNCTION wuk(it int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r2 int := 1 + (random() * 49999)::int; r4 int := 1 + (random() * 49999)::int;
BEGIN
  UPDATE uk SET v = 'upd ' || it, n = n + 1 WHERE id IN (md5(r2::text)::uuid, md5(r4::text)::uuid);
  UPDATE uk SET n = n + 1 WHERE id IN (SELECT md5(x::text)::uuid FROM generate_series(it % 250 + 1, 50000, 250) x);
  DELETE FROM uk WHERE id = md5((r4 + 1)::text)::uuid;
  INSERT INTO uk VALUES (gen_random_uuid(), 'new ' || it, it);
  UPDATE uk SET id = gen_random_uuid(), v = 'moved ' || it WHERE id = md5((r2 + 3)::text)::uuid;
END $$;
CREATE FUNCTION wri(it int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ri SET v = 'upd ' || it WHERE n = it % 3000 + 1;
  DELETE FROM ri WHERE n = (it * 13) % 3000 + 1;
  INSERT INTO ri VALUES (it, 'new', it, 'n ' || it);
  UPDATE ri SET code = code || 'x' WHERE n = (it * 7) % 3000 + 1;  -- key change
END $$;
CREATE FUNCTION wmk(it int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r5 int := 1 + (random() * 4999)::int;
BEGIN
  UPDATE mk SET v = 'upd ' || it, n = n + 1 WHERE t IN (mkt(r5), mkt(it % 5000 + 1), mkt((it * 37) % 5000 + 1));
  DELETE FROM mk WHERE t = mkt((r5 + 1) % 5000 + 1);
  INSERT INTO mk VALUES ((it % 100) * 1.25 + 0.5, mkt(10000 + it), '\x00ff'::bytea, 'new ' || it, it);
  UPDATE mk SET d = d + 1000, bb = bb || '\x01'::bytea WHERE t = mkt((r5 + 2) % 5000 + 1);
END $$;
SQL

# One psql session fed step by step (no process start per step); it stops at the first error.
writer() {
  local it=0
  {
    while [[ ! -e $STOP_WRITER ]]; do
      it=$((it + 1))
      echo "SELECT wck($it); SELECT wuk($it); SELECT wmk($it); SELECT wri($it);"
      sleep 0.02
    done
    echo "\\echo writer: $it iterations"
  } | pg_psql -o /dev/null
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_ksq 60
wait_slot_active odsync_kpg 60

log "both sinks' checkpoint tables of an earlier version were migrated"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM pragma_table_info('_odsync_checkpoint') WHERE name = 'position_text'") == 1 ]] ||
  fail "the SQLite sink's checkpoint table did not gain position_text"
[[ $(dst_psql -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public._odsync_checkpoint'::regclass
                  AND attname = 'position_text' AND NOT attisdropped") == 1 ]] ||
  fail "the PostgreSQL sink's checkpoint table did not gain position_text"

log "refusals"
pg_psql -c "ALTER PUBLICATION isk_pub ADD TABLE rn, ro"
set +e
out=$("$ODSYNC_BIN" snapshot -c "$CONFIG" --pipeline ksq --table rn 2>&1); rc=$?
set -e
[[ $rc -eq 2 && $out == *public.rn* && $out == *"REPLICA IDENTITY is NOTHING"* ]] || fail "replica identity nothing: exit $rc: $out"
set +e
out=$("$ODSYNC_BIN" snapshot -c "$CONFIG" --pipeline ksq --table ro 2>&1); rc=$?
set -e
[[ $rc -eq 2 && $out == *public.ro* && $out == *"operator class"* ]] || fail "non-default operator class: exit $rc: $out"
pg_psql -c "ALTER PUBLICATION isk_pub DROP TABLE rn, ro"

log "the integer progress mark of an earlier version: lt continues after key 2000"
for p in ksq kpg; do
  wait_for "grep -q 'pipeline $p: incremental snapshot of public.lt: continuing from the progress mark (key id > 2000)' '$LOG'" 60 ||
    fail "pipeline $p did not continue lt from its integer progress mark"
  wait_for "grep -q 'pipeline $p: incremental snapshot of public.lt done' '$LOG'" 120 || fail "pipeline $p did not finish lt"
done
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) || ' ' || min(id) || ' ' || max(id) FROM lt") == "3000 2001 5000" ]] ||
  fail "SQLite lt after resuming from key 2000: $(sqlite3 "$SINK_DB" "SELECT count(*), min(id), max(id) FROM lt")"
[[ $(dst_psql -c "SELECT count(*) || ' ' || min(id) || ' ' || max(id) FROM lt") == "3000 2001 5000" ]] ||
  fail "PostgreSQL lt after resuming from key 2000: $(dst_psql -c "SELECT count(*), min(id), max(id) FROM lt")"

log "writer starts; before the snapshot the sinks must differ from the source"
writer >"$WRITER_LOG" 2>&1 &
WRITER_PID=$!
# The writer's first changes create the tables in the sinks (streamed); only then is a comparison
# meaningful (a missing table is an error, not a difference).
wait_for "[[ \$(sqlite3 '$SINK_DB' \"SELECT count(*) FROM sqlite_master WHERE name IN ('ck', 'uk')\") == 2 ]]" 60 ||
  fail "the writer's changes did not reach the SQLite sink"
wait_for "[[ \$(dst_psql -c \"SELECT to_regclass('public.ck') IS NOT NULL AND to_regclass('public.uk') IS NOT NULL\") == t ]]" 60 ||
  fail "the writer's changes did not reach the PostgreSQL sink"
set +e
compare --table public.ck >/dev/null 2>&1; rc1=$?
"$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.uk >/dev/null 2>&1; rc2=$?
set -e
[[ $rc1 -eq 1 && $rc2 -eq 1 ]] || fail "the sinks already equal the source before the snapshot (od_compare $rc1, od_compare_pg $rc2)"

log "incremental snapshot of ck, uk, mk in both pipelines"
for p in ksq kpg; do
  out=$("$ODSYNC_BIN" snapshot -c "$CONFIG" --pipeline $p "${KEYED[@]}") || fail "odsync snapshot ($p) failed: $out"
  [[ $out == *"requested an incremental snapshot of public.ck"* && $out == *"public.mk"* ]] || fail "unexpected output: $out"
done

chunks() { grep -c "pipeline $1: incremental snapshot of public.ck: chunk" "$LOG" || true; }
for _ in $(seq 1 1200); do
  (($(chunks ksq) >= 5 && $(chunks kpg) >= 5)) && break
  odsync_running || fail "odsync exited during the snapshot"
  sleep 0.05
done
(($(chunks ksq) >= 5 && $(chunks kpg) >= 5)) || fail "the composite-key snapshot did not progress (5 chunks each)"
grep -q "incremental snapshot of public.ck done" "$LOG" && fail "ck finished before the kill (too fast to test resume)"

log "SIGKILL in the middle of the composite-key copy ($(chunks ksq) / $(chunks kpg) chunks logged)"
odsync_kill9
MARK_RE='^K1 [0-9]+:DateStyle=[^ ]* MDY;IntervalStyle=postgres;TimeZone=UTC 1:2 1:b 4:text [0-9]+:[kK][0-9a-f]{6}-[0-9]+ 1:a 7:integer [0-9]+:-?[0-9]+$'
m_sq=$(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'ksq/isnap/public.ck/pos'")
m_pg=$(dst_psql -c "SELECT position_text FROM public._odsync_checkpoint WHERE pipeline = 'kpg/isnap/public.ck/pos'")
log "progress marks: SQLite '$m_sq', PostgreSQL '$m_pg'"
[[ $m_sq =~ $MARK_RE ]] || fail "SQLite sink: no text progress mark of the key (b, a) for public.ck: '$m_sq'"
[[ $m_pg =~ $MARK_RE ]] || fail "PostgreSQL sink: no text progress mark of the key (b, a) for public.ck: '$m_pg'"

odsync_start "$CONFIG" "$LOG"
for p in ksq kpg; do
  wait_for "grep -q 'pipeline $p: incremental snapshot of public.ck: continuing from the progress mark (key (b, a) > (' '$LOG'" 60 ||
    fail "after the restart pipeline $p did not continue ck from its progress mark"
done
for t in ck uk mk ri; do
  for p in ksq kpg; do
    wait_for "grep -q 'pipeline $p: incremental snapshot of public.$t done' '$LOG'" 600 ||
      fail "pipeline $p did not finish public.$t"
    odsync_running || fail "odsync exited during the snapshot"
  done
done
kill -0 "$WRITER_PID" 2>/dev/null || fail "the writer stopped before the snapshots finished"
grep -E "incremental snapshot of public\.(ck|uk|mk) done" "$LOG"
log "chunks whose window saw changes of their rows: $(grep -Ec "incremental snapshot of public\.(ck|uk|mk): chunk [0-9]+: .*, [1-9][0-9]* changed in the window" "$LOG")"

for t in ck uk; do
  grep -Eq "incremental snapshot of public.$t: chunk [0-9]+: .*, [1-9][0-9]* changed in the window" "$LOG" ||
    fail "no chunk of $t had a row changed inside its window (the test does not exercise the watermark rule)"
done

log "stopping the writer; both sinks must equal the source"
touch "$STOP_WRITER"
wait "$WRITER_PID" || fail "the writer failed"
WRITER_PID=
tail -n 1 "$WRITER_LOG"
wait_equal_both() {
  local deadline=$(($(date +%s) + 120)) a b
  while true; do
    if a=$(compare "${KEYED[@]}" 2>&1) && b=$("$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${KEYED[@]}" 2>&1); then
      echo "$a"
      echo "$b"
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      echo "$a" >&2
      echo "${b:-}" >&2
      fail "sinks not equal to the source after 120 s (reports above)"
    fi
    sleep 1
  done
}
wait_equal_both
left=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM _odsync_checkpoint WHERE pipeline LIKE 'ksq/isnap/public.%'")
[[ $left == 0 ]] || fail "$left incremental snapshot marks left in the SQLite sink"
left=$(dst_psql -c "SELECT count(*) FROM public._odsync_checkpoint WHERE pipeline LIKE 'kpg/isnap/public.%'")
[[ $left == 0 ]] || fail "$left incremental snapshot marks left in the PostgreSQL sink"
odsync_stop
