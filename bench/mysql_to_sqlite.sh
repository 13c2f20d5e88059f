#!/usr/bin/env bash
# bench/mysql_to_sqlite.sh — MariaDB → SQLite catch-up throughput of odsync against the reading
# ceiling: the rate at which `mariadb-binlog` reads and prints the same binlog, in the same run.
#
# One throwaway MariaDB (tests/env/mariadb.sh: binlog on, ROW, FULL images, GTIDs), table
# bench_rows (bigint key, int, varchar, datetime(6), decimal(12,2)). odsync first syncs the empty
# table (its checkpoint is then the GTID before the workload) and stops; then BENCH_ROWS inserts
# and BENCH_ROWS updates in BENCH_TXN-row transactions make a backlog. Two readers of that backlog:
#   1. ceiling: mariadb-binlog --read-from-remote-server (as a replica, like odsync) from the
#      binlog position before the workload to the end, rows decoded (--verbose
#      --base64-output=decode-rows) and printed to /dev/null;
#   2. odsync:  `odsync run` from its checkpoint until it holds the last GTID; then the sink is
#      compared with the source (count, sum(a), sum(d)).
# Prints changes/s, the ratio odsync/ceiling (target ≥ 0.75, issue #13), and CPU seconds of each
# process (the reader, and the MariaDB server while it served it).
#
# Environment: BENCH_ROWS (1000000), BENCH_TXN (1000), BENCH_MAX_ROWS (5000: rows per sink
# commit, the pipeline's batch.max_rows; each commit is an fsync), ODSYNC_BIN (build/odsync, build it with
# scripts/build.sh), BENCH_KEEP=1 (keep the temp dirs), BENCH_PERF=FILE (odsync's catch-up under
# `perf record` into FILE, options BENCH_PERF_ARGS, default -g; e.g. "--call-graph dwarf -F 999" for
# call chains through a build without frame pointers; the odsync CPU figure is the profiled process's).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ODSYNC_SOURCE_DIR=$ROOT
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
# shellcheck source=tests/env/common.sh
source "$ROOT/tests/env/common.sh"
# shellcheck source=tests/env/pg.sh
source "$ROOT/tests/env/pg.sh"
# shellcheck source=tests/env/mariadb.sh
source "$ROOT/tests/env/mariadb.sh"

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-5000}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
CHANGES=$((2 * BENCH_ROWS))
[[ -x $ODSYNC_BIN ]] || { echo "odsync not built at $ODSYNC_BIN (scripts/build.sh)" >&2; exit 1; }
BINLOG_TOOL=$(my_bin mariadb-binlog mysqlbinlog)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-mybench.XXXXXX")
ODSYNC_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $ODSYNC_PID ]] && { kill -TERM "$ODSYNC_PID" 2>/dev/null; wait "$ODSYNC_PID" 2>/dev/null || true; }
  my_cleanup_all || true
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
now() { echo "$EPOCHREALTIME"; }
# CPU seconds (user + system) a live process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
server_pid() { # the mariadbd process of this server (not the wrapper that started it as another user)
  local p
  for p in $(pgrep -f -- "--defaults-file=$MY_DIR/my.cnf"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == mariadbd ]] && { echo "$p"; return; }
  done
  echo "cannot find the mariadbd process of $MY_DIR" >&2; return 1
}

my_start bench
SERVER_PID=$(server_pid)
my_sql bench -e "CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, a INT, b VARCHAR(64),
                   c DATETIME(6), d DECIMAL(12,2))"
SINK_DB=$TMP/sink.db
cat >"$TMP/bench.yml" <<YAML
state_dir: $TMP/state
log_level: warn
pipelines:
  - name: bench
    source: { type: mysql, dsn: "$(my_dsn)", server_id: 4242, tables: [bench.bench_rows] }
    sink: { type: sqlite, path: $SINK_DB }
    batch: { max_rows: $BENCH_MAX_ROWS }
YAML

sink_seq() { # the GTID sequence number of the sink's checkpoint (0 when none)
  local v
  v=$(sqlite3 -cmd ".timeout 2000" "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'bench'" \
      2>/dev/null || true)
  [[ $v =~ ^(mysql:)?[0-9]+-[0-9]+-([0-9]+) ]] && echo "${BASH_REMATCH[2]}" || echo 0
}

