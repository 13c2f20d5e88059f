#!/usr/bin/env bash
# pg_parallel_backlog.sh — a backlog applied by parallel writers (causal, then eventual; apply_workers
# 4) into a PostgreSQL sink: the helper writers do the keyed work even when every chunk of the
# stream ends inside a transaction, and the target ends exact.
#
# The reader cuts chunks every 2,048 rows, so with 1,000-row transactions nearly every chunk ends in
# the middle of one. A parallel batch used to end only where a chunk ended a transaction; such a
# backlog grew each batch to 4 × batch.max_rows and then streamed it through the carrier alone
# (seen: 400,000 of 400,000 changes of bench/pg_to_pg.sh applied by the carrier, the 3 helpers
# idle). Now a batch ends at the last transaction end inside its chunks and the rest starts the next
# batch; and the carrier's serial mode (a transaction larger than 4 x max_rows) ends in the chunk
# where that transaction ends, instead of at the next chunk that happens to end at a commit.
#
# Backlog, written while odsync is stopped (after a first session created the slot):
#   items (id PK): 60 transactions of 1,000 inserts, 30 of 1,000 updates, 10 of 500 deletes;
#   kv (composite key): 40 transactions of 700 upserts;
#   log (keyless, REPLICA IDENTITY FULL): 20 transactions of 300 inserts (serial: the carrier; under
#   causal a transaction that writes it goes to the carrier whole, so they are transactions of their own);
#   big: one 25,000-row transaction (larger than 4 × max_rows = 20,000: streamed through the
#   carrier), between the others;
#   moves: a transaction that changes 60 primary keys of items (serial for that batch).
# Asserts, for each level: the target equals the source (od_compare_pg, all tables, duplicates in
# the keyless table counted); odsync's closing line says the helpers applied at least 95,000 of the
# 116,000 changes of the keyed 1,000/700/500-row transactions (the carrier also takes the items
# changes of the batch that holds the key changes, and the small transactions that end in the chunk
# where the big one ends: 34,000-41,000 in all, seen under load; without the cut inside a chunk or the
# end of serial mode after the big transaction the helpers got 76,000-81,000) and the carrier at
# least the 25,000 of the big one plus the 6,000 keyless rows; a SIGTERM exits 0. The admin server
# reports the same two counts before the stop: odsync_parallel_changes_total{writer="helpers" |
# "carrier"} on /metrics and helper_changes / carrier_changes of the sink on /status. Then, at the
# head, 20 one-row transactions one at a time all go to the carrier (batches below
# apply_parallel_min_rows are not split): the carrier's count grows by 20, the helpers' not at all.
# The exact rules are pinned by the unit test
# parallel_batches_end_inside_chunks_and_only_the_large_transaction_goes_serial (test_apply.c).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_parallel_backlog
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
TABLES=(--table public.items --table public.kv --table public.log --table public.big)

pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL, n int, at timestamptz);
CREATE TABLE kv (tenant int, key text, val numeric(12,3), PRIMARY KEY (tenant, key));
CREATE TABLE log (kind text, n int);
ALTER TABLE log REPLICA IDENTITY FULL;
CREATE TABLE big (id int PRIMARY KEY, v text);
SQL

