#!/usr/bin/env bash
# clickhouse_big_txn.sh — a source transaction larger than the ClickHouse sink keeps in memory
# (400,000 rows, about 70 MiB encoded; the bound is 64 MiB) streams through one open sink
# transaction and is inserted in parts before its commit.
#
# Asserts: the sink logged that it inserted the open batch before its commit, and inserted more
# than once for the table; afterwards the view equals the source row for row (400,000 rows), also
# after a following transaction that updates every 1000th row.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init clickhouse_big_txn
test_extra_cleanup() { ch_cleanup_all; }
pg_start shop
ch_start || fail "clickhouse-server did not start"
LOG=$TEST_TMP/odsync.log
pg_psql -c "CREATE TABLE big (id int PRIMARY KEY, a text, b text, c text)"
cat >"$TEST_TMP/odsync.yaml" <<EOF
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.big] }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: big }
EOF
odsync_start "$TEST_TMP/odsync.yaml" "$LOG"
wait_slot_active odsync_shop 60
pg_psql -c "INSERT INTO big SELECT g, md5(g::text) || md5(g::text), md5((g + 1)::text) || md5(g::text), md5((g + 2)::text) FROM generate_series(1, 400000) g"
pg_psql -c "UPDATE big SET a = 'x' WHERE id % 1000 = 0"
wait_for "[[ \$(ch_query \"SELECT count() FROM big.big_current WHERE a = 'x'\") == 400 ]]" 120 ||
  fail "the sink did not catch up within 120 s"
ch_compare_table big "SELECT id, a, b, c FROM big ORDER BY id" "SELECT id, a, b, c FROM big.big_current ORDER BY id" ||
  fail "ClickHouse differs from the source"
grep -q "clickhouse sink .*: the open batch holds [0-9]* MiB: inserting it before its commit" "$LOG" ||
  fail "the sink never inserted an open batch before its commit"
inserts=$(grep -c "clickhouse sink .*: table big: inserted" "$LOG")
((inserts >= 3)) || fail "only $inserts inserts into big (expected the big transaction in parts, then the update)"
odsync_stop
log "$inserts inserts; all assertions passed"
