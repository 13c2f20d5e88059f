#!/usr/bin/env bash
# mysql_snapshot_resume: an initial snapshot of a MariaDB source, SIGKILLed three times in the middle
# of its copy while a workload writes, resumes each time from the chunks the sink holds — into
# SQLite, then (a second pipeline, same tables) into PostgreSQL.
#
# Tables: big (240,000 rows, INT key, cut into about 2,000-key chunks: over 100 chunks), bag (20,000 rows, no
# key: one chunk), names (VARCHAR key: one chunk). The workload (bounded: 120 transactions) updates,
# inserts below and above the key range, deletes, moves keys between chunks, and writes the keyless
# and the VARCHAR-keyed table, before, across and after the kills.
#
# Asserts, for each sink:
#   - each kill lands while some but not all chunks of big are marked, with no checkpoint and no
#     "snapshot done" mark in the sink; the chunks marked only grow from one kill to the next
#     (a restart never starts from zero);
#   - every restart logs that it resumes the earlier attempt (its stream start kept) and reports
#     D/N chunks of big already done, copying the other N-D;
#   - the run that finishes copies exactly the N-D chunks still missing of big and says how many were done before;
#   - the sink then equals MariaDB row for row (od_compare_my: keys, values, types; keyless tables as
#     multisets, so a duplicate fails), after the workload and after a clean stop;
#   - (SQLite) when the binlog file of the first attempt's start was purged before the restart, the
#     snapshot says so, starts over (every chunk copied again, the old rows emptied) and ends exact.
set -euo pipefail
source "$(dirname "$0")/../env/common.sh"
source "$(dirname "$0")/../env/pg.sh"
source "$(dirname "$0")/../env/mariadb.sh"
test_init mysql_snapshot_resume

OD_COMPARE_MY=${OD_COMPARE_MY:-$ODSYNC_BUILD_DIR/od_compare_my}
[[ -x "$OD_COMPARE_MY" ]] || fail "od_compare_my not built at $OD_COMPARE_MY"

BIG_ROWS=240000
CHUNK=2000

pg_start target
PG_DSN=$(pg_dsn target)
my_start shop

seed() {
  my_sql -e "DROP TABLE IF EXISTS big, bag, names;
    CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT, d DECIMAL(12,3), at DATETIME(3));
    CREATE TABLE bag (k INT, v VARCHAR(40));
    CREATE TABLE names (name VARCHAR(30) PRIMARY KEY, score INT);
    INSERT INTO big SELECT seq, CONCAT('v', seq), seq * 1000, seq / 7, '2024-01-01 00:00:00.125' + INTERVAL seq SECOND
      FROM seq_1_to_$BIG_ROWS;
    INSERT INTO bag SELECT seq % 500, CONCAT('b', seq % 37) FROM seq_1_to_20000;
    INSERT INTO names SELECT CONCAT('n', seq), seq FROM seq_1_to_3000;"
}

workload() {
  local i
  for i in $(seq 1 120); do
    echo "BEGIN;
      UPDATE big SET v = CONCAT(v, '+'), n = n + 1 WHERE id IN ($((i * 7919 % BIG_ROWS + 1)), $((i * 104729 % BIG_ROWS + 1)));
      INSERT INTO big VALUES ($((BIG_ROWS + i)), 'above', $i, $i / 3, NOW(3)), (-$i, 'below', $i, NULL, NULL);
      DELETE FROM big WHERE id = $((i * 15485863 % BIG_ROWS + 1));
      UPDATE big SET id = $((BIG_ROWS + 1000 + i)) WHERE id = $((i * 31337 % BIG_ROWS + 1));
      UPDATE big SET id = -$((1000 + i)) WHERE id = $((BIG_ROWS - i * 977 % 100000));
      INSERT INTO bag VALUES ($i, 'late'), ($i, 'late');
      UPDATE bag SET v = CONCAT(v, '*') WHERE k = $((i % 500)) LIMIT 2;
      DELETE FROM bag WHERE k = $(((i * 13) % 500)) LIMIT 1;
      INSERT INTO names VALUES ('w$i', $i);
      UPDATE names SET score = score + 1 WHERE name = 'n$((i * 17 % 3000 + 1))';
      DELETE FROM names WHERE name = 'n$((i * 29 % 3000 + 1))';
    COMMIT;"
    sleep 0.15
  done | my_sql
  echo "workload: 120 transactions"
}

