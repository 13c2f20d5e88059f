#!/usr/bin/env bash
# clickhouse_catchup_linger.sh — the end of a catch-up backlog into ClickHouse does not wait for the
# lingering batch's max_delay_ms, and lingering batches keep to batch.max_rows.
#
# A backlog written while odsync is not running (slot and publication made first): 36 transactions
# of 1,000 inserts, 8 of 1,000 updates, one transaction that updates the same keys twice (the sink
# keeps the last change of a key per transaction), deletes. odsync catches up by batch decoding
# (catchup_lag_bytes: 1) into ClickHouse with batch { max_rows: 12000, max_delay_ms: 60000 }: the
# last batch of the backlog (fewer than 12,000 rows) would stay open a minute if it waited for its
# delay; it must commit once the source reports it is idle (it waits for the sinks before it
# switches to streaming).
#
# Asserts: the view equals the source row for row within 45 s of the start (ids, ints, timestamps,
# decimals, text); the log shows catch-up by batch decoding; every insert of the table holds at most
# 13,000 rows (max_rows plus less than one source transaction: batches are cut at the last complete
# transaction once full, not only where a chunk happens to end at a commit); a change made after the
# switch arrives by streaming (equal again).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init clickhouse_catchup_linger
test_extra_cleanup() { ch_cleanup_all; }
pg_start shop
ch_start || fail "clickhouse-server did not start"
LOG=$TEST_TMP/odsync.log
pg_psql <<'SQL'
CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL, ts timestamptz, amount numeric(12,2), note text);
CREATE PUBLICATION odsync_shop FOR TABLE t;
SELECT pg_create_logical_replication_slot('odsync_shop', 'pgoutput');
SQL

log "backlog: 36 × 1,000 inserts, 8 × 1,000 updates, a double update, deletes"
{
  for i in $(seq 0 35); do
    echo "INSERT INTO t SELECT g, g % 97, '2024-03-01 12:00:00+02'::timestamptz + g * interval '1 s', g * 0.25, 'row ' || g FROM generate_series($((i * 1000 + 1)), $(((i + 1) * 1000))) g;"
  done
  for i in $(seq 0 7); do
    echo "UPDATE t SET n = n + 1, amount = amount + 1, note = note || ' u' WHERE id > $((i * 4000)) AND id <= $((i * 4000 + 1000));"
  done
  echo "BEGIN; UPDATE t SET n = -1 WHERE id % 500 = 0; UPDATE t SET n = -2, note = 'twice' WHERE id % 500 = 0; COMMIT;"
  echo "DELETE FROM t WHERE id % 1000 = 7;"
} | pg_psql >/dev/null
want=$(pg_psql -c "SELECT count(*) || ':' || sum(n) FROM t")

cat >"$TEST_TMP/odsync.yaml" <<EOF
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.t], snapshot: never, catchup_lag_bytes: 1, catchup_exit_bytes: 0, catchup_batch_changes: 5000 }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: lin }
    batch: { max_rows: 12000, max_delay_ms: 60000 }
EOF
t0=$(date +%s)
odsync_start "$TEST_TMP/odsync.yaml" "$LOG"
wait_for "[[ \$(ch_query \"SELECT concat(toString(count()), ':', toString(sum(n))) FROM lin.t_current\") == '$want' ]]" 45 ||
  fail "the backlog was not in ClickHouse within 45 s (holds $(ch_query "SELECT count() FROM lin.t_current" 2>/dev/null || echo -) rows): did the last lingering batch wait for max_delay_ms (60 s)?"
took=$(($(date +%s) - t0))
ch_compare_table t "SELECT id, n, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), amount, note FROM t ORDER BY id" \
  "SELECT id, n, ts, amount, note FROM lin.t_current ORDER BY id" || fail "ClickHouse differs from the source"
grep_q "caught up by batch decoding" "$LOG" || fail "the backlog was not read by batch decoding"

sizes=$(grep -o "table t: inserted [0-9]* rows" "$LOG" | awk '{print $4}' | tr '\n' ' ')
[[ -n $sizes ]] || fail "no insert logged"
for n in $sizes; do ((n <= 13000)) || fail "an insert of $n rows with max_rows 12000 (inserts: $sizes)"; done
count=$(wc -w <<<"$sizes")
((count >= 4)) || fail "only $count inserts for 45,000 changes with max_rows 12000 (inserts: $sizes)"

log "after the switch: one change by streaming"
pg_psql -c "UPDATE t SET note = 'streamed' WHERE id = 42"
wait_for "[[ \$(ch_query \"SELECT note FROM lin.t_current WHERE id = 42\") == streamed ]]" 120 ||
  fail "the change after the backlog did not arrive"
ch_compare_table t2 "SELECT id, n, amount, note FROM t ORDER BY id" "SELECT id, n, amount, note FROM lin.t_current ORDER BY id" ||
  fail "ClickHouse differs from the source after the switch"
odsync_stop
log "backlog in ClickHouse after ${took} s (max_delay_ms 60 s); inserts of $sizes rows; all assertions passed"
