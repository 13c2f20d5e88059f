#!/usr/bin/env bash
# transforms_pg_pg.sh — PostgreSQL -> PostgreSQL sink through filter + mask + pseudonymize +
# truncate_date + null + rename, over the initial snapshot (the sink's bulk COPY loading, in text
# because values are rewritten) and the stream.
#
# people (REPLICA IDENTITY FULL): filter "region IN ('eu', 'us') AND score >= 10"; phone masked
# (style phone), score masked (an integer column: becomes text), id pseudonymized (a key column),
# born truncated to the year, notes nulled, region renamed to zone. The workload inserts on both sides
# of the filter, moves rows into and out of it, changes a key and deletes.
# (Every phone ends in two digits, so the expected value is "every digit but the last two characters".)
# Asserts: the sink table equals, row for row, the expected transformed rows computed on the source
# (pgcrypto hmac, string and date functions); its column types are text for the masked integer and
# the pseudonymized key, date for born; the primary key is on the pseudonymized id; the checkpoint
# row holds a pg: position; the HMAC key never appears in odsync's output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init transforms_pg_pg
pg_start_pair txsrc txdst
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
KEYFILE=$TEST_TMP/pseudo.key
KEY="file-key-$RANDOM-0123456789abcdef"
printf '%s' "$KEY" >"$KEYFILE"

pg_psql <<'SQL'
CREATE EXTENSION pgcrypto;
CREATE TABLE people (id int PRIMARY KEY, phone text, score int, born date, notes text, region text);
ALTER TABLE people REPLICA IDENTITY FULL;
INSERT INTO people
  SELECT g, '+49 (30) ' || lpad((g * 7919 % 10000000)::text, 7, '0'), g % 40,
         date '1950-01-01' + g * 37, 'note ' || g, (ARRAY['eu', 'us', 'apac'])[g % 3 + 1]
  FROM generate_series(1, 500) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: txpg
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.people] }
    sink:
      type: postgres
      dsn: "$DST_DSN"
      transforms:
        - { type: filter, where: "region IN ('eu', 'us') AND score >= 10" }
        - { type: mask, columns: [phone], style: phone, keep: 2 }
        - { type: mask, columns: [score], style: keep_last, keep: 1, char: x }
        - { type: pseudonymize, columns: [id], prefix: p_, length: 20, key: "\${file:$KEYFILE}" }
        - { type: truncate_date, columns: [born], unit: year }
        - { type: null, columns: [notes] }
        - { type: rename, columns: [region=zone] }
YAML

want() {
  pg_psql -c "SELECT 'p_' || substr(encode(hmac(id::text, '$KEY', 'sha256'), 'hex'), 1, 20),
                     regexp_replace(left(phone, length(phone) - 2), '[0-9]', '*', 'g') || right(phone, 2),
                     repeat('x', length(score::text) - 1) || right(score::text, 1),
                     date_trunc('year', born)::date, NULL::text, region
              FROM people WHERE region IN ('eu', 'us') AND score >= 10 ORDER BY 1"
}
got() {
  dst_psql -c "SELECT id, phone, score, born, notes, zone FROM people ORDER BY 1"
}
wait_transformed_equal() {
  local deadline=$(($(date +%s) + $1))
  until [[ "$(want)" == "$(got 2>/dev/null)" ]]; do
    if (($(date +%s) >= deadline)); then
      diff <(want) <(got) | head -20 >&2 || true
      fail "$2: the sink does not hold the expected transformed rows after $1 s (diff above: < expected, > sink)"
    fi
    sleep 0.5
  done
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_txpg 60
wait_transformed_equal 60 "after the snapshot"
n=$(dst_psql -c "SELECT count(*) FROM people")
[[ $n -gt 100 && $n -lt 500 ]] || fail "snapshot: $n of 500 rows passed the filter (expected a part)"
log "snapshot: $n of 500 rows passed the filter, transformed as expected"

for i in $(seq 1 20); do
  pg_psql <<SQL
BEGIN;
INSERT INTO people VALUES (1000 + $i, '+1 555 000 $((i + 10))', 10 + $i, date '2000-06-15' + $i, 'n', 'eu'),
                          (2000 + $i, '+1 555 111 $((i + 10))', 3, date '2001-06-15', 'n', 'us');
UPDATE people SET region = 'eu' WHERE id = $((i * 3 + 2));            -- apac -> eu: into the filter when score >= 10
UPDATE people SET score = 1 WHERE id = $((i * 3));                    -- out of it
UPDATE people SET phone = '+44 20 7946 00$i', notes = 'changed' WHERE id = $((i * 3 + 1));
COMMIT;
SQL
  if ((i % 5 == 0)); then
    pg_psql -c "UPDATE people SET id = id + 100000 WHERE id = $((i * 3 + 4))"
    pg_psql -c "DELETE FROM people WHERE id IN ($((i * 3 + 7)), $((i * 3 + 8)))"
  fi
done
wait_transformed_equal 60 "after the stream"
odsync_stop
log "stream: the sink equals the expected transformed rows"

types=$(dst_psql -c "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)
                     FROM information_schema.columns WHERE table_name = 'people'")
[[ "$types" == "id:text,phone:text,score:text,born:date,notes:text,zone:text" ]] ||
  fail "sink people has columns '$types'; expected id and score as text, born as date, region renamed to zone"
pk=$(dst_psql -c "SELECT string_agg(a.attname, ',') FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                  AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'people'::regclass AND i.indisprimary")
[[ "$pk" == "id" ]] || fail "sink people: primary key on '$pk', expected id (pseudonymized)"
text=$(dst_psql -c "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'txpg'")
[[ "$text" =~ ^pg:[0-9A-F]+/[0-9A-F]+$ ]] || fail "checkpoint holds '$text', expected pg:X/Y"
! grep -qF "$KEY" "$LOG" || fail "the HMAC key appears in odsync's output"
log "all assertions passed"
