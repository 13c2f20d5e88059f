#!/usr/bin/env bash
# mesh_poison.sh — poison rows in a 2-node mesh whose sink holds changes back and applies them as one
# run before the commit (docs/MULTI_MASTER.md, "Poison rows in a mesh"; docs/DEAD_LETTERS.md).
#
# Node b has a CHECK constraint on items (n >= 0) that node a lacks; acct.bal is a mesh counter
# (merged as deltas: a change applied twice would show in the sum). With odsync stopped, a writes
# a backlog of single-row transactions (they arrive in large batches) with poison rows (inserts with
# n = -1, an update to n = -7, each in a transaction that also increments a counter) in the middle,
# b some ordinary rows.
#   1. mesh.on_poison: dead_letter — the poison rows are b's dead letters (table, op, key, the
#      constraint's error), every other row of a is at b once, the nodes equal row for row but for
#      the poison keys, no conflicts logged, no versions written for the poison keys, the counters'
#      sums exact; a later update at b of keys next to the poison rows replicates back to a, a's
#      new write of the row whose update was dead-lettered reaches b (the nodes equal again).
#   2. mesh.on_poison: stop — pipeline m_a_to_b stops with an error naming table and key, m_b_to_a
#      goes on; after the constraint is dropped at b and odsync restarted, the nodes converge, the
#      counters' sums exact (nothing applied twice).
#   odsync dlq beside the running mesh (after 1): `list` lists b's dead letters, `replay --all` is
#   refused (exit 2, naming the author) and changes nothing; (at the end of 3) `drop` removes two.
#   3. dead_letter again, now with a BEFORE trigger raising at b (P0001), odsync SIGKILLed while the isolating retry runs, again right after a dead
#      letter was logged (not yet committed), and right after one committed: still exactly once (no dead letter twice, sums exact), converged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_poison
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE acct (id int PRIMARY KEY, bal bigint NOT NULL);
ALTER TABLE acct REPLICA IDENTITY FULL;
INSERT INTO acct SELECT g, 0 FROM generate_series(1, 5) g;
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
node_psql b -c "ALTER TABLE items ADD CONSTRAINT items_n_nonneg CHECK (n >= 0)"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
TABLES="public.items, public.acct, public.mesh_marker"
COUNTERS="  counters: [public.acct.bal]"
mesh_config "$CONFIG" last_writer_wins "$TABLES" "$COUNTERS
  on_poison: dead_letter"
INCS=0 # counter increments written so far (every node's acct sums to this)

# backlog FROM TO POISON... — at a, one transaction per id: an insert of (id, 'a', id), and every
# 10th id (and every poison id) also bal + 1 of one of acct's rows 1..4 (b's go to row 5: no conflicts); a poison id is inserted with n = -1.
backlog() {
  local from=$1 to=$2 p poison="ARRAY[]::int[]"
  shift 2
  for p in "$@"; do poison="$poison || $p"; done
  node_psql a -c "DO \$\$ DECLARE p int[] := $poison; BEGIN FOR i IN $from..$to LOOP
    INSERT INTO items VALUES (i, 'a', CASE WHEN i = ANY (p) THEN -1 ELSE i END);
    IF i % 10 = 0 OR i = ANY (p) THEN UPDATE acct SET bal = bal + 1 WHERE id = 1 + (i / 10) % 4; END IF;
    COMMIT; END LOOP; END \$\$"
  INCS=$((INCS + $(node_psql a -c "SELECT count(*) FROM generate_series($from, $to) i WHERE i % 10 = 0 OR i = ANY ($poison)")))
}

# at b: COUNT ordinary rows from id START, every 5th with a counter increment
b_rows() {
  node_psql b -c "DO \$\$ BEGIN FOR i IN $1..$(($1 + $2 - 1)) LOOP INSERT INTO items VALUES (i, 'b', i);
    IF i % 5 = 0 THEN UPDATE acct SET bal = bal + 1 WHERE id = 5; END IF; COMMIT; END LOOP; END \$\$"
  INCS=$((INCS + $(node_psql b -c "SELECT count(*) FROM generate_series($1, $(($1 + $2 - 1))) i WHERE i % 5 = 0")))
}

