# shellcheck shell=bash
# tests/env/pg_stream.sh — streaming of in-progress transactions (pgoutput protocol v2), written once
# and run per sink (source it after common.sh and pg.sh, then call stream_run sqlite|postgres).
#
# The source runs with logical_decoding_work_mem = 64kB, so the walsender streams every transaction
# larger than that while it is in progress; odsync keeps at most STREAM_MEM bytes of them in memory
# (stream_memory_bytes) and spills the rest to <state_dir>/pg_stream/<pipeline>/<xid>.xact.
# Cases, each compared row for row with the source (od_compare / od_compare_pg):
#   1. a large committed transaction (inserts, updates, deletes, a truncate-free mix);
#   2. a large transaction rolled back: nothing of it in the sink;
#   3. a large transaction with savepoints: one rolled back, one released, a released one nested in
#      one rolled back, and a table first touched inside a rolled-back savepoint and touched again
#      after it (its Relation message travels with the aborted subtransaction);
#   4. two large transactions interleaved in time, small ordinary transactions committing between;
#   5. SIGKILL of odsync while a large transaction is being streamed (spill files present), then a
#      restart: the stale files are removed, the sink ends equal (a keyless table: a duplicate row
#      would be a difference) and the slot was never acknowledged past the sink's checkpoint.
# Asserts pg_stat_replication_slots.stream_txns > 0 and stream_count grows in each case.

STREAM_MEM=${STREAM_MEM:-65536}
STREAM_TABLES=(public.big public.small public.late public.bulk)
STREAM_SEEN=(public.small) # compared: the tables with rows so far (a sink creates a table at its first row)

