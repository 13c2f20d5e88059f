#!/usr/bin/env bash
# bench/mysql_instructions.sh — MariaDB → SQLite cost in instructions (valgrind's callgrind), for
# `mariadb-binlog` (the reading ceiling of bench/mysql_to_sqlite.sh) and one or two odsync builds,
# all on the same binlog in the same run: on a machine shared with other work, wall-clock ratios
# measure the neighbours; instruction counts repeat.
#
#   bench/mysql_instructions.sh NEW_BIN [BASE_BIN]
#
# One throwaway MariaDB (tests/env/mariadb.sh), table bench_rows (bigint key, int, varchar,
# datetime(6), decimal(12,2)) as in bench/mysql_to_sqlite.sh. Each build syncs the empty table into
# its own SQLite file first (its checkpoint precedes the workload), then BENCH_ROWS inserts and
# BENCH_ROWS updates in BENCH_TXN-row transactions. Then, under callgrind: mariadb-binlog
# --read-from-remote-server --verbose --base64-output=decode-rows from the workload's first position to
# the end (it must print one row event per change), and each build's `odsync run` until its
# checkpoint holds the last GTID, SIGTERM (every thread's instructions, start-up and shutdown
# included). Each sink is compared with the source (count, sum(a), sum(d)).
# Prints instructions per change of each, and mariadb-binlog / odsync (the instruction ratio).
#
# Environment: BENCH_ROWS (50000), BENCH_TXN (1000), BENCH_MAX_ROWS (5000), BENCH_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ODSYNC_SOURCE_DIR=$ROOT
# shellcheck source=tests/env/common.sh
source "$ROOT/tests/env/common.sh"
# shellcheck source=tests/env/pg.sh
source "$ROOT/tests/env/pg.sh"
# shellcheck source=tests/env/mariadb.sh
source "$ROOT/tests/env/mariadb.sh"

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: bench/mysql_instructions.sh NEW_BIN [BASE_BIN]" >&2; exit 2; }
BINS=("$1")
NAMES=(new)
if [[ $# -eq 2 ]]; then BINS+=("$2"); NAMES+=(base); fi
for b in "${BINS[@]}"; do [[ -x $b ]] || { echo "$b is not an executable" >&2; exit 2; }; done
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 2; }
BENCH_ROWS=${BENCH_ROWS:-50000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-5000}
CHANGES=$((2 * BENCH_ROWS))
BINLOG_TOOL=$(my_bin mariadb-binlog mysqlbinlog)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-myinstr.XXXXXX")
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
# Instructions in a callgrind output file (its "totals:" or "summary:" line).
instructions() { awk '/^(totals|summary):/ { print $2; exit }' "$1"; }

my_start bench
my_sql bench -e "CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, a INT, b VARCHAR(64), c DATETIME(6), d DECIMAL(12,2))"

config() { # config NAME
  cat >"$TMP/$1.yml" <<YAML
state_dir: $TMP/state-$1
log_level: warn
pipelines:
  - name: bench
    source: { type: mysql, dsn: "$(my_dsn)", server_id: $((4242 + ${#1})), tables: [bench.bench_rows] }
    sink: { type: sqlite, path: $TMP/$1.db }
    batch: { max_rows: $BENCH_MAX_ROWS }
YAML
}
sink_seq() { # sink_seq NAME: the GTID sequence number of that sink's checkpoint (0 when none)
  local v
  v=$(sqlite3 -cmd ".timeout 2000" "$TMP/$1.db" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'bench'" \
      2>/dev/null || true)
  [[ $v =~ ^(mysql:)?[0-9]+-[0-9]+-([0-9]+) ]] && echo "${BASH_REMATCH[2]}" || echo 0
}
# run_until NAME BIN SEQ [PREFIX...]: odsync into NAME's sink until its checkpoint holds SEQ, SIGTERM.
run_until() {
  local name=$1 bin=$2 seq=$3
  shift 3
  "$@" "$bin" run -c "$TMP/$name.yml" --no-progress >>"$TMP/$name.log" 2>&1 &
  ODSYNC_PID=$!
  while (( $(sink_seq "$name") < seq )); do
    kill -0 "$ODSYNC_PID" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; echo "odsync ($name) exited" >&2; exit 1; }
    sleep 0.1
  done
  kill -TERM "$ODSYNC_PID"; wait "$ODSYNC_PID" || true; ODSYNC_PID=
}

my_sql bench -e "INSERT INTO bench_rows VALUES (0, 0, 'first', '2024-01-01', 0)"
FIRST_SEQ=$(my_sql -e "SELECT @@gtid_binlog_pos" | awk -F- '{ print $3 }')
for i in "${!BINS[@]}"; do
  config "${NAMES[$i]}"
  log "${NAMES[$i]}: initial sync of the first row (the checkpoint precedes the workload)"
  run_until "${NAMES[$i]}" "${BINS[$i]}" "$FIRST_SEQ"
done

read -r START_FILE START_POS < <(my_sql -e "SHOW MASTER STATUS" | awk '{ print $1, $2 }')
log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions"
my_sql bench <<SQL
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

log "mariadb-binlog under callgrind"
valgrind -q --tool=callgrind --callgrind-out-file="$TMP/cg.binlog" "$BINLOG_TOOL" --read-from-remote-server \
  --host=127.0.0.1 --port="$MY_PORT" --user=odsync --password=odsync-pw --start-position="$START_POS" --to-last-log \
  --verbose --base64-output=decode-rows "$START_FILE" | grep -c '^### \(INSERT\|UPDATE\)' >"$TMP/binlog.rows" || true
[[ $(cat "$TMP/binlog.rows") == "$CHANGES" ]] ||
  { echo "mariadb-binlog printed $(cat "$TMP/binlog.rows") row events, expected $CHANGES" >&2; exit 1; }
CEIL_I=$(instructions "$TMP/cg.binlog")

want=$(my_sql bench -e "SELECT CONCAT(COUNT(*), ':', SUM(a), ':', SUM(d)) FROM bench_rows")
declare -a OD_I
for i in "${!BINS[@]}"; do
  n=${NAMES[$i]}
  log "$n: odsync under callgrind"
  run_until "$n" "${BINS[$i]}" "$LAST_SEQ" valgrind -q --tool=callgrind --callgrind-out-file="$TMP/cg.$n"
  OD_I[$i]=$(instructions "$TMP/cg.$n")
  got=$(sqlite3 "$TMP/$n.db" "SELECT count(*) || ':' || sum(a) || ':' || printf('%.2f', sum(d)) FROM \"bench.bench_rows\"")
  [[ $got == "$want" ]] || { echo "$n: the sink holds $got (count:sum(a):sum(d)), the source $want" >&2; exit 1; }
done

printf '\nMariaDB → SQLite, %d changes (%d inserts + %d updates, %d-row transactions), instructions (callgrind)\n' \
  "$CHANGES" "$BENCH_ROWS" "$BENCH_ROWS" "$BENCH_TXN"
per() { awk -v i="$1" -v n="$CHANGES" 'BEGIN { printf "%.0f", i / n }'; }
printf '%-30s %16s %14s\n' reader instructions "per change"
printf '%-30s %16s %14s\n' "mariadb-binlog -v (ceiling)" "$CEIL_I" "$(per "$CEIL_I")"
for i in "${!BINS[@]}"; do
  printf '%-30s %16s %14s   ceiling/odsync %s\n' "odsync ${NAMES[$i]}" "${OD_I[$i]}" "$(per "${OD_I[$i]}")" \
    "$(awk -v a="$CEIL_I" -v b="${OD_I[$i]}" 'BEGIN { printf "%.2f", a / b }')"
done
if [[ ${#BINS[@]} -eq 2 ]]; then
  printf 'new / base: %s\n' "$(awk -v a="${OD_I[0]}" -v b="${OD_I[1]}" 'BEGIN { printf "%.4f", a / b }')"
fi