# the rows of items (but for the ids given) and acct, as text, at node N
dump() {
  local n=$1 ex="0"
  shift
  for k in "$@"; do ex="$ex, $k"; done
  node_psql "$n" -c "SELECT id, v, n FROM items WHERE id NOT IN ($ex) ORDER BY id"
  node_psql "$n" -c "SELECT id, bal FROM acct ORDER BY id"
}

check_sums() {
  local n s
  for n in a b; do
    s=$(node_psql $n -c "SELECT sum(bal) FROM acct")
    [[ $s == "$INCS" ]] || fail "node $n: acct sums to $s, expected $INCS (a counter delta lost or applied twice)"
  done
}

# dead letters at b as sorted "table:op:id" (the checkpoint table's schema, wherever that is)
dead_letters() {
  local t
  t=$(node_psql b -c "SELECT quote_ident(n.nspname) || '._odsync_dead_letters' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = '_odsync_dead_letters'")
  [[ -n $t ]] || return 0
  node_psql b -c "SELECT coalesce(string_agg(source_table || ':' || op || ':' || (change->'key'->>'id'), ' ' ORDER BY (change->'key'->>'id')::int), '') FROM $t"
}

dead_letter_errors() {
  local t
  t=$(node_psql b -c "SELECT quote_ident(n.nspname) || '._odsync_dead_letters' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = '_odsync_dead_letters'")
  node_psql b -c "SELECT count(*) FILTER (WHERE error LIKE '%items_n_nonneg%' AND code = '${1:-23514}') || '/' || count(*) FROM $t"
}

# log lines of the current odsync run (from line $1 on)
log_since() { tail -n +"$1" "$LOG"; }

log "0. the mesh becomes active, then odsync stops"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed on the mesh with on_poison: $out"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
odsync_stop

log "1. on_poison: dead_letter: 4100 single-row transactions at a (poison: inserts 1500, 3200, update 2000), 60 at b"
backlog 1 4000 1500 3200
# an update poison row too (with a counter increment in its transaction), then more inserts
node_psql a -c "BEGIN; UPDATE items SET n = -7 WHERE id = 2000; UPDATE acct SET bal = bal + 1 WHERE id = 2; COMMIT"
INCS=$((INCS + 1))
backlog 4001 4100
b_rows 100001 60
odsync_start "$CONFIG" "$LOG"
mesh_wait_marker 240 a b
mesh_wait_marker 120 b a
DL=$(dead_letters)
[[ $DL == "public.items:insert:1500 public.items:update:2000 public.items:insert:3200" ]] ||
  fail "b's dead letters are '$DL', expected the inserts of 1500 and 3200, the update of 2000"