log "odsync: initial sync of the empty table, then stop (its checkpoint precedes the workload)"
"$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$TMP/odsync-first.log" 2>&1 &
ODSYNC_PID=$!
my_sql bench -e "INSERT INTO bench_rows VALUES (0, 0, 'first', '2024-01-01', 0)"
FIRST_SEQ=$(my_sql -e "SELECT @@gtid_binlog_pos" | awk -F- '{ print $3 }')
for _ in $(seq 1 600); do (( $(sink_seq) >= FIRST_SEQ )) && break; sleep 0.1; done
(( $(sink_seq) >= FIRST_SEQ )) || { tail -n 20 "$TMP/odsync-first.log" >&2; echo "odsync did not start" >&2; exit 1; }
kill -TERM "$ODSYNC_PID"; wait "$ODSYNC_PID" || true; ODSYNC_PID=

read -r START_FILE START_POS < <(my_sql -e "SHOW MASTER STATUS" | awk '{ print $1, $2 }')
log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions (binlog from $START_FILE:$START_POS)"
my_sql bench <<SQL
SET SESSION sql_log_bin = 1;
DELIMITER //
CREATE PROCEDURE bench_load(n BIGINT, txn BIGINT)
BEGIN
  DECLARE lo BIGINT DEFAULT 1;
  WHILE lo <= n DO
    START TRANSACTION;
    INSERT INTO bench_rows SELECT seq, seq % 1000003, md5(seq), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
                                  (seq % 10000000) / 100 FROM seq_1_to_1000000000 WHERE seq BETWEEN lo AND LEAST(lo + txn - 1, n);
    COMMIT;
    SET lo = lo + txn;
  END WHILE;
  SET lo = 1;
  WHILE lo <= n DO
    START TRANSACTION;
    UPDATE bench_rows SET a = a + 1, b = upper(b), c = c + INTERVAL 1 DAY, d = d + 1 WHERE id BETWEEN lo AND LEAST(lo + txn - 1, n);
    COMMIT;
    SET lo = lo + txn;
  END WHILE;
END //
DELIMITER ;
CALL bench_load($BENCH_ROWS, $BENCH_TXN);
SQL
LAST_SEQ=$(my_sql -e "SELECT @@gtid_binlog_pos" | awk -F- '{ print $3 }')
log "workload done: last GTID sequence $LAST_SEQ"

log "ceiling: $(basename "$BINLOG_TOOL") --read-from-remote-server --verbose --base64-output=decode-rows → /dev/null"
S0=$(cpu_of "$SERVER_PID")
T0=$(now)
/usr/bin/time -f '%U %S' -o "$TMP/binlog.time" "$BINLOG_TOOL" --read-from-remote-server --host=127.0.0.1 \
  --port="$MY_PORT" --user=odsync --password=odsync-pw --start-position="$START_POS" --to-last-log \
  --verbose --base64-output=decode-rows "$START_FILE" | grep -c '^### \(INSERT\|UPDATE\)' >"$TMP/binlog.rows"
T1=$(now)
# It must have decoded every row (the work counted is the work done).
[[ $(cat "$TMP/binlog.rows") == "$CHANGES" ]] || { echo "mariadb-binlog printed $(cat "$TMP/binlog.rows") row events, expected $CHANGES" >&2; exit 1; }
S1=$(cpu_of "$SERVER_PID")
read -r u s <"$TMP/binlog.time"
CEIL_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')
CEIL_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
CEIL_SRV=$(awk -v a="$S0" -v b="$S1" 'BEGIN { printf "%.2f", b - a }')

log "odsync: catch up from its checkpoint"
S0=$(cpu_of "$SERVER_PID")
T0=$(now)
if [[ -n ${BENCH_PERF:-} ]]; then # profile the catch-up: perf report -i $BENCH_PERF
  # shellcheck disable=SC2086 # BENCH_PERF_ARGS is a list of perf options
  perf record -q ${BENCH_PERF_ARGS:--g} -o "$BENCH_PERF" -- "$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress \
    >"$TMP/odsync.log" 2>&1 &