# The sink under test: SINK_KIND sqlite|postgres; sink_q SQL prints one value from its marks table.
sink_q() {
  if [[ $SINK_KIND == sqlite ]]; then sqlite3 "$SINK_DB" "$1" 2>/dev/null || true
  else psql -X -q -At "$PG_DSN" -c "$1" 2>/dev/null || true; fi
}
mark() { # a position mark's text, or an integer mark as a number (PostgreSQL keeps it as an LSN "X/Y")
  local v
  v=$(sink_q "SELECT coalesce(position_text, CAST(position AS TEXT)) FROM _odsync_checkpoint WHERE pipeline = '$1'")
  if [[ $v =~ ^[0-9A-F]+/[0-9A-F]+$ ]]; then lsn_to_int "$v"; else echo "$v"; fi
}
chunks_marked() { # chunk marks of big whose value is big's generation (A: kept across resumes)
  local n
  n=$(sink_q "SELECT count(*) FROM _odsync_checkpoint c, _odsync_checkpoint g
    WHERE g.pipeline = '$PIPE/snapshot/shop.big/gen' AND c.pipeline LIKE '$PIPE/snapshot/shop.big/%'
      AND c.pipeline NOT LIKE '%/gen' AND c.pipeline NOT LIKE '%/method' AND c.pipeline NOT LIKE '%/n'
      AND c.pipeline NOT LIKE '%/lo' AND c.pipeline NOT LIKE '%/step'
      AND coalesce(c.position_text, CAST(c.position AS TEXT)) = coalesce(g.position_text, CAST(g.position AS TEXT))")
  echo "${n:-0}"
}
compare_my() {
  if [[ $SINK_KIND == sqlite ]]; then "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --sqlite "$SINK_DB" "$@"
  else "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --pg "$PG_DSN" "$@"; fi
}
wait_equal_my() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_my 2>&1); then
      echo "$out"
      return 0
    fi
    odsync_running || fail "[$SINK_KIND] odsync exited; compare said: $out"
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "[$SINK_KIND] sink not equal to MariaDB after ${timeout}s"; }
    sleep 1
  done
}

scenario() {
  SINK_KIND=$1 PIPE=$2
  local config=$TEST_TMP/$PIPE.yml log=$TEST_TMP/$PIPE.log sink
  if [[ $SINK_KIND == sqlite ]]; then SINK_DB=$TEST_TMP/$PIPE.db sink="{ type: sqlite, path: $SINK_DB }"
  else sink="{ type: postgres, dsn: \"$PG_DSN\" }"; fi
  cat >"$config" <<YAML
state_dir: $TEST_TMP/state-$PIPE
pipelines:
  - name: $PIPE
    source:
      type: mysql
      dsn: "$(my_dsn)"
      snapshot_chunk_rows: $CHUNK
    sink: $sink
YAML
  seed
  workload_start workload
  sleep 0.5
  odsync_start "$config" "$log"
  wait_for "[[ -n \"\$(mark $PIPE/snapshot/shop.big/n)\" ]]" 120 || fail "[$SINK_KIND] the snapshot never planned big"
  N_BIG=$(mark "$PIPE/snapshot/shop.big/n")
  ((N_BIG >= 100)) || fail "[$SINK_KIND] big has only $N_BIG chunks"
  local start prev=0 kill d from deadline
  start=$(mark "$PIPE/snapshot/start")
  [[ $start == mysql:* ]] || fail "[$SINK_KIND] no snapshot start mark ($start)"
  for kill in 1 2 3; do
    deadline=$(($(date +%s) + 180))
    while true; do
      d=$(chunks_marked)
      ((d >= prev + 3)) && break
      odsync_running || fail "[$SINK_KIND] odsync exited during the snapshot (run $kill)"
      (($(date +%s) < deadline)) || fail "[$SINK_KIND] no progress on big's chunks in run $kill ($d marked)"
      sleep 0.05
    done
    odsync_kill9
    d=$(chunks_marked)
    log "[$SINK_KIND] kill $kill: $d/$N_BIG chunks of big in the sink"
    ((d > prev && d < N_BIG)) || fail "[$SINK_KIND] kill $kill did not land in the middle of big's copy ($d/$N_BIG)"
    [[ -z "$(mark "$PIPE")" ]] || fail "[$SINK_KIND] the sink holds a checkpoint although the snapshot was not finished"
    [[ -z "$(mark "$PIPE/snapshot")" ]] || fail "[$SINK_KIND] the snapshot is marked done although it was not finished"
    [[ "$(mark "$PIPE/snapshot/start")" == "$start" ]] || fail "[$SINK_KIND] the attempt's start moved"
    prev=$d
    from=$(($(wc -l <"$log") + 1))
    odsync_start "$config" "$log"
    wait_for "tail -n +$from '$log' | grep_q 'snapshot: shop.big: .* chunks already done'" 120 ||
      fail "[$SINK_KIND] restart $kill did not report big's chunks"
    tail -n +"$from" "$log" | grep_q "pipeline $PIPE: resuming the initial snapshot" || fail "[$SINK_KIND] restart $kill did not resume"
    tail -n +"$from" "$log" | grep_q "an earlier attempt streams from .* resuming it" ||
      fail "[$SINK_KIND] restart $kill did not keep the earlier attempt's stream start"
    tail -n +"$from" "$log" | grep_q "snapshot: shop.big: $d/$N_BIG chunks already done; copying the other $((N_BIG - d))" ||
      fail "[$SINK_KIND] restart $kill did not report $d/$N_BIG chunks of big already done"
  done
  wait_for "tail -n +$from '$log' | grep_q 'pipeline $PIPE: initial snapshot done'" 300 ||
    fail "[$SINK_KIND] the resumed snapshot did not finish"
  local last
  last=$(tail -n +"$from" "$log")
  # "1 chunk" when the last kill left one (CI of 2026-12-06 02:44: killed at 120/121).
  echo "$last" | grep_q -E "snapshot: shop\.big: copied $((N_BIG - prev)) chunks? in this run \($prev already done, $N_BIG in all\)" ||
    fail "[$SINK_KIND] the last run did not copy exactly the $((N_BIG - prev)) missing chunks of big"
  echo "$last" | grep -E "initial snapshot done: [0-9,]+ rows in [0-9]+ chunks copied by this run \([1-9][0-9]* done before\)" ||
    fail "[$SINK_KIND] the last run does not say it continued earlier chunks"
  workload_wait
  wait_equal_my 180
  odsync_stop
  compare_my >/dev/null || fail "[$SINK_KIND] sink differs from MariaDB after the stop"
  log "[$SINK_KIND] exact after 3 kills"
}

