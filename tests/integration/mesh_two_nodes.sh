#!/usr/bin/env bash
# mesh_two_nodes.sh — a 2-node mesh (a <-> b) declared with `mesh:`.
#
# Asserts:
#  - no loop: 3 rows inserted at a appear once at b and are not echoed back: a test_decoding
#    probe slot on each node shows exactly the transactions/rows expected (a: its own one
#    transaction; b: one applied transaction, with origin odsync_a), also after an update at b
#    travels back to a; pg_xact_commit_timestamp_origin of the rows names the right origins;
#  - causality: a write at b made after b received a's write to the same row is no conflict (no
#    log entry at either node, b's value everywhere);
#  - big transactions (20000 rows inserted at a in one, all updated at b in one, deleted at a) arrive
#    whole, without conflicts;
#  - a truly concurrent pair (both nodes update the same row while odsync is stopped) is one
#    update_update conflict, logged at both nodes with the same winner (last writer, b), and both
#    nodes converge on it; a concurrent insert/insert of one key converges the same way; the
#    business rule "n: higher wins" makes a's earlier write (n = 5) win over b's later one (n = 1);
#  - batching: 300 single-row transactions written at each node while odsync is stopped arrive in at
#    most 30 target transactions (distinct xmin), and each key's version in _odsync_versions is the
#    author's own commit time of that row; a later update of such a row at the other node is no
#    conflict (the conflict log stays at the three expected entries);
#  - odsync restarted while an application's transaction holds ROW EXCLUSIVE on the mesh tables and
#    odsync's side tables at a: markers travel both ways before that transaction ends (the sinks'
#    session DDL takes no lock on a table it does not change); a trigger of odsync's disabled at a is
#    enabled again by the next session;
#  - after all that, both nodes are identical (od_compare_pg).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_two_nodes
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SELECT pg_create_logical_replication_slot('probe', 'test_decoding');
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.mesh_marker" '  rules: ["public.items.n: higher wins"]'
APORT=$(pg_free_port)
echo "admin: { listen: \"127.0.0.1:$APORT\" }" >>"$CONFIG"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90

# Probe: the items transactions decoded at a node, as "origin-less count" lines.
probe() { # NODE -> "BEGIN count / items rows" of everything since the last probe
  node_psql "$1" -c "SELECT data FROM pg_logical_slot_get_changes('probe', NULL, NULL, 'include-xids', '0')" |
    grep -E '^(BEGIN|table public.items)' | sed -E 's/^(BEGIN).*/\1/; s/^table public.items: ([A-Z]+):.*/\1/' |
    sort | uniq -c | tr -s ' ' | sed 's/^ //' | tr '\n' ';'
}
probe a >/dev/null; probe b >/dev/null

log "no loop: 3 rows at a"
node_psql a -c "INSERT INTO items VALUES (1, 'x', 0), (2, 'y', 0), (3, 'z', 0)"
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a   # anything b echoed back would be at a now
mesh_wait_marker 120 a b
pa=$(probe a); pb=$(probe b)
log "a decoded: $pa  b decoded: $pb"
# Each node: the marker transactions (BEGIN without items rows) plus exactly one items transaction
# of 3 inserts; an echo would add inserts/updates of items at a.
[[ $(grep -o '[0-9]* INSERT' <<<"$pa") == "3 INSERT" ]] || fail "a decoded items rows other than its own 3 inserts: $pa"
[[ $(grep -o '[0-9]* INSERT' <<<"$pb") == "3 INSERT" ]] || fail "b decoded items rows other than the 3 applied inserts: $pb"
grep -q UPDATE <<<"$pa$pb" && fail "an update of items was decoded (echo): a: $pa b: $pb"
[[ $(node_psql a -c "SELECT count(*) FROM items WHERE (pg_xact_commit_timestamp_origin(xmin)).roident = 0") == 3 ]] ||
  fail "rows at a were rewritten by replication (echo)"
[[ $(node_psql b -c "SELECT count(*) FROM items i, pg_replication_origin o WHERE o.roident = (pg_xact_commit_timestamp_origin(i.xmin)).roident AND o.roname = 'odsync_a'") == 3 ]] ||
  fail "rows at b do not carry origin odsync_a"

log "causality: b writes row 1 after it received a's write"
node_psql a -c "UPDATE items SET v = 'a1' WHERE id = 1"
wait_for "[[ \$(node_psql b -c 'SELECT v FROM items WHERE id = 1') == a1 ]]" 120 ||
  fail "a's update did not reach b"
