#!/usr/bin/env bash
# tests/chaos/poison.sh — poison rows under pgbench load, into both sinks at once (one pipeline fans
# out to SQLite and PostgreSQL), with on_poison: dead_letter.
#
# Injected: a CHECK constraint on pgbench_history in both sinks (delta % 211 <> 0) that some of the
# rows pgbench writes violate (keyless, insert-only: every row counts), while pgbench runs; odsync is
# SIGKILLed and restarted 3 times during the load. Counted: the source rows that violate it (the
# scenario fails when there are none).
# Verified: each sink's dead letters are exactly those rows (the multiset of their aid and delta),
# none twice; every other row arrived (pgbench_accounts, _branches, _tellers equal row for row;
# pgbench_history equal on the rows that pass, its count exactly the source's minus the dead
# letters); after the constraint is dropped, `odsync dlq replay --all` makes both sinks equal to the
# source row for row, pgbench_history's count exact.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/poison.sh"

test_init chaos_poison
LOAD_SECONDS=${LOAD_SECONDS:-30}
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE" && -x "$OD_COMPARE_PG" ]] || fail "od_compare / od_compare_pg not built"
command -v pgbench >/dev/null || PATH=$(pg_bindir):$PATH
command -v pgbench >/dev/null || fail "pgbench not found"

pg_start_pair bench warehouse
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
TABLES=(public.pgbench_accounts public.pgbench_branches public.pgbench_tellers public.pgbench_history)
POISON="delta % 211 = 0"

pgbench -i -s 1 -q bench >/dev/null 2>&1 || fail "pgbench -i failed"
pg_psql -c "INSERT INTO pgbench_history VALUES (1, 1, 1, 1, now(), NULL)" # the sinks create the table now
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: bench
    on_poison: dead_letter
    poison_attempts: 2
    source: { type: postgres, dsn: "$SRC_DSN", tables: [$(IFS=,; echo "${TABLES[*]}")] }
    sinks:
      - { name: lite, type: sqlite, path: $SINK_DB }
      - { name: pg, type: postgres, dsn: "$DST_DSN" }
YAML

targs() { local t; for t in "$@"; do printf -- '--table\n%s\n' "$t"; done; }
cmp_lite() { local a; mapfile -t a < <(targs "$@"); "$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$SINK_DB" "${a[@]}"; }
cmp_pg() { local a; mapfile -t a < <(targs "$@"); "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${a[@]}"; }
lite() { sqlite3 -batch "$SINK_DB" "$@"; }

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_bench 60
wait_for "cmp_lite ${TABLES[*]} && cmp_pg ${TABLES[*]}" 180 || fail "the initial snapshot did not reach both sinks"
odsync_stop
log "snapshot in both sinks"

# ---- inject: the sinks refuse some history rows; pgbench load; SIGKILLs -----------------------
SINK_KIND=sqlite sqlite_check pgbench_history "NOT ($POISON)"
dst_psql -c "ALTER TABLE public.pgbench_history ADD CONSTRAINT od_poison CHECK (NOT ($POISON)) NOT VALID"
log "injected: CHECK (NOT ($POISON)) on pgbench_history in the SQLite and the PostgreSQL sink"
odsync_start "$CONFIG" "$LOG"
workload_start pgbench -n -c 2 -j 2 -T "$LOAD_SECONDS" -R 150 bench
kills=0
load_start=$SECONDS
for at in 6 13 21; do
  while ((SECONDS - load_start < at)) && kill -0 "$WORKLOAD_PID" 2>/dev/null; do sleep 0.5; done
  sleep "0.$((RANDOM % 9 + 1))"
  odsync_kill9
  kills=$((kills + 1))
  odsync_start "$CONFIG" "$LOG"
done
workload_wait >"$TEST_TMP/pgbench.out"
grep -E "^number of transactions actually processed|^tps" "$TEST_TMP/pgbench.out" || true
injected=$(pg_psql -c "SELECT count(*) FROM pgbench_history WHERE $POISON")
total=$(pg_psql -c "SELECT count(*) FROM pgbench_history")
log "injected: $injected of $total pgbench_history rows violate the sinks' CHECK; odsync SIGKILLed $kills times"
((injected > 0)) || fail "injected nothing: no pgbench_history row violates the CHECK"
((kills >= 3)) || fail "only $kills SIGKILLs"