# The binlog holding the first attempt's start is purged before the restart: the attempt cannot be
# resumed (its stream start is gone), so the snapshot starts over under a new view, emptying what
# the first attempt copied, and still ends exact.
purged() {
  SINK_KIND=sqlite PIPE=purge
  local config=$TEST_TMP/$PIPE.yml log=$TEST_TMP/$PIPE.log d from next
  SINK_DB=$TEST_TMP/$PIPE.db
  sed -e "s/name: pgs/name: $PIPE/" -e "s|sink: .*|sink: { type: sqlite, path: $SINK_DB }|" \
    -e "s|state-pgs|state-$PIPE|" "$TEST_TMP/pgs.yml" >"$config"
  seed
  odsync_start "$config" "$log"
  wait_for "(( \$(chunks_marked) >= 3 ))" 120 || fail "[purge] no chunk copied"
  odsync_kill9
  d=$(chunks_marked)
  N_BIG=$(mark "$PIPE/snapshot/shop.big/n")
  ((d < N_BIG)) || fail "[purge] the kill did not land in the middle of big's copy ($d/$N_BIG)"
  my_sql -e "INSERT INTO big VALUES (-5000, 'before purge', 1, 1, NULL); FLUSH BINARY LOGS;"
  next=$(my_sql -e "SHOW MASTER STATUS" | awk '{ print $1 }')
  # MariaDB skips (with a warning) a binlog file its binlog checkpoint still needs: purge until only
  # the new file is left.
  wait_for "my_sql -e \"PURGE BINARY LOGS TO '$next'\" && [[ \$(my_sql -e 'SHOW BINARY LOGS' | awk '{ print \$1 }') == '$next' ]]" 60 ||
    fail "[purge] the old binlog files could not be purged: $(my_sql -e 'SHOW BINARY LOGS' | tr '\n' ' ')"
  my_sql -e "INSERT INTO big VALUES (-5001, 'after purge', 1, 1, NULL);"
  from=$(($(wc -l <"$log") + 1))
  odsync_start "$config" "$log"
  wait_for "tail -n +$from '$log' | grep_q 'pipeline $PIPE: initial snapshot done'" 300 || fail "[purge] the new snapshot did not finish"
  tail -n +"$from" "$log" | grep_q "but binlog file .* is purged; copying every table again" ||
    fail "[purge] the restart did not say the earlier attempt's binlog is purged"
  tail -n +"$from" "$log" | grep_q "pipeline $PIPE: starting the initial snapshot" || fail "[purge] the restart did not start over"
  tail -n +"$from" "$log" | grep -Eq "snapshot: shop.big: copied [0-9]+ chunks in this run \(0 already done" ||
    fail "[purge] big was not copied whole again"
  my_sql -e "UPDATE big SET v = 'streamed' WHERE id = -5001"
  wait_equal_my 120
  odsync_stop
  log "[purge] started over and exact"
}

scenario sqlite lite
scenario postgres pgs
purged
log "all assertions passed"