node_psql b -c "UPDATE items SET v = 'b1' WHERE id = 1"
mesh_wait_marker 120 b a
mesh_wait_marker 120 a b
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 1") == b1 ]] || fail "b's causally later write did not win at a"
for n in a b; do
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  [[ $c == 0 ]] || fail "node $n logged $c conflicts for causally ordered writes: $(node_psql $n -c 'TABLE _odsync_conflicts')"
done
pa=$(probe a); pb=$(probe b)
[[ $(grep -o '[0-9]* UPDATE' <<<"$pa") == "2 UPDATE" && $(grep -o '[0-9]* UPDATE' <<<"$pb") == "2 UPDATE" ]] ||
  fail "expected exactly 2 updates of items decoded at each node (no echo): a: $pa b: $pb"

log "big transactions: 20000 rows inserted at a in one transaction, all updated at b in one"
node_psql a -c "INSERT INTO items SELECT g, 'bulk', 0 FROM generate_series(1000, 20999) g"
mesh_wait_marker 180 a b
node_psql b -c "UPDATE items SET v = 'bulk-b', n = 1 WHERE id >= 1000"
mesh_wait_marker 180 b a
mesh_compare a b public.items >/dev/null || fail "nodes differ after the big transactions"
[[ $(node_psql a -c "SELECT count(*) FROM items WHERE v = 'bulk-b'") == 20000 ]] || fail "b's big update did not reach a whole"
for n in a b; do
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  [[ $c == 0 ]] || fail "node $n logged $c conflicts for causally ordered big transactions"
done
node_psql a -c "DELETE FROM items WHERE id >= 1000"
mesh_wait_marker 180 a b

log "concurrent: both nodes update row 2 and insert key 10 while odsync is stopped"
odsync_stop
node_psql a -c "UPDATE items SET v = 'a2' WHERE id = 2"
node_psql a -c "INSERT INTO items VALUES (10, 'a10', 1)"
node_psql a -c "UPDATE items SET v = 'a3', n = 5 WHERE id = 3"
node_psql b -c "UPDATE items SET v = 'b2' WHERE id = 2"
node_psql b -c "INSERT INTO items VALUES (10, 'b10', 2)"
node_psql b -c "UPDATE items SET v = 'b3', n = 1 WHERE id = 3"
# Batching: 300 single-row transactions at each node (disjoint keys) wait for the restart.
for i in $(seq 100 399); do echo "INSERT INTO items VALUES ($i, 'a', 0);"; done | node_psql a >/dev/null
for i in $(seq 400 699); do echo "INSERT INTO items VALUES ($i, 'b', 0);"; done | node_psql b >/dev/null
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
mesh_wait_equal 60 public.items
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 2") == b2 ]] || fail "last writer (b) did not win row 2"
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 10") == b10 ]] || fail "last writer (b) did not win key 10"
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 3") == a3 ]] || fail "rule 'n: higher wins' did not make a's earlier write win row 3"
log "batching: 300 source transactions each way applied in few target transactions, exact versions"
for pair in "a b 100 399" "b a 400 699"; do
  read -r src dst lo hi <<<"$pair"
  [[ $(node_psql $dst -c "SELECT count(*) FROM items WHERE id BETWEEN $lo AND $hi") == 300 ]] ||
    fail "not all 300 rows of $src reached $dst"
  txns=$(node_psql $dst -c "SELECT count(DISTINCT xmin::text) FROM items WHERE id BETWEEN $lo AND $hi")
  log "$src -> $dst: 300 source transactions in $txns target transactions"
  ((txns <= 30)) || fail "$src -> $dst: 300 source transactions took $txns target transactions (no batching)"
  # Each key's version at dst is the author's own commit time of that row at src.
  want=$(node_psql $src -c "SELECT string_agg(id || ':' || (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8, ',' ORDER BY id) FROM items WHERE id BETWEEN $lo AND $hi")
  got=$(node_psql $dst -c "SELECT string_agg(key || ':' || ts, ',' ORDER BY key::int) FROM _odsync_versions WHERE tbl = 'public.items' AND node = '$src' AND key ~ '^[0-9]+$' AND key::int BETWEEN $lo AND $hi")
  [[ $got == "$want" ]] || fail "$dst's versions of $src's rows are not $src's commit times: ${got:0:200} vs ${want:0:200}"
done
log "causality on batched rows: b updates a row it received in a batch"
node_psql b -c "UPDATE items SET v = 'b150' WHERE id = 150"
mesh_wait_marker 120 b a
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 150") == b150 ]] || fail "b's update of a batched row did not win at a"
for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(kind || ':' || key || ':' || winner || ':' || policy, ',' ORDER BY kind, key) FROM _odsync_conflicts")
  want="insert_insert:10:b:rule,update_update:2:b:last_writer_wins,update_update:3:a:rule"
  [[ $got == "$want" ]] || fail "node $n conflict log: '$got' (expected $want)"