run_level() {
  local level=$1 db=wh_$1 config=$TEST_TMP/$1.yaml logf=$TEST_TMP/$1.log dsn helpers carrier line
  dst_psql -c "CREATE DATABASE $db"
  dsn="host=127.0.0.1 port=$DST_PORT dbname=$db user=postgres"
  cat >"$config" <<YAML
state_dir: $TEST_TMP/state_$level
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: $level
    source: { type: postgres, dsn: "$SRC_DSN", slot: odsync_$level, tables: [public.items, public.kv, public.log, public.big] }
    sink: { type: postgres, dsn: "$dsn" }
    consistency: $level
    apply_workers: 4
YAML
  # A first session creates the slot and copies the (empty) tables, then stops.
  odsync_start "$config" "$logf"
  wait_for "grep -q 'consistency $level, 4 sink writers' '$logf'" 60 || fail "$level: odsync does not start streaming"
  odsync_stop
  log "$level: writing the backlog with odsync stopped"
  pg_psql <<'SQL' >/dev/null
DO $$
DECLARE b int;
BEGIN
  FOR b IN 0 .. 59 LOOP
    INSERT INTO items SELECT b * 1000 + g, md5((b * 1000 + g)::text), g, '2026-01-01'::timestamptz + g * interval '1 min'
      FROM generate_series(1, 1000) g;
    COMMIT;
    IF b % 3 = 0 THEN  -- its own transactions: under causal, a transaction that writes a serial
      INSERT INTO log SELECT 'ins', b FROM generate_series(1, 300);  -- table goes to the carrier whole
      COMMIT;
    END IF;
    IF b % 2 = 0 THEN
      INSERT INTO kv SELECT b % 5, 'k' || g, g * 0.5 FROM generate_series(1, 700) g
        ON CONFLICT (tenant, key) DO UPDATE SET val = kv.val + EXCLUDED.val;
      COMMIT;
    END IF;
    IF b = 30 THEN
      INSERT INTO big SELECT g, 'big ' || g FROM generate_series(1, 25000) g;
      COMMIT;
    END IF;
  END LOOP;
  FOR b IN 0 .. 29 LOOP
    UPDATE items SET v = upper(v), n = n + 1 WHERE id > b * 2000 AND id <= b * 2000 + 1000;
    COMMIT;
  END LOOP;
  UPDATE items SET id = id + 10000000 WHERE id % 1000 = 7;  -- key changes of 60 rows
  COMMIT;
  FOR b IN 0 .. 9 LOOP
    DELETE FROM items WHERE id > b * 5000 + 3000 AND id <= b * 5000 + 3500;
    COMMIT;
  END LOOP;
END $$;
SQL
  odsync_start "$config" "$logf"
  local deadline=$(($(date +%s) + 180)) out
  until out=$("$OD_COMPARE_PG" --source "$SRC_DSN" --target "$dsn" "${TABLES[@]}" 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; tail -n 30 "$logf" >&2; fail "$level: target not equal to the source after 180 s"; }
    odsync_running || { tail -n 30 "$logf" >&2; fail "$level: odsync exited during the catch-up"; }
    sleep 1
  done
  echo "$out"
  # the counts of this process (one session since the start) as the admin server reports them
  local m=$TEST_TMP/$level.metrics st=$TEST_TMP/$level.status m_helpers m_carrier s_helpers s_carrier b_helpers b_carrier
  scrape() {
    curl -s --max-time 5 "$ADMIN/metrics" >"$m" || fail "$level: /metrics did not answer"
    m_helpers=$(sed -n "s/^odsync_parallel_changes_total{pipeline=\"$level\",sink=\"default\",writer=\"helpers\"} \([0-9]*\)$/\1/p" "$m")
    m_carrier=$(sed -n "s/^odsync_parallel_changes_total{pipeline=\"$level\",sink=\"default\",writer=\"carrier\"} \([0-9]*\)$/\1/p" "$m")
    [[ -n $m_helpers && -n $m_carrier ]] || { grep parallel "$m" >&2; fail "$level: no odsync_parallel_changes_total series on /metrics"; }
  }
  scrape
  b_helpers=$m_helpers b_carrier=$m_carrier
  # At the head: 20 one-row transactions, one at a time. Each batch is below apply_parallel_min_rows
  # (256 by default) and goes to the carrier whole: one sink commit instead of the helpers' and then
  # the carrier's.
  for i in $(seq 1 20); do
    pg_psql -c "INSERT INTO items VALUES (900000 + $i, 'head', $i, now())" >/dev/null
    sleep 0.05
  done
  wait_for "'$OD_COMPARE_PG' --source '$SRC_DSN' --target '$dsn' ${TABLES[*]} >/dev/null 2>&1" 60 ||
    fail "$level: the 20 transactions at the head did not arrive"
  scrape
  [[ $m_helpers == "$b_helpers" && $m_carrier == $((b_carrier + 20)) ]] ||
    fail "$level: at the head the helpers went $b_helpers -> $m_helpers, the carrier $b_carrier -> $m_carrier (expected the carrier +20 alone)"
  curl -s --max-time 5 "$ADMIN/status" >"$st" || fail "$level: /status did not answer"
  read -r s_helpers s_carrier < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["pipelines"][0]["sinks"][0]
print(s["helper_changes"], s["carrier_changes"])' "$st") || fail "$level: /status has no helper_changes / carrier_changes"
  [[ $s_helpers == "$m_helpers" && $s_carrier == "$m_carrier" ]] ||
    fail "$level: /status says helpers $s_helpers, carrier $s_carrier; /metrics $m_helpers, $m_carrier"
  odsync_stop
  line=$(grep "pipeline $level: sink default: .* changes applied by the 3 helper writers" "$logf" | tail -n 1)
  [[ -n $line ]] || { tail -n 20 "$logf" >&2; fail "$level: no closing line on the helper writers"; }
  helpers=$(sed -n 's/.*: \([0-9]*\) changes applied by the 3 helper writers, \([0-9]*\) by the carrier.*/\1/p' <<<"$line")
  carrier=$(sed -n 's/.*: \([0-9]*\) changes applied by the 3 helper writers, \([0-9]*\) by the carrier.*/\2/p' <<<"$line")
  log "$level: helpers applied $helpers changes, the carrier $carrier"
  [[ $helpers == "$m_helpers" && $carrier == "$m_carrier" ]] ||
    fail "$level: the closing line says helpers $helpers, carrier $carrier; /metrics said $m_helpers, $m_carrier"
  # keyed transactions: 60,000 inserts + 21,000 kv upserts + 30,000 updates + 5,000 deletes; the items
  # changes of the batch that holds the key changes go to the carrier too (at most a batch)
  ((helpers >= 95000)) || fail "$level: the helpers applied only $helpers changes (expected >= 95000)"
  ((carrier >= 25000 + 6000)) || fail "$level: the carrier applied only $carrier changes (expected the big transaction and the keyless rows)"
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$dsn" "${TABLES[@]}" >/dev/null ||
    fail "$level: target differs from the source after SIGTERM"
  pg_psql -c "TRUNCATE items, kv, log, big" >/dev/null
}

run_level causal
run_level eventual
log "all assertions passed"
