#!/usr/bin/env bash
# pg_head_round_trips.sh — at the head, one PostgreSQL sink commit is one round trip: the buffered
# changes of every table (a few new rows each, an update), the checkpoint and COMMIT go out in one
# pipeline with one sync (issue #9, latency at the head). A run of new rows smaller than
# PGS_OPTIMISTIC_MIN_ROWS goes with the upsert instead of its own synced, optimistic INSERT.
#
# Asserts: after 120 small source transactions (an UPDATE of a random account, an INSERT into a
# history table, an INSERT of a marker row; one transaction every 20 ms so that the sink keeps up),
# the sink equals the source row for row (od_compare_pg on the three tables: same keys, values,
# no duplicate, nothing missing); the sink's account at its stop says at most 1.5 round trips per
# commit (before this change: 3 per commit, one sync per table with new rows plus the commit);
# the apply's stage account line is logged with at least 10 batches; a key already on the target
# met by a small run (a row put there by hand) is upserted, not an error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_head_round_trips
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
pg_psql <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, bal bigint NOT NULL);
CREATE TABLE hist (id bigserial PRIMARY KEY, acc int NOT NULL, delta int NOT NULL);
CREATE TABLE mark (id bigint PRIMARY KEY, t timestamptz NOT NULL);
INSERT INTO acc SELECT g, 0 FROM generate_series(1, 100) g;
SQL
TABLES=(--table public.acc --table public.hist --table public.mark)

CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: head
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.acc, public.hist, public.mark] }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

compare() { pg_wait_equal "$1" 180 "${TABLES[@]}"; }

# Session 1: the initial snapshot creates the target tables (DDL and catalog reads stay out of
# the account of session 2).
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_head 60
compare "snapshot"
odsync_stop
# A key the stream will insert, already on the target: the small run's upsert must take it.
dst_psql -c "INSERT INTO mark VALUES (1000005, '2000-01-01 00:00:00+00')" >/dev/null

# Session 2: small transactions at a steady pace.
: >"$TEST_TMP/session2.log"
odsync_start "$CONFIG" "$TEST_TMP/session2.log"
wait_slot_active odsync_head 60
log "120 transactions, one every 20 ms"
pg_psql <<'SQL'
DO $$ DECLARE a int; d int; BEGIN
  FOR i IN 1..120 LOOP
    a := 1 + (i * 37) % 100; d := (i * 7919) % 1000 - 500;
    UPDATE acc SET bal = bal + d WHERE id = a;
    INSERT INTO hist (acc, delta) VALUES (a, d);
    INSERT INTO mark VALUES (1000000 + i, clock_timestamp());
    COMMIT;
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
SQL
compare "120 small transactions"
odsync_stop
cat "$TEST_TMP/session2.log" >>"$LOG"

line=$(grep -o 'round trips over [0-9]* commits ([0-9.]* per commit)' "$TEST_TMP/session2.log" | tail -1 || true)
[[ -n $line ]] || fail "no round-trip account in the sink's stop line: $(grep 'postgres sink' "$TEST_TMP/session2.log" | tail -3)"
read -r commits per <<<"$(sed -E 's/round trips over ([0-9]+) commits \(([0-9.]+) per commit\)/\1 \2/' <<<"$line")"
log "session 2: $line"
((commits >= 10)) || fail "only $commits sink commits for 120 transactions: $line"
awk -v p="$per" 'BEGIN { exit !(p <= 1.5) }' || fail "more than 1.5 round trips per commit at the head: $line"
stages=$(grep -o 'head latency by stage of [0-9]* batches' "$TEST_TMP/session2.log" | tail -1 || true)
[[ -n $stages ]] || fail "no stage account logged at the stop"
(($(awk '{print $6}' <<<"$stages") >= 10)) || fail "stage account over too few batches: $stages"
[[ $(dst_psql -Atc "SELECT count(*) FROM mark WHERE id = 1000005 AND t > '2001-01-01'") == 1 ]] ||
  fail "the pre-existing key 1000005 was not overwritten by the stream's row"
log "all assertions passed"