done
metrics=$(curl -fsS "http://127.0.0.1:$APORT/metrics") || fail "cannot read /metrics"
for n in a b; do
  o=b; [[ $n == b ]] && o=a
  grep -q "^odsync_mesh_conflicts_total{node=\"$n\",peer=\"$o\",kind=\"update_update\"} 2$" <<<"$metrics" ||
    fail "metric odsync_mesh_conflicts_total for node $n update_update is not 2: $(grep odsync_mesh_conflicts <<<"$metrics")"
  grep -q "^odsync_mesh_transactions_total{node=\"$n\",peer=\"$o\"} [1-9]" <<<"$metrics" ||
    fail "metric odsync_mesh_transactions_total for node $n missing"
done

log "a restart beside an open writing transaction: the sinks' session DDL waits for no lock"
# An application's transaction holding ROW EXCLUSIVE on the mesh tables and on odsync's side tables
# (as any writer there may) stays open across a restart of odsync. The sinks' session DDL finds its
# columns, indexes and triggers already right and must not queue behind it (ALTER TABLE ... ADD
# COLUMN IF NOT EXISTS, CREATE INDEX IF NOT EXISTS and CREATE OR REPLACE TRIGGER all did, and such
# a queue deadlocked a starting sink with running ones and with `odsync mesh join`'s reads).
node_psql a >"$TEST_TMP/holder.log" 2>&1 <<'SQL' &
BEGIN;
LOCK TABLE items, mesh_marker, _odsync_versions, _odsync_tombstones, _odsync_hlc, _odsync_conflicts,
  _odsync_unique_left, _odsync_peer_vv IN ROW EXCLUSIVE MODE;
SELECT pg_sleep(120);
SQL
HOLDER_PID=$!
wait_for "[[ \$(node_psql a -c \"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'\") == 1 ]]" 30 ||
  fail "the holder's transaction did not start: $(cat "$TEST_TMP/holder.log")"
