#!/usr/bin/env bash
# snapshot_resume.sh — an initial snapshot interrupted by SIGKILL continues from its last completed
# chunk, and the result is still exact.
#
# Same tables as snapshot_initial.sh (big: 1,000,000 rows, integer key; kl: 200,000 keyless rows,
# REPLICA IDENTITY FULL; docs: TOASTed, text key), 3 workers, 10,000-row chunks (about 100 chunks
# for big), a workload writing to all three tables across the kill and the restart.
#
# Asserts:
#   - odsync is killed while some but not all of big's chunks are marked in the sink;
#   - while the snapshot was running nothing was acknowledged: the slot's confirmed_flush_lsn is
#     still its creation point, and the sink holds no checkpoint and no "snapshot done" mark;
#   - the restart copies exactly the chunks of big that were not marked (its log: D/N chunks
#     already done, N-D copied by this run), under a new view taken from a temporary slot;
#   - kl (keyless), when its copy was not complete, is emptied and copied whole again under that
#     view (the reader drops its older changes), so it holds no duplicates;
#   - the sink equals the source exactly (od_compare: keyless tables compared as multisets).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init snapshot_resume
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
SLOT=odsync_snap


pg_psql <<'SQL'
CREATE TABLE big (id bigint PRIMARY KEY, v text, n int, at timestamptz);
INSERT INTO big SELECT g, md5(g::text), g % 1000, '2024-01-01'::timestamptz + g * interval '1 s'
FROM generate_series(1, 1000000) g;
CREATE TABLE kl (a int, b text, c numeric(10,2));
ALTER TABLE kl REPLICA IDENTITY FULL;
INSERT INTO kl SELECT g % 5000, 'row ' || (g % 50000), g % 7 FROM generate_series(1, 200000) g;
CREATE TABLE docs (id text PRIMARY KEY, title text, body text);
INSERT INTO docs SELECT 'doc' || d, 'title ' || d,
  (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 1250) g) FROM generate_series(1, 40) d;
ANALYZE;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: snap
    source: { type: postgres, dsn: "$(pg_dsn)", snapshot_workers: 3, snapshot_chunk_rows: 10000 }
    sink: { type: sqlite, path: $SINK_DB }
YAML

workload() {
  local it=0 end=$((SECONDS + ${WORKLOAD_SECONDS:-20}))
  while ((SECONDS < end)); do
    it=$((it + 1))
    pg_psql >/dev/null <<SQL || { echo "workload: psql failed in iteration $it"; return 1; }
UPDATE big SET v = 'upd $it', n = n + 1 WHERE id IN ($((it * 7919 % 1000000 + 1)), $((it * 104729 % 1000000 + 1)));
DELETE FROM big WHERE id = $((it * 15485863 % 1000000 + 1));
INSERT INTO big VALUES (1000000 + $it, 'new $it', $it, now()), (-$it, 'below $it', $it, NULL);
UPDATE big SET id = id + 5000000 WHERE id = $((it * 31337 % 1000000 + 1));
INSERT INTO kl VALUES ($it % 5000, 'row 1', 1.5), ($it % 5000, 'row 1', 1.5);
UPDATE kl SET c = c + 100 WHERE ctid = (SELECT min(ctid) FROM kl WHERE a = $((it % 5000)));
DELETE FROM kl WHERE ctid = (SELECT max(ctid) FROM kl WHERE a = $(((it * 13) % 5000)));
UPDATE docs SET title = 'title v$it' WHERE id = 'doc$((it % 40 + 1))';
UPDATE docs SET body = md5('$it') || body WHERE id = 'doc$((it * 7 % 40 + 1))';
SQL
    sleep 0.1
  done
  echo "workload: $it iterations"
}

# A mark's value as a decimal: position marks hold "pg:X/Y" (position_text), integer marks a number.
mark() {
  local v
  v=$(sqlite3 "$SINK_DB" "SELECT coalesce(position_text, position) FROM _odsync_checkpoint WHERE pipeline = '$1'" 2>/dev/null) || true
  if [[ $v == pg:* ]]; then lsn_to_int "${v#pg:}"; else echo "$v"; fi
}
chunks_marked() { # chunk marks of a table whose value is the table's generation
  sqlite3 "$SINK_DB" "SELECT count(*) FROM _odsync_checkpoint WHERE pipeline GLOB 'snap/snapshot/$1/[0-9]*'
    AND coalesce(position_text, position) = (SELECT coalesce(position_text, position) FROM _odsync_checkpoint WHERE pipeline = 'snap/snapshot/$1/gen')" 2>/dev/null || echo 0
}

odsync_start "$CONFIG" "$LOG"
workload_start workload