E=$(dead_letter_errors)
[[ $E == 3/3 ]] || fail "dead letters naming the constraint items_n_nonneg (23514) / all: $E"
# odsync dlq beside the running mesh: list works (the sink's mesh session, whose replication origin
# the running pipeline holds, is not opened), replay is refused and changes nothing
out=$("$ODSYNC_BIN" dlq list -c "$CONFIG" -p m_a_to_b 2>&1) || fail "odsync dlq list failed beside the running mesh: $out"
echo "$out"
[[ $(grep -c 'public.items' <<<"$out") == 3 ]] || fail "odsync dlq list did not list the 3 dead letters: $out"
rc=0; out=$("$ODSYNC_BIN" dlq replay --all -c "$CONFIG" -p m_a_to_b 2>&1) || rc=$?
echo "$out"
[[ $rc == 2 ]] || fail "odsync dlq replay on a mesh node exited $rc (expected 2, refused): $out"
grep -q "a mesh node's dead letters are not replayed .*node a" <<<"$out" || fail "the refusal does not say why: $out"
[[ $(dead_letters) == "$DL" ]] || fail "the refused replay changed b's dead letters: $(dead_letters)"
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE id IN (1500, 3200)") == 0 ]] || fail "the refused replay wrote a row"
grep -q 'poison row: the insert of table public.items, key id=1500, .* stored as a dead letter' "$LOG" ||
  fail "no warning of the dead letter for key 1500 in the log"
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE id IN (1500, 3200)") == 0 ]] || fail "a poison row is at b"
[[ $(node_psql b -c "SELECT count(*) FROM items") == 4158 ]] || fail "b holds $(node_psql b -c "SELECT count(*) FROM items") rows of items, expected 4100 - 2 + 60"
[[ $(node_psql a -c "SELECT count(*) FROM items") == 4160 ]] || fail "a holds $(node_psql a -c "SELECT count(*) FROM items") rows of items, expected 4160"
[[ $(node_psql b -c "SELECT n FROM items WHERE id = 2000") == 2000 ]] || fail "b's row 2000 is not the one before the poison update"
diff <(dump a 1500 3200 2000) <(dump b 1500 3200 2000) >&2 || fail "a and b differ (but for the poison keys)"
check_sums
for n in a b; do
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  [[ $c == 0 ]] || fail "node $n logged $c conflicts for rows that did not conflict"
done
V=$(node_psql b -c "SELECT count(*) FROM _odsync_versions WHERE tbl = 'public.items' AND key IN ('1500', '3200')")
[[ $V == 0 ]] || fail "b wrote $V versions for the dead-lettered keys"
V=$(node_psql b -c "SELECT count(*) FROM _odsync_versions WHERE tbl = 'public.items' AND node = 'a'")
[[ $V == 4098 ]] || fail "b holds $V versions of a's rows of items, expected 4098"
# later updates at b of keys next to the poison rows (and a poison key's delete at a) replicate
node_psql b -c "UPDATE items SET v = 'b2', n = n + 1 WHERE id IN (1, 1499, 1501, 3199, 3201, 4000)"
node_psql a -c "DELETE FROM items WHERE id IN (1500, 3200)"
node_psql a -c "UPDATE items SET n = 2001 WHERE id = 2000" # the author writes the row again
mesh_wait_marker 120 b a
mesh_wait_marker 120 a b
[[ $(node_psql a -c "SELECT count(*) FROM items WHERE v = 'b2'") == 6 ]] || fail "b's later updates did not all reach a"
mesh_wait_equal 60 public.items public.acct
log "   dead letters: $DL; $(node_psql b -c "SELECT count(*) FROM items") rows equal at a and b"
odsync_stop

log "2. on_poison: stop: 2000 more at a (poison 6000), 40 at b"
mesh_config "$CONFIG" last_writer_wins "$TABLES" "$COUNTERS
  on_poison: stop"
backlog 5001 7000 6000
b_rows 100101 40
FROM=$(($(wc -l <"$LOG") + 1))
odsync_start "$CONFIG" "$LOG"
wait_for "log_since $FROM | grep -q 'pipeline m_a_to_b: .*poison row: the sink rejected the insert of table public.items, key id=6000'" 240 ||
  fail "pipeline m_a_to_b did not stop on the poison row 6000: $(log_since "$FROM" | tail -n 20)"
odsync_running || fail "odsync exited: the other pipeline should go on"
mesh_wait_marker 120 b a # m_b_to_a goes on
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE id = 6000") == 0 ]] || fail "the poison row 6000 is at b"
N=$(node_psql b -c "SELECT count(*) FROM items WHERE id BETWEEN 5001 AND 7000")
((N <= 999)) || fail "b holds $N rows of a's 5001..7000, expected at most the 999 before the poison row"
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE id > 6000 AND id <= 7000") == 0 ]] || fail "rows after the poison row 6000 are at b"
kill -TERM "$ODSYNC_PID"
wait "$ODSYNC_PID" || true
ODSYNC_PID=
node_psql b -c "ALTER TABLE items DROP CONSTRAINT items_n_nonneg"
odsync_start "$CONFIG" "$LOG"
mesh_wait_marker 240 a b
mesh_wait_marker 120 b a
mesh_wait_equal 60 public.items public.acct
[[ $(node_psql b -c "SELECT count(*) FROM items") == 6198 ]] || fail "b holds $(node_psql b -c "SELECT count(*) FROM items") rows, expected 4158 + 2000 + 40"
check_sums
odsync_stop
log "   stopped on key 6000 ($N of a's rows before it at b), converged after the fix, sum $INCS"