# ---- verify: exactly the poison rows are dead letters, the rest arrived -------------------------
want=$(pg_psql -c "SELECT aid || '|' || delta FROM pgbench_history WHERE $POISON" | sort)
want_rest=$(pg_psql -c "SELECT tid || '|' || bid || '|' || aid || '|' || delta FROM pgbench_history WHERE NOT ($POISON)" | sort)
dl_lite() { lite "SELECT json_extract(change, '\$.key.aid') || '|' || json_extract(change, '\$.key.delta') FROM _odsync_dead_letters WHERE pipeline = 'bench.lite'" 2>/dev/null | sort; }
dl_pg() { dst_psql -c "SELECT (change->'key'->>'aid') || '|' || (change->'key'->>'delta') FROM public._odsync_dead_letters WHERE pipeline = 'bench.pg'" 2>/dev/null | sort; }
rest_lite() { lite "SELECT tid || '|' || bid || '|' || aid || '|' || delta FROM pgbench_history" | sort; }
rest_pg() { dst_psql -c "SELECT tid || '|' || bid || '|' || aid || '|' || delta FROM public.pgbench_history" | sort; }
settled() {
  [[ "$(dl_lite)" == "$want" && "$(dl_pg)" == "$want" && "$(rest_lite)" == "$want_rest" && "$(rest_pg)" == "$want_rest" ]] &&
    cmp_lite public.pgbench_accounts public.pgbench_branches public.pgbench_tellers >/dev/null &&
    cmp_pg public.pgbench_accounts public.pgbench_branches public.pgbench_tellers >/dev/null
}
if ! wait_for settled 180; then
  diff <(echo "$want") <(dl_lite) | head >&2 || true
  diff <(echo "$want") <(dl_pg) | head >&2 || true
  echo "history rows: lite $(rest_lite | wc -l), pg $(rest_pg | wc -l), source $(echo "$want_rest" | wc -l)" >&2
  fail "the sinks did not settle on exactly the poison rows as dead letters and every other row"
fi
odsync_running || fail "odsync exited"
log "verified: both sinks hold exactly the $injected poison rows as dead letters (none twice), every other row equal; pgbench_history: $(rest_lite | wc -l) = $total - $injected rows in each sink"

# IDs are per sink: an ID alone is refused with two sinks, and names one dead letter with --sink.
out=$("$ODSYNC_BIN" dlq show 1 -c "$CONFIG" 2>&1) && fail "dlq show 1 with two sinks should be refused: $out"
grep -q "IDs are per sink" <<<"$out" || fail "dlq show 1: unexpected refusal: $out"
out=$("$ODSYNC_BIN" dlq show 1 -c "$CONFIG" --sink pg) || fail "dlq show 1 --sink pg failed: $out"
grep -q '^pipeline: *bench.pg$' <<<"$out" || fail "dlq show 1 --sink pg shows another sink's dead letter: $out"

# ---- fix, replay, exact ------------------------------------------------------------------------
odsync_stop
SINK_KIND=sqlite sqlite_check pgbench_history ""
dst_psql -c "ALTER TABLE public.pgbench_history DROP CONSTRAINT od_poison"
out=$("$ODSYNC_BIN" dlq replay --all -c "$CONFIG" 2>&1) || fail "dlq replay --all failed: $out"
log "fixed the constraint; $(tail -1 <<<"$out")"
[[ $(lite "SELECT count(*) FROM _odsync_dead_letters") -eq 0 ]] || fail "SQLite sink: dead letters left"
[[ $(dst_psql -c "SELECT count(*) FROM public._odsync_dead_letters") -eq 0 ]] || fail "PostgreSQL sink: dead letters left"
cmp_lite "${TABLES[@]}" || fail "SQLite sink not equal to the source after replay"
cmp_pg "${TABLES[@]}" || fail "PostgreSQL sink not equal to the source after replay"
[[ $(lite "SELECT count(*) FROM pgbench_history") -eq $total && \
   $(dst_psql -c "SELECT count(*) FROM public.pgbench_history") -eq $total ]] || fail "pgbench_history count not exact"
log "verified: after replay both sinks equal the source row for row; pgbench_history $total rows in each"