else
  "$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$TMP/odsync.log" 2>&1 &
fi
ODSYNC_PID=$!
OD_PROC=$ODSYNC_PID # the odsync process itself (under perf: perf's child), whose CPU is measured
if [[ -n ${BENCH_PERF:-} ]]; then
  for _ in $(seq 1 100); do
    OD_PROC=$(pgrep -P "$ODSYNC_PID" -x odsync || true)
    [[ -n $OD_PROC ]] && break
    sleep 0.02
  done
  [[ -n $OD_PROC ]] || { echo "cannot find odsync under perf" >&2; exit 1; }
fi
while (( $(sink_seq) < LAST_SEQ )); do
  kill -0 "$ODSYNC_PID" 2>/dev/null || { tail -n 20 "$TMP/odsync.log" >&2; echo "odsync exited" >&2; exit 1; }
  sleep 0.05
done
T1=$(now)
OD_CPU=$(cpu_of "$OD_PROC")
# CPU seconds per odsync thread (name: seconds), to tell the reader's share from the sink's.
OD_THREADS=$(for t in /proc/"$OD_PROC"/task/*; do
  awk -v t="$(getconf CLK_TCK)" -v c="$(cat "$t/comm")" '{ s = ($14 + $15) / t; if (s >= 0.01) printf "%s %.2f, ", c, s }' "$t/stat"
done)
OD_RSS=$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$OD_PROC/status")
S1=$(cpu_of "$SERVER_PID")
kill -TERM "$ODSYNC_PID"; wait "$ODSYNC_PID" || true; ODSYNC_PID=
OD_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')
OD_SRV=$(awk -v a="$S0" -v b="$S1" 'BEGIN { printf "%.2f", b - a }')

want=$(my_sql bench -e "SELECT CONCAT(COUNT(*), ':', SUM(a), ':', SUM(d)) FROM bench_rows")
got=$(sqlite3 "$SINK_DB" "SELECT count(*) || ':' || sum(a) || ':' || printf('%.2f', sum(d)) FROM \"bench.bench_rows\"")
[[ $got == "$want" ]] || { echo "the sink holds $got (count:sum(a):sum(d)), the source $want" >&2; exit 1; }

printf '\nMariaDB → SQLite, %d changes (%d inserts + %d updates, %d-row transactions), same binlog\n' \
  "$CHANGES" "$BENCH_ROWS" "$BENCH_ROWS" "$BENCH_TXN"
printf '%-30s %8s %12s %14s %16s\n' reader seconds changes/s "reader CPU s" "server CPU s"
rate() { awk -v c="$CHANGES" -v s="$1" 'BEGIN { printf "%.0f", c / s }'; }
printf '%-30s %8s %12s %14s %16s\n' "mariadb-binlog -v (ceiling)" "$CEIL_S" "$(rate "$CEIL_S")" "$CEIL_CPU" "$CEIL_SRV"
printf '%-30s %8s %12s %14s %16s\n' "odsync → SQLite" "$OD_S" "$(rate "$OD_S")" "$OD_CPU" "$OD_SRV"
printf 'CPU µs per change: mariadb-binlog %s, odsync %s\n' \
  "$(awk -v c="$CEIL_CPU" -v n="$CHANGES" 'BEGIN { printf "%.2f", c * 1e6 / n }')" \
  "$(awk -v c="$OD_CPU" -v n="$CHANGES" 'BEGIN { printf "%.2f", c * 1e6 / n }')"
printf 'odsync threads (CPU s): %s\n' "${OD_THREADS%, }"
printf 'odsync / ceiling: %s   odsync CPU µs per change: %s   odsync peak RSS: %s MB   sink equals source (%s)\n' \
  "$(awk -v a="$CEIL_S" -v b="$OD_S" 'BEGIN { printf "%.2f", a / b }')" \
  "$(awk -v c="$OD_CPU" -v n="$CHANGES" 'BEGIN { printf "%.2f", c * 1e6 / n }')" "$OD_RSS" "$got"