log "3. dead_letter, a raising trigger at b, 3 SIGKILLs (isolating, dead letter logged, committed): 3000 at a (poison 11000, 12500)"
# this time a BEFORE trigger raising at b (P0001) instead of the CHECK constraint
node_psql b <<'SQL'
CREATE FUNCTION items_guard() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF NEW.n < 0 THEN RAISE EXCEPTION 'items_n_nonneg (trigger): n = % at id %', NEW.n, NEW.id; END IF;
  RETURN NEW;
END $f$;
CREATE TRIGGER items_guard BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION items_guard();
SQL
mesh_config "$CONFIG" last_writer_wins "$TABLES" "$COUNTERS
  on_poison: dead_letter"
backlog 10001 13000 11000 12500
b_rows 100201 30
FROM=$(($(wc -l <"$LOG") + 1))
odsync_start "$CONFIG" "$LOG"
# the warning of the restart that isolates (the constraint's error), then SIGKILL during the retry
wait_for "log_since $FROM | grep -q 'pipeline m_a_to_b: .*items_n_nonneg'" 240 || fail "no poison-row restart logged"
sleep 0.$((RANDOM % 5))
odsync_kill9
K1=$(dead_letters)
FROM=$(($(wc -l <"$LOG") + 1))
odsync_start "$CONFIG" "$LOG"
# (or both dead letters already committed before the first SIGKILL: nothing left to isolate)
wait_for "log_since $FROM | grep -q 'stored as a dead letter' || dead_letters | grep -q insert:12500" 240 ||
  fail "no dead letter stored after the restart"
odsync_kill9
K2=$(dead_letters)
# and once more right after the first of them committed (the isolation of the second may be running)
odsync_start "$CONFIG" "$LOG"
wait_for "dead_letters | grep -q insert:11000" 240 || fail "the dead letter of 11000 did not commit"
odsync_kill9
K3=$(dead_letters)
odsync_start "$CONFIG" "$LOG"
mesh_wait_marker 240 a b
mesh_wait_marker 120 b a
DL=$(dead_letters)
[[ $DL == "public.items:insert:1500 public.items:update:2000 public.items:insert:3200 public.items:insert:11000 public.items:insert:12500" ]] ||
  fail "b's dead letters are '$DL' (after the SIGKILLs: '$K1', '$K2', '$K3'), expected 1500 2000 3200 11000 12500 once each"
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE id BETWEEN 10001 AND 13000") == 2998 ]] ||
  fail "b holds $(node_psql b -c "SELECT count(*) FROM items WHERE id BETWEEN 10001 AND 13000") of a's 3000 rows, expected 2998"
diff <(dump a 11000 12500) <(dump b 11000 12500) >&2 || fail "a and b differ (but for the poison keys)"
check_sums
V=$(node_psql b -c "SELECT count(*) FROM _odsync_versions WHERE tbl = 'public.items' AND key IN ('11000', '12500')")
[[ $V == 0 ]] || fail "b wrote $V versions for the dead-lettered keys"
for n in a b; do
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  [[ $c == 0 ]] || fail "node $n logged $c conflicts for rows that did not conflict"
done
[[ $(dead_letter_errors P0001) == 2/5 ]] || fail "dead letters of the trigger (P0001) / all: $(dead_letter_errors P0001)"
node_psql a -c "DELETE FROM items WHERE id IN (11000, 12500)"
mesh_wait_marker 120 a b
mesh_wait_equal 60 public.items public.acct
# the author deleted those rows: their dead letters are dropped, beside the running mesh
t=$(node_psql b -c "SELECT quote_ident(n.nspname) || '._odsync_dead_letters' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = '_odsync_dead_letters'")
for k in 11000 12500; do
  id=$(node_psql b -c "SELECT id FROM $t WHERE change->'key'->>'id' = '$k'")
  out=$("$ODSYNC_BIN" dlq drop "$id" -c "$CONFIG" -p m_a_to_b 2>&1) || fail "odsync dlq drop $id (key $k) failed: $out"
done
[[ $(dead_letters) == "public.items:insert:1500 public.items:update:2000 public.items:insert:3200" ]] ||
  fail "after dropping the dead letters of 11000 and 12500, b's are '$(dead_letters)'"
odsync_stop
log "ok (dead letters $DL; after SIGKILL 1: '$K1', 2: '$K2', 3: '$K3'; counters sum $INCS at both nodes)"
