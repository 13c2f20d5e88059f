#!/usr/bin/env bash
# clickhouse_big_txn.sh — a source transaction larger than the ClickHouse sink keeps in memory
# (80,000 rows, about 14 MiB encoded; the bound is set to buffer_mib: 4) streams through one open
# sink transaction and is inserted in parts before its commit.
#
# Asserts: the sink logged that it inserted the open batch before its commit, and inserted more
# than once for the table; afterwards the view equals the source row for row (80,000 rows), also
# after a following transaction that updates every 1000th row.
#
# Then one transaction updates 5,000 rows of a table whose TOASTed column it leaves unchanged
# (no REPLICA IDENTITY FULL): the sink reads the stored values back for 5,000 64-character keys,
# more than one query may carry (ClickHouse parses 256 KiB of a query), so in several SELECTs; the
# view must equal the source.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init clickhouse_big_txn
test_extra_cleanup() { ch_cleanup_all; }
pg_start shop
ch_start || fail "clickhouse-server did not start"
LOG=$TEST_TMP/odsync.log
pg_psql <<'SQL'
CREATE TABLE big (id int PRIMARY KEY, a text, b text, c text);
CREATE TABLE toasty (id text PRIMARY KEY, n int, body text);
ALTER TABLE toasty ALTER COLUMN body SET STORAGE EXTERNAL;
SQL
cat >"$TEST_TMP/odsync.yaml" <<EOF
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.big, public.toasty] }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: big, buffer_mib: 4 }
EOF
odsync_start "$TEST_TMP/odsync.yaml" "$LOG"
wait_slot_active odsync_shop 60
pg_psql -c "INSERT INTO big SELECT g, md5(g::text) || md5(g::text), md5((g + 1)::text) || md5(g::text), md5((g + 2)::text) FROM generate_series(1, 80000) g"
pg_psql -c "UPDATE big SET a = 'x' WHERE id % 1000 = 0"
wait_for "[[ \$(ch_query \"SELECT count() FROM big.big_current WHERE a = 'x'\") == 80 ]]" 120 ||
  fail "the sink did not catch up within 120 s"
ch_compare_table big "SELECT id, a, b, c FROM big ORDER BY id" "SELECT id, a, b, c FROM big.big_current ORDER BY id" ||
  fail "ClickHouse differs from the source"
grep -q "clickhouse sink .*: the open batch holds [0-9]* MiB: inserting it before its commit" "$LOG" ||
  fail "the sink never inserted an open batch before its commit"
inserts=$(grep -c "clickhouse sink .*: table big: inserted" "$LOG")
((inserts >= 4)) || fail "only $inserts inserts into big (expected the big transaction in parts, then the update)"

pg_psql -c "INSERT INTO toasty SELECT repeat(md5(g::text), 2), 0, repeat(md5(g::text), 70) FROM generate_series(1, 5000) g"
toasted=$(pg_psql -c "SELECT count(DISTINCT chunk_id) FROM $(pg_psql -c "SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'toasty'::regclass")")
((toasted == 5000)) || fail "$toasted values of toasty stored out of line, expected 5000"
wait_for "[[ \$(ch_query \"SELECT count() FROM big.toasty_current\") == 5000 ]]" 120 || fail "toasty's rows did not arrive"
pg_psql -c "UPDATE toasty SET n = n + 1"
wait_for "[[ \$(ch_query \"SELECT count() FROM big.toasty_current WHERE n = 1\") == 5000 ]]" 180 ||
  fail "the update of 5,000 rows with unchanged TOAST values did not arrive within 180 s"
ch_compare_table toasty "SELECT id, n, body FROM toasty ORDER BY id" "SELECT id, n, body FROM big.toasty_current ORDER BY id" ||
  fail "toasty differs from the source"
reads=$(grep -c "table toasty: read [0-9]* stored rows for unchanged TOAST values" "$LOG")
((reads >= 2)) || fail "the 5,000 keys were read back in $reads SELECT(s), expected several"
odsync_stop
log "$inserts inserts into big; toasty's TOAST values read back in $reads SELECTs; all assertions passed"