stream_setup_sqlite() {
  [[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
  PG_START_CONF="logical_decoding_work_mem = 64kB" pg_start shop
  SINK_DB=$TEST_TMP/out.db
  SINK_YAML="sink: { type: sqlite, path: $SINK_DB }"
}
stream_checkpoint_sqlite() { checkpoint_lsn shop; }
stream_compare_sqlite() {
  local t args=()
  for t in "${STREAM_SEEN[@]}"; do args+=(--table "$t"); done
  compare "${args[@]}"
}
stream_sink_count_sqlite() { sqlite3 "$SINK_DB" "$1"; }

stream_setup_postgres() {
  OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
  [[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
  pg_start warehouse
  DST_PORT=$PGPORT DST_LOG=$PG_LOG DST_DB=warehouse
  PG_START_CONF="logical_decoding_work_mem = 64kB" pg_start shop
  SRC_DSN="host=127.0.0.1 port=$PGPORT dbname=shop user=postgres"
  DST_DSN="host=127.0.0.1 port=$DST_PORT dbname=warehouse user=postgres"
  SINK_YAML="sink: { type: postgres, dsn: \"$DST_DSN\" }"
}
stream_checkpoint_postgres() {
  dst_psql -c "SELECT (position - '0/0'::pg_lsn)::bigint FROM public._odsync_checkpoint WHERE pipeline = 'shop'" \
    2>/dev/null || true
}
stream_compare_postgres() {
  local t args=()
  for t in "${STREAM_SEEN[@]}"; do args+=(--table "$t"); done
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${args[@]}"
}
stream_sink_count_postgres() { dst_psql -c "$1"; }

stream_stat() { # stream_txns of the slot (0 before the first)
  pg_psql -c "SELECT coalesce((SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'odsync_shop'), 0)"
}

stream_wait_equal() {
  local what=$1 deadline out
  deadline=$(($(date +%s) + 180))
  until out=$("stream_compare_$STREAM_SINK" 2>&1); do
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "$what: sink not equal to the source after 180 s (comparison above)"
    fi
    sleep 1
  done
  echo "$out" | sed "s/^/$what: /"
}

# Streamed case: run the SQL, wait until the sink equals the source, check more transactions were
# streamed than before.
stream_case() {
  local what=$1 sql=$2 before after
  before=$(stream_stat)
  pg_psql <<<"$sql" >/dev/null || fail "$what: psql failed"
  # A marker committed after it: equal then means the stream was read past the case's end.
  pg_psql -c "INSERT INTO small (v) VALUES ('after $what')" >/dev/null
  stream_wait_equal "$what"
  after=$(stream_stat)
  ((after > before)) || fail "$what: the server streamed no transaction (stream_txns $before -> $after)"
  log "$what: equal; stream_txns $before -> $after"
}

stream_check_ack() {
  local what=$1 confirmed cp
  wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_shop'\") == f ]]" 30 ||
    fail "$what: slot still active 30 s after odsync died"
  confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")")
  cp=$("stream_checkpoint_$STREAM_SINK")
  [[ -n "$cp" ]] || fail "$what: no checkpoint in the sink"
  ((confirmed <= cp)) || fail "$what: slot confirmed_flush_lsn $confirmed is ahead of the sink checkpoint $cp"
  log "$what: confirmed_flush $confirmed <= checkpoint $cp"
}

stream_run() {
  STREAM_SINK=$1
  "stream_setup_$STREAM_SINK"
  CONFIG=$TEST_TMP/odsync.yaml
  LOG=$TEST_TMP/odsync.log
  SPILL_DIR=$TEST_TMP/state/pg_stream/shop
  pg_psql <<'SQL'
CREATE TABLE big (id bigint PRIMARY KEY, grp int, note text, amount numeric(12,2));
CREATE TABLE small (id serial PRIMARY KEY, v text);
CREATE TABLE late (id int PRIMARY KEY, v text);
CREATE TABLE bulk (n int, tag text);
ALTER TABLE bulk REPLICA IDENTITY FULL;
SQL
  [[ $(pg_psql -c "SHOW logical_decoding_work_mem") == 64kB ]] || fail "logical_decoding_work_mem is not 64kB"
  local tables
  tables=$(IFS=,; echo "${STREAM_TABLES[*]}")
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [${tables//,/, }], stream_in_progress: on, stream_memory_bytes: $STREAM_MEM }
    $SINK_YAML
YAML
  odsync_start "$CONFIG" "$LOG"
  wait_slot_active odsync_shop 60
  pg_psql -c "INSERT INTO small (v) VALUES ('first')" >/dev/null
  stream_wait_equal "start"

  STREAM_SEEN+=(public.big)
  stream_case "1 large committed" "
BEGIN;
INSERT INTO big SELECT g, 1, 'row ' || g || repeat('x', 40), g * 0.5 FROM generate_series(1, 20000) g;
UPDATE big SET note = note || ' updated' WHERE id % 3 = 0;
DELETE FROM big WHERE id % 10 = 0;
INSERT INTO small (v) SELECT 'in big ' || g FROM generate_series(1, 100) g;
COMMIT;"

  stream_case "2 large rolled back" "
BEGIN;
INSERT INTO big SELECT g, 2, 'aborted ' || g, 0 FROM generate_series(100001, 120000) g;
UPDATE big SET note = 'aborted update' WHERE grp = 1;
DELETE FROM small;
ROLLBACK;"
  [[ $("stream_sink_count_$STREAM_SINK" "SELECT count(*) FROM big WHERE grp = 2 OR note = 'aborted update'") == 0 ]] ||
    fail "2: rows of the rolled-back transaction reached the sink"

  STREAM_SEEN+=(public.late)
  stream_case "3 savepoints" "
BEGIN;
INSERT INTO big SELECT g, 30, 'top ' || g, 1 FROM generate_series(200001, 210000) g;
SAVEPOINT a;
INSERT INTO late VALUES (1, 'first touched in a rolled-back savepoint');
INSERT INTO big SELECT g, 31, 'rolled back ' || g, 1 FROM generate_series(210001, 220000) g;
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
INSERT INTO big SELECT g, 32, 'released ' || g, 1 FROM generate_series(220001, 230000) g;
RELEASE SAVEPOINT b;
SAVEPOINT c;
INSERT INTO big SELECT g, 33, 'rolled back with c ' || g, 1 FROM generate_series(230001, 235000) g;
SAVEPOINT d;
INSERT INTO big SELECT g, 34, 'released into c ' || g, 1 FROM generate_series(235001, 240000) g;
UPDATE big SET note = 'changed in d' WHERE grp = 30 AND id % 2 = 0;
RELEASE SAVEPOINT d;
ROLLBACK TO SAVEPOINT c;
INSERT INTO late VALUES (2, 'touched again after the rollback');
UPDATE big SET note = 'top update' WHERE grp = 30 AND id % 5 = 0;
COMMIT;"
  [[ $("stream_sink_count_$STREAM_SINK" "SELECT count(*) FROM big WHERE grp IN (31, 33, 34) OR note = 'changed in d'") == 0 ]] ||
    fail "3: rows of rolled-back savepoints reached the sink"

  # 4: two large transactions interleaved in time, small ones committing between their blocks.
  local before after p1 p2 i
  before=$(stream_stat)
  pg_psql >/dev/null <<'SQL' &
BEGIN;
INSERT INTO big SELECT g, 40, 'first ' || g, 4 FROM generate_series(300001, 310000) g;
SELECT pg_sleep(2);
INSERT INTO big SELECT g, 40, 'first, later ' || g, 4 FROM generate_series(310001, 320000) g;
SELECT pg_sleep(1);
UPDATE big SET amount = amount + 1 WHERE grp = 40 AND id % 4 = 0;
COMMIT;
SQL
  p1=$!
  pg_psql >/dev/null <<'SQL' &
SELECT pg_sleep(0.5);
BEGIN;
INSERT INTO big SELECT g, 41, 'second ' || g, 5 FROM generate_series(400001, 410000) g;
SELECT pg_sleep(1);
DELETE FROM big WHERE grp = 41 AND id % 7 = 0;
COMMIT;
SQL
  p2=$!
  for i in $(seq 1 20); do
    pg_psql -c "INSERT INTO small (v) VALUES ('between $i')" >/dev/null
    sleep 0.2
  done
  wait "$p1" || fail "4: the first interleaved transaction failed"
  wait "$p2" || fail "4: the second interleaved transaction failed"
  stream_wait_equal "4 interleaved"
  after=$(stream_stat)
  ((after >= before + 2)) || fail "4: expected two more streamed transactions (stream_txns $before -> $after)"
  log "4 interleaved: equal; stream_txns $before -> $after"

  STREAM_SEEN+=(public.bulk)
  # 5: SIGKILL while a large transaction streams (it spilled), restart, no loss, no duplicate.
  before=$(stream_stat)
  pg_psql >/dev/null <<'SQL' &
BEGIN;
INSERT INTO bulk SELECT g, 'bulk ' || g FROM generate_series(1, 60000) g;
SELECT pg_sleep(4);
INSERT INTO bulk SELECT g, 'bulk later ' || g FROM generate_series(1, 20000) g;
COMMIT;
SQL
  p1=$!
  wait_for "compgen -G '$SPILL_DIR/*.xact' >/dev/null" 30 || fail "5: no spill file in $SPILL_DIR while streaming"
  local stale
  stale=$(ls "$SPILL_DIR")
  odsync_kill9
  log "5: killed odsync with $stale in $SPILL_DIR"
  stream_check_ack "5 after the kill"
  [[ -n $(ls "$SPILL_DIR") ]] || fail "5: the killed run left no spill file (the restart check below would prove nothing)"
  wait "$p1" || fail "5: the large transaction failed"
  pg_psql -c "INSERT INTO small (v) VALUES ('after the kill')" >/dev/null
  odsync_start "$CONFIG" "$LOG"
  stream_wait_equal "5 after the restart"
  [[ -z $(ls "$SPILL_DIR") ]] || fail "5: spill files left after the restart and the commit: $(ls "$SPILL_DIR")"
  after=$(stream_stat)
  ((after > before)) || fail "5: no transaction streamed (stream_txns $before -> $after)"
  [[ $("stream_sink_count_$STREAM_SINK" "SELECT count(*) FROM bulk") == 80000 ]] || fail "5: bulk row count in the sink"
  grep_q "stream_in_progress" "$LOG" || true
  odsync_stop
  stream_check_ack "after SIGTERM"
  "stream_compare_$STREAM_SINK" >/dev/null || fail "sink differs from the source after the final stop"
  log "all assertions passed"
}
