#!/usr/bin/env bash
# pg_sink_async_commit.sh — the PostgreSQL sink with `synchronous_commit: off`: its commits return
# before their WAL flush, and the source is acknowledged only up to the commits the sink's server
# has flushed (issue #9, a comparable setting to the native subscription's synchronous_commit off).
#
# The sink's server runs with wal_writer_delay = 10s, so an asynchronous commit stays in its WAL
# buffers for seconds, and a crash (pg_ctl -m immediate) loses the last ones.
# Asserts:
#  1. a crash of the sink's server loses visible commits (the premise: fewer rows after its
#     restart than before), and the slot's confirmed_flush_lsn, read at the crash with odsync
#     frozen, is at or before the checkpoint the restarted sink holds (nothing lost was
#     acknowledged); odsync then brings the sink back to equal the source row for row
#     (od_compare_pg: same keys, values, no duplicate, nothing missing);
#  2. odsync killed (-9) right after a burst of commits, started again, then the sink's server
#     crashed: a new session reads only a durable checkpoint (it forces a flush first), so the same
#     invariant holds and the sink ends equal to the source;
#  3. with the source idle, the acknowledgement catches up with the sink's checkpoint (the apply
#     polls the flush position between transactions);
#  4. `synchronous_commit: off` on a mesh sink is refused by `odsync check`, naming the key.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_sink_async_commit
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

PG_START_CONF="wal_writer_delay = 10s" pg_start_pair shop warehouse
DST_DIR=${PG_STARTED_DIRS[0]}
pg_psql <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, n numeric(10,2));
INSERT INTO items SELECT g, 'seed ' || g, g / 4.0 FROM generate_series(1, 50) g;
SQL

CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: fast
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items] }
    sink: { type: postgres, dsn: "$DST_DSN", synchronous_commit: off }
    reconnect_max_ms: 1000
YAML

compare_equal() { pg_wait_equal "$1" 120 --table public.items; }
crash_sink() {
  pg_as_user "$PG_BINDIR/pg_ctl" -D "$DST_DIR/data" -m immediate -w -t 60 stop >/dev/null || fail "cannot crash the sink's server"
  pg_as_user "$PG_BINDIR/pg_ctl" -D "$DST_DIR/data" -l "$DST_DIR/server.log" -w -t 120 start >/dev/null ||
    fail "cannot start the sink's server again: $(tail -n 20 "$DST_DIR/server.log")"
}
slot_confirmed() { pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_fast'"; }
sink_checkpoint() { dst_psql -c "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'fast'"; }
lsn_le() { [[ $(pg_psql -c "SELECT '$1'::pg_lsn <= '$2'::pg_lsn") == t ]]; }
# A burst of single-row transactions at the source, then wait until the sink shows them all.
burst() {
  local from=$1 to=$2
  pg_psql -c "DO \$\$ BEGIN FOR i IN $from..$to LOOP
                INSERT INTO items VALUES (i, 'row ' || i, i / 8.0); UPDATE items SET v = v || '+' WHERE id = i - 40;
                COMMIT; END LOOP; END \$\$"
  local want
  want=$(pg_psql -c "SELECT count(*) FROM items")
  wait_for "[[ \$(dst_psql -c 'SELECT count(*) FROM items') == $want ]]" 60 ||
    fail "the sink does not show the $want rows of the source after 60 s"
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_fast 60
compare_equal "initial snapshot"

# 1. The sink's server crashes right after a burst; odsync is frozen across the crash, so the
# acknowledgement it had sent and what the sink kept can be read side by side.
burst 1001 1400
kill -STOP "$ODSYNC_PID"
before=$(dst_psql -c "SELECT count(*) FROM items")
acked=$(slot_confirmed)
crash_sink
after=$(dst_psql -c "SELECT count(*) FROM items")
kept=$(sink_checkpoint)
log "crash 1: $before rows visible before, $after after; slot acknowledged $acked, sink checkpoint $kept"
((after < before)) || { kill -CONT "$ODSYNC_PID"; fail "premise: the crash lost no commit ($before rows before and after)"; }
lsn_le "$acked" "$kept" || { kill -CONT "$ODSYNC_PID"; fail "the source was acknowledged at $acked, past the sink's durable checkpoint $kept"; }
kill -CONT "$ODSYNC_PID"
compare_equal "after the sink's crash"

# 2. odsync killed right after a burst, started again at once, then the sink crashes.
burst 2001 2400
odsync_kill9
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_fast 60
wait_for "[[ \$(pg_psql -c \"SELECT confirmed_flush_lsn >= '$(sink_checkpoint)'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_fast'\") == t ]]" 30 ||
  fail "the new session did not acknowledge the sink's checkpoint within 30 s"
kill -STOP "$ODSYNC_PID"
acked=$(slot_confirmed)
crash_sink
kept=$(sink_checkpoint)
log "crash 2: slot acknowledged $acked, sink checkpoint after the crash $kept"
lsn_le "$acked" "$kept" || { kill -CONT "$ODSYNC_PID"; fail "after a restart the source was acknowledged at $acked, past the sink's durable checkpoint $kept"; }
kill -CONT "$ODSYNC_PID"
compare_equal "after odsync's kill -9 and the sink's crash"

# 3. Idle: the acknowledgement reaches the sink's checkpoint without a new commit.
burst 3001 3050
kept=$(sink_checkpoint)
wait_for "[[ \$(pg_psql -c \"SELECT confirmed_flush_lsn >= '$kept'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_fast'\") == t ]]" 30 ||
  fail "idle source: the slot was not acknowledged up to the sink's checkpoint $kept within 30 s (it is at $(slot_confirmed))"
log "idle: the slot reached the sink's checkpoint $kept"
odsync_stop
compare_equal "at the end"

# 4. Not for a mesh sink.
cat >"$TEST_TMP/mesh.yaml" <<YAML
state_dir: $TEST_TMP/state_mesh
pipelines:
  - name: m
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items] }
    sink: { type: postgres, dsn: "$DST_DSN", mesh_node: b, mesh_peer: a, synchronous_commit: off }
YAML
if out=$("$ODSYNC_BIN" check -c "$TEST_TMP/mesh.yaml" 2>&1); then fail "odsync check accepted synchronous_commit: off on a mesh sink"; fi
grep_q 'synchronous_commit: off is not for a mesh sink' <<<"$out" || { echo "$out" >&2; fail "no clear error for synchronous_commit: off on a mesh sink"; }
grep_q 'mesh.yaml:5:' <<<"$out" || { echo "$out" >&2; fail "the error does not name the file and line"; }
log "mesh sink refused: $(grep -m1 'synchronous_commit' <<<"$out")"
log "all assertions passed"