odsync_stop
odsync_start "$CONFIG" "$LOG"
mesh_wait_marker 60 b a
mesh_wait_marker 60 a b
[[ $(node_psql a -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'") == 1 ]] ||
  fail "the holder's transaction ended before the sinks started: the test tested nothing"
node_psql a -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%'" >/dev/null
wait $HOLDER_PID 2>/dev/null || true
log "a trigger someone disabled is enabled again by the next session"
node_psql a -c "ALTER TABLE items DISABLE TRIGGER _odsync_tombstone"
odsync_stop
odsync_start "$CONFIG" "$LOG"
mesh_wait_marker 60 b a
[[ $(node_psql a -c "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'items'::regclass AND tgname = '_odsync_tombstone'") == O ]] ||
  fail "the disabled _odsync_tombstone trigger at a was not enabled again"
log "odsync check beside the running mesh"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed beside the running mesh: $out"
grep -q 'ok: mesh of 2 nodes' <<<"$out" || fail "odsync check did not validate the running mesh: $out"
log "odsync snapshot of a mesh pipeline is refused"
rc=0; out=$("$ODSYNC_BIN" snapshot -c "$CONFIG" -p m_a_to_b 2>&1) || rc=$?
echo "$out"
[[ $rc == 2 ]] && grep -q "mesh" <<<"$out" || fail "odsync snapshot of a mesh pipeline exited $rc: $out"
odsync_stop
mesh_compare a b public.items public.mesh_marker || fail "nodes differ"
# Every conflict is in the audit log too (3 per node; a replay after a crash could add repeats).
audited=$(cat "$TEST_TMP"/state/audit/* 2>/dev/null | grep -c '"kind":"conflict"' || true)
((audited >= 6)) || fail "$audited conflict records in the audit log, expected at least 6"
grep -h '"kind":"conflict"' "$TEST_TMP"/state/audit/* | grep_q '"conflict":"update_update","table":"public.items","policy":"last_writer_wins","winner":"b"' ||
  fail "the audit log lacks the update_update conflict won by b"
"$ODSYNC_BIN" audit verify -c "$CONFIG" >"$TEST_TMP/verify.txt" 2>&1 || { cat "$TEST_TMP/verify.txt"; fail "audit verify failed"; }

log "odsync conflicts lists both nodes' logs"
out=$("$ODSYNC_BIN" conflicts -c "$CONFIG") || fail "odsync conflicts failed: $out"
echo "$out"
[[ $(grep -c 'update_update' <<<"$out") == 4 && $(grep -c 'insert_insert' <<<"$out") == 2 ]] ||
  fail "odsync conflicts did not list two update_update and one insert_insert per node"
grep -q '^node a: 3 conflicts' <<<"$out" && grep -q '^node b: 3 conflicts' <<<"$out" || fail "odsync conflicts: per-node counts wrong"

log "odsync check validates the mesh"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed on a good mesh: $out"
grep -q 'ok: mesh of 2 nodes' <<<"$out" || fail "odsync check did not validate the mesh: $out"
node_psql a -c "CREATE TABLE odd (id int PRIMARY KEY, x int); CREATE TABLE nokey (x int)"
node_psql b -c "CREATE TABLE odd (id int PRIMARY KEY, x text); CREATE TABLE nokey (x int)"
mesh_config "$TEST_TMP/bad.yaml" last_writer_wins "public.items, public.odd, public.nokey"
rc=0; out=$("$ODSYNC_BIN" check -c "$TEST_TMP/bad.yaml" 2>&1) || rc=$?
echo "$out"
[[ $rc == 1 ]] || fail "odsync check exited $rc on a mesh with mismatched tables (expected 1)"
grep -q 'table public.odd differs between node a' <<<"$out" || fail "check missed the different shapes of public.odd"
grep -q 'mesh node a: table public.nokey has no primary key' <<<"$out" || fail "check missed the keyless table"

log "a mesh sink with mesh_session: false (what odsync check opens) refuses to write"
# A hand-written pipeline a -> b whose sink carries b's mesh keys and mesh_session: false: it has no
# origin and no versions, so whatever it wrote would be an unversioned local write of b. odsync run
# must end with the reason, and b must hold nothing of a's row written meanwhile, nor a checkpoint.
cat >"$TEST_TMP/checks_only.yaml" <<YAML
state_dir: $TEST_TMP/state_checks_only
pipelines:
  - name: checks_only
    source: { type: postgres, dsn: "${NODE_DSN[a]}", slot: odsync_checks_only, snapshot: never, tables: [public.items] }
    sink: { type: postgres, dsn: "${NODE_DSN[b]}", mesh_node: b, mesh_peer: a, mesh_nodes: [a, b], mesh_session: false }
YAML
b_items=$(node_psql b -c "SELECT count(*) FROM items")
rc=0
timeout 120 "$ODSYNC_BIN" run -c "$TEST_TMP/checks_only.yaml" >"$TEST_TMP/checks_only.log" 2>&1 &
co_pid=$!
wait_for "[[ \$(node_psql a -c \"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'odsync_checks_only' AND active\") == 1 ]] || ! kill -0 $co_pid" 60
node_psql a -c "INSERT INTO items VALUES (9001, 'checks only', 0)"
wait $co_pid || rc=$?
cat "$TEST_TMP/checks_only.log"
[[ $rc != 0 && $rc != 124 ]] || fail "odsync run with a mesh_session: false sink exited $rc (expected an error exit)"
grep -q "mesh_session: false only checks a mesh sink" "$TEST_TMP/checks_only.log" || fail "the refusal does not say why"
[[ $(node_psql b -c "SELECT count(*) FROM items") == "$b_items" && $(node_psql b -c "SELECT count(*) FROM items WHERE id = 9001") == 0 ]] ||
  fail "a mesh_session: false sink wrote to b"
[[ $(node_psql b -c "SELECT count(*) FROM _odsync_checkpoint WHERE pipeline = 'checks_only'") == 0 ]] ||
  fail "a mesh_session: false sink wrote a checkpoint at b"
node_psql a -c "SELECT pg_drop_replication_slot('odsync_checks_only')" >/dev/null

log "a hand-written mesh sink with an SQL rule on a column_merge table is refused"
# (the mesh: section refuses it at parse time, tests/unit/test_config_mesh.c; a pipeline written by
# hand reaches the sink's own check, which must name the rule and its table; the column rule before
# it is accepted: it orders one column's concurrent writes)
cat >"$TEST_TMP/rule_merge.yaml" <<YAML
state_dir: $TEST_TMP/state_rule_merge
pipelines:
  - name: rule_merge
    source: { type: postgres, dsn: "${NODE_DSN[a]}", slot: odsync_rule_merge, snapshot: never, tables: [public.items] }
    sink: { type: postgres, dsn: "${NODE_DSN[b]}", mesh_node: b, mesh_peer: a, mesh_nodes: [a, b],
            mesh_policy: column_merge, mesh_rules: ["public.items.n: higher wins", "public.items: sql: remote.n > local.n"] }
YAML
rc=0
out=$("$ODSYNC_BIN" check -c "$TEST_TMP/rule_merge.yaml" 2>&1) || rc=$?
[[ $rc != 0 ]] || fail "odsync check accepted an SQL rule on a column_merge table: $out"
grep -qF "mesh_rules[1] 'public.items: sql: remote.n > local.n': table public.items has policy column_merge, where an SQL rule" <<<"$out" ||
  fail "the refusal does not name the rule and its table: $out"
[[ $(node_psql a -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'odsync_rule_merge'") == 0 ]] ||
  fail "odsync check created a slot for a refused pipeline"
log "ok"