# Kill in the middle of big's copy.
wait_for "[[ -n \$(mark snap/snapshot/public.big/n) ]]" 60 || fail "the snapshot never planned big"
N_BIG=$(mark snap/snapshot/public.big/n)
((N_BIG >= 60)) || fail "big has only $N_BIG chunks"
deadline=$(($(date +%s) + 60))
while true; do
  d=$(chunks_marked public.big)
  ((d >= 5)) && break
  odsync_running || fail "odsync exited during the snapshot"
  (($(date +%s) < deadline)) || fail "no progress on big's chunks"
  sleep 0.05
done
odsync_kill9
D_BIG=$(chunks_marked public.big)
D_KL=$(chunks_marked public.kl)
N_KL=$(mark snap/snapshot/public.kl/n)
log "killed with $D_BIG/$N_BIG chunks of big and $D_KL/${N_KL:-?} of kl in the sink"
((D_BIG >= 5 && D_BIG < N_BIG)) || fail "the kill did not land in the middle of big's copy ($D_BIG/$N_BIG)"
[[ -z "$(mark snap)" ]] || fail "the sink holds a checkpoint although the snapshot was not finished"
[[ -z "$(mark snap/snapshot)" ]] || fail "the snapshot is marked done although it was not finished"

created=$(sed -n 's/.*created replication slot odsync_snap at \([0-9A-F/]*\) exporting.*/\1/p' "$LOG")
[[ -n "$created" ]] || fail "no slot creation in the log"
wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'\") == f ]]" 30 ||
  fail "slot still active after the kill"
confirmed=$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")
[[ "$confirmed" == "$created" ]] || fail "the slot was acknowledged during the snapshot ($created -> $confirmed)"
[[ "$(mark snap/snapshot/start)" == "$(lsn_to_int "$created")" ]] || fail "snapshot start mark is not the slot's point"

log "restarting"
RUN2_FROM=$(wc -l <"$LOG")
odsync_start "$CONFIG" "$LOG"
wait_for "tail -n +$RUN2_FROM '$LOG' | grep_q 'pipeline snap: initial snapshot done'" 120 ||
  fail "the resumed snapshot did not finish within 120 s"
RUN2=$(tail -n +"$RUN2_FROM" "$LOG")
echo "$RUN2" | grep_q "pipeline snap: resuming the initial snapshot" || fail "run 2 did not resume"
echo "$RUN2" | grep_q "temporary slot .* exports snapshot" || fail "run 2 did not take its view from a temporary slot"
echo "$RUN2" | grep_q "snapshot: public.big: $D_BIG/$N_BIG chunks already done; copying the other $((N_BIG - D_BIG))" ||
  fail "run 2 did not report $D_BIG/$N_BIG chunks of big already done"
echo "$RUN2" | grep_q -E "snapshot: public\.big: copied $((N_BIG - D_BIG)) chunks? in this run \($D_BIG already done, $N_BIG in all\)" ||
  fail "run 2 did not copy exactly the $((N_BIG - D_BIG)) missing chunks of big"
if [[ -n "$N_KL" && "$D_KL" -lt "$N_KL" ]]; then
  echo "$RUN2" | grep_q "snapshot: public.kl: $D_KL/$N_KL chunks were done, but .* emptying it and copying it again" ||
    fail "run 2 did not recopy the unfinished keyless table kl"
fi
echo "$RUN2" | grep_q -E "snapshot: public.kl: copied [0-9]+ chunks? in this run \(0 already done" ||
  echo "$RUN2" | grep_q "snapshot: public.kl: all .* chunks already done" || fail "kl was neither copied nor complete"
skip_kl=$(mark snap/skip/public.kl)
[[ -z "$N_KL" || "$D_KL" -eq "$N_KL" || -n "$skip_kl" ]] || fail "the recopied kl has no skip mark"

log "waiting for the workload and the catch-up"
workload_wait
# A last transaction after the workload: the sink holds it while odsync runs, so it has caught up
# (commit order); the row-for-row comparison follows the stop, once.
pg_psql -c "UPDATE docs SET title = 'after the workload' WHERE id = 'doc1'" >/dev/null
wait_for "[[ \$(sqlite3 '$SINK_DB' \"SELECT title FROM docs WHERE id = 'doc1'\") == 'after the workload' ]]" 120 ||
  fail "the sink did not catch up within 120 s"
odsync_stop
out=$(compare 2>&1) || { echo "$out" >&2; fail "the sink differs from the source"; }
echo "$out"
dups=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM (SELECT id FROM big GROUP BY id HAVING count(*) > 1)")
[[ "$dups" == 0 ]] || fail "big has duplicated keys"
log "all assertions passed"
