#!/usr/bin/env bash
# mesh_sqlrule.sh — SQL-expression business rules ("schema.table: sql: EXPR" in mesh.rules) on a
# 2-node mesh (a <-> b); docs/MULTI_MASTER.md, "Business rules".
#
# Asserts:
#  - `odsync check` refuses a rule with a syntax error, an unknown column, a non-boolean result, a
#    volatile function (random()), a subquery, a ';' outside a literal, with a message naming the rule and its table; `odsync
#    run` refuses a bad rule at startup the same way and exits;
#  - concurrent pairs made while odsync is stopped (a writes first, b later), row for row at both
#    nodes: the rule's winner even where the last writer would have won (items 1, 4, 10; accounts 1),
#    the remote winning by the rule (items 2: b's higher version against a's later write), a NULL
#    answer falling through to the next rule (items 4: the second rule decides, on a jsonb column
#    of both rows) and then to the policy (items 3), an expression that is false both ways round
#    falling through to the policy (accounts 2), an insert/insert pair decided by the rule (items 10);
#  - a rule raising an error on some pairs of a batch (docs 3, 4: division by zero, one source
#    transaction at each node) is no decision for those pairs only: the other pairs of the same
#    statement (docs 1, 2) keep the rule's answers, docs 3 goes to the next rule, docs 4 to the
#    policy; the error is logged naming the rule, the table and the key, on both nodes' sinks;
#  - rules on deletes (`remote IS NULL` / `local IS NULL`: that side deleted the row), in the same
#    statements: a delete winning by a rule against last-writer order (docs 5: b's later update
#    loses) and losing by a rule (docs 6: b's later delete loses); the existing items rules, which
#    never test for a NULL row, make no decision on a delete (items 5: the policy, as before, and a
#    warning that the pair could not be ranked as the deleted row: no REPLICA IDENTITY FULL);
#  - each node's conflict log holds exactly these entries, policy `rule` for the pairs a rule decided
#    and last_writer_wins for the others;
#  - both nodes identical row for row afterwards (od_compare_pg);
#  - a live phase: both nodes update the same rows concurrently while odsync runs, each write adding
#    a random step to the row's version (versions grow along causal chains, as the rule needs); the
#    nodes converge, some conflicts were decided by the rule, and every one of them (both nodes'
#    logs) went to the higher version.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_sqlrule
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
mesh_psql_all <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, version int, v text, meta jsonb);
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL, updated_by text NOT NULL);
CREATE TABLE docs (id int PRIMARY KEY, version int, weight int, keep bool, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
TABLES="public.items, public.accounts, public.docs, public.mesh_marker"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
dump() {
  local n
  for n in a b; do
    log "node $n items: $(node_psql $n -c "SELECT string_agg(concat_ws(':', id, version, v), ' ' ORDER BY id) FROM items")"
    log "node $n accounts: $(node_psql $n -c "SELECT string_agg(concat_ws(':', id, balance, updated_by), ' ' ORDER BY id) FROM accounts")"
    log "node $n docs: $(node_psql $n -c "SELECT string_agg(concat_ws(':', id, version, weight, keep, v), ' ' ORDER BY id) FROM docs")"
    log "node $n conflicts: $(node_psql $n -c "SELECT string_agg(concat_ws(':', table_name, kind, key, policy, winner), ' ' ORDER BY id) FROM _odsync_conflicts")"
  done
}

log "bad rules refused by odsync check"
bad() { # NAME RULE EXPECTED-MESSAGE-PART...
  local name=$1 rule=$2 rc=0 out part
  shift 2
  mesh_config "$TEST_TMP/$name.yaml" last_writer_wins "$TABLES" "  rules: [\"$rule\"]"
  out=$("$ODSYNC_BIN" check -c "$TEST_TMP/$name.yaml" 2>&1) || rc=$?
  ((rc != 0)) || fail "rule $name was accepted: $out"
  for part in "$@"; do
    grep -qF -- "$part" <<<"$out" || fail "rule $name: expected a message containing '$part', got: $out"
  done
  log "  $name: $(grep -F 'mesh.rules' <<<"$out" | head -1)"
}
bad syntax "public.items: sql: remote.version > AND local.version" \
  "mesh node a: mesh.rules[0] on table public.items ('remote.version > AND local.version')" "syntax error"
bad column "public.items: sql: remote.nope > local.version" "mesh.rules[0] on table public.items" "nope"
bad nonbool "public.items: sql: remote.version + local.version" "mesh.rules[0] on table public.items" \
  "the expression must be one boolean"
bad volatile "public.items: sql: remote.version > local.version AND random() < 0.5" \
  "mesh.rules[0] on table public.items" "reads more than the two rows"
bad stable "public.items: sql: remote.version > local.version OR now() > '2020-01-01'" "reads more than the two rows"
bad subquery "public.items: sql: remote.version > (SELECT max(version) FROM public.items)" "reads more than the two rows"
bad notable "public.nope: sql: remote.version > local.version" "mesh.rules[0] on table public.nope" "does not exist"
bad semicolon "public.items: sql: remote.version > local.version; SELECT 1" "mesh.rules[0] on table public.items" \
  "may not contain ';' outside a string literal"
bad empty "public.items: sql: " "mesh_rules[0] 'public.items: sql: ': expected" "'schema.table: sql: <expression>'"

log "odsync run refuses a bad rule at startup"
mesh_config "$TEST_TMP/run_bad.yaml" last_writer_wins "$TABLES" '  rules: ["public.items: sql: remote.version + 1"]'
odsync_start "$TEST_TMP/run_bad.yaml" "$TEST_TMP/run_bad.log"
for i in $(seq 1 300); do odsync_running || break; sleep 0.2; done
if odsync_running; then odsync_stop; fail "odsync run kept running with a non-boolean SQL rule"; fi
wait "$ODSYNC_PID" 2>/dev/null && fail "odsync run exited 0 with a non-boolean SQL rule" || true
ODSYNC_PID=
grep -q "mesh.rules\[0\] on table public.items ('remote.version + 1'): the expression must be one boolean" \
  "$TEST_TMP/run_bad.log" || fail "odsync run did not name the bad rule: $(tail -5 "$TEST_TMP/run_bad.log")"

# Rules in order: the higher version wins (NULL when either has none); else a row whose jsonb meta
# says force wins (a jsonb column reaches `remote` as the document, not as a string); accounts: the
# higher (or equal) balance wins unless the batch job (or 'a;b': a ';' inside a literal) wrote it. docs: the higher version per weight
# wins (a division by zero where a weight is 0: no decision for that pair), else the higher v
# (~>~: byte order, no collation); on a delete, the live row's keep flag says whether it stays.
mesh_config "$CONFIG" last_writer_wins "$TABLES" "  rules: [\"public.items: sql: remote.version > local.version\", \
\"public.items: sql: coalesce((remote.meta ->> 'force')::bool, false) -- a comment ends at the line's end\", \
\"public.accounts: sql: remote.balance >= local.balance AND remote.updated_by NOT IN ('batch', 'a;b')\", \
\"public.docs: sql: remote.version / remote.weight > local.version / local.weight\", \
\"public.docs: sql: remote.v ~>~ local.v\", \
\"public.docs: sql: CASE WHEN remote IS NULL THEN NOT local.keep WHEN local IS NULL THEN remote.keep END\"]"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check refused good rules: $out"
# a warning per SQL rule, once (not per node): concurrent deletes can leave the nodes apart
[[ $(grep -c '^warning: mesh.rules\[[0-9]\] on table public\.[a-z]* is an SQL rule: .*Rules and concurrent deletes' <<<"$out") == 6 ]] ||
  fail "odsync check: expected one warning per SQL rule (6), got: $out"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
node_psql a <<'SQL'
INSERT INTO items SELECT g, 1, 'v0' FROM generate_series(1, 5) g;
INSERT INTO accounts SELECT g, 10, 'app' FROM generate_series(1, 2) g;
INSERT INTO docs SELECT g, 1, 1, false, 'v0' FROM generate_series(1, 6) g;
SQL
mesh_wait_marker 120 a b
mesh_wait_equal 60 public.items public.accounts public.docs

log "concurrent writes while odsync is stopped"
odsync_stop
node_psql b -c "UPDATE items SET version = 7, v = 'b2' WHERE id = 2"
sleep 0.05
node_psql a <<'SQL'
UPDATE items SET version = 5, v = 'a1' WHERE id = 1;
UPDATE items SET version = 2, v = 'a2' WHERE id = 2;
UPDATE items SET version = NULL, v = 'a3' WHERE id = 3;
UPDATE items SET version = NULL, v = 'force', meta = '{"force": true}' WHERE id = 4;
INSERT INTO items VALUES (10, 8, 'a10');
UPDATE accounts SET balance = 100, updated_by = 'app' WHERE id = 1;
UPDATE accounts SET balance = 100, updated_by = 'batch' WHERE id = 2;
BEGIN;
UPDATE docs SET version = 10, v = 'a1' WHERE id = 1;
UPDATE docs SET version = 3, v = 'a2' WHERE id = 2;
UPDATE docs SET version = 1, weight = 0, v = 'z3' WHERE id = 3;
UPDATE docs SET weight = 0, v = 'same' WHERE id = 4;
DELETE FROM docs WHERE id = 5;
UPDATE docs SET keep = true, v = 'a6' WHERE id = 6;
COMMIT;
DELETE FROM items WHERE id = 5;
SQL
sleep 0.05
node_psql b <<'SQL'
UPDATE items SET version = 3, v = 'b1' WHERE id = 1;
UPDATE items SET version = 4, v = 'b3' WHERE id = 3;
UPDATE items SET version = 6, v = 'b4' WHERE id = 4;
INSERT INTO items VALUES (10, 6, 'b10');
UPDATE accounts SET balance = 50, updated_by = 'app' WHERE id = 1;
UPDATE accounts SET balance = 50, updated_by = 'app' WHERE id = 2;
BEGIN;
UPDATE docs SET version = 5, v = 'b1' WHERE id = 1;
UPDATE docs SET version = 9, v = 'b2' WHERE id = 2;
UPDATE docs SET version = 9, v = 'b3' WHERE id = 3;
UPDATE docs SET version = 2, v = 'same' WHERE id = 4;
UPDATE docs SET version = 7, v = 'b5' WHERE id = 5;
DELETE FROM docs WHERE id = 6;
COMMIT;
UPDATE items SET version = 9, v = 'b5' WHERE id = 5;
SQL
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
( mesh_wait_equal 90 public.items public.accounts public.docs ) || { dump; fail "nodes differ"; }

for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, coalesce(version::text, '-'), v), ' ' ORDER BY id) FROM items")
  want="1:5:a1 2:7:b2 3:4:b3 4:-:force 5:9:b5 10:8:a10"
  [[ $got == "$want" ]] || { dump; fail "node $n items '$got', expected '$want'"; }
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, balance, updated_by), ' ' ORDER BY id) FROM accounts")
  want="1:100:app 2:50:app"
  [[ $got == "$want" ]] || { dump; fail "node $n accounts '$got', expected '$want'"; }
  # docs 1, 2: by the first rule in the statement where 3 and 4 raised an error; 3: the second
  # rule (z3 after b3); 4: equal v, the policy (b wrote last); 5: a's delete wins by the third rule
  # (keep false), 6: b's delete loses by it (a set keep)
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, version, weight, keep, v), ' ' ORDER BY id) FROM docs")
  want="1:10:1:f:a1 2:9:1:f:b2 3:1:0:f:z3 4:2:1:f:same 6:1:1:t:a6"
  [[ $got == "$want" ]] || { dump; fail "node $n docs '$got', expected '$want'"; }
done
for dir in "a <- b" "b <- a"; do
  grep -F "mesh $dir: mesh.rules[3] on table public.docs ('remote.version / remote.weight > local.version / local.weight') raised an error on key 3: division by zero (SQLSTATE 22012): no decision by this rule" "$LOG" >/dev/null ||
    fail "no logged error of mesh.rules[3] on key 3 at the sink mesh $dir: $(grep -F 'raised an error' "$LOG" | tail -3)"
done

log "conflict logs"
want="accounts:update_update:1:rule:a accounts:update_update:2:last_writer_wins:b \
docs:update_update:1:rule:a docs:update_update:2:rule:b docs:update_update:3:rule:a docs:update_update:4:last_writer_wins:b \
docs:update_delete:5:rule:a docs:update_delete:6:rule:a \
items:update_update:1:rule:a items:update_update:2:rule:b items:update_update:3:last_writer_wins:b items:update_update:4:rule:a \
items:update_delete:5:last_writer_wins:b items:insert_insert:10:rule:a"
for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', split_part(table_name, '.', 2), kind, key, policy, winner), ' ' ORDER BY table_name, key::int, kind) FROM _odsync_conflicts")
  [[ $got == "$want" ]] || { dump; fail "node $n conflict log: '$got' (expected '$want')"; }
done
for t in public.items public.accounts public.docs; do mesh_compare a b $t || fail "nodes differ on $t"; done
# items 5 (no REPLICA IDENTITY FULL): the delete pair could not be ranked as its deleted row; said once
grep -q "table public.items has SQL rules, and a concurrent pair with a delete could not be ranked: .*REPLICA IDENTITY FULL on every node" "$LOG" ||
  fail "no warning that a delete pair of public.items could not be ranked: $(grep -F 'ranked' "$LOG" | tail -3)"

log "live phase: concurrent updates of 5 rows at both nodes, versions growing by random steps"
node_psql a -c "INSERT INTO items SELECT g, 0, 'live' FROM generate_series(101, 105) g"
mesh_wait_marker 120 a b
before=$(node_psql a -c "SELECT count(*) FROM _odsync_conflicts")
writer() { # NODE: 150 single-row updates
  local n=$1 i
  for i in $(seq 1 150); do
    # the version grows along every causal chain (a write sees its row's version, adds 1..20): the
    # rule orders the writes consistently with causality, which convergence needs (MULTI_MASTER.md)
    echo "UPDATE items SET version = version + $((1 + RANDOM % 20)), v = '$n-$i' WHERE id = $((101 + RANDOM % 5));"
  done | node_psql "$n" >/dev/null
}
writer a & wa=$!
writer b & wb=$!
wait $wa $wb
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
( mesh_wait_equal 120 public.items ) || { dump; fail "nodes differ after the live phase"; }
after=$(node_psql a -c "SELECT count(*) FROM _odsync_conflicts")
ruled=$(node_psql a -c "SELECT count(*) FROM _odsync_conflicts WHERE key::int > 100 AND policy = 'rule'")
log "live phase: $((after - before)) conflicts at a, $ruled decided by a rule"
((ruled > 0)) || fail "the live phase had no conflict decided by a rule ($((after - before)) conflicts)"
# every conflict a rule decided: the winner's version is the higher one (both nodes' logs)
for n in a b; do
  wrong=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE key::int > 100 AND policy = 'rule' AND
    ((local_row ->> 'version')::int > (remote_row ->> 'version')::int) <> (winner = node)")
  [[ $wrong == 0 ]] || { node_psql $n -c "SELECT * FROM _odsync_conflicts WHERE key::int > 100 AND policy = 'rule'"; fail "node $n: $wrong rule decisions where the lower version won"; }
done
odsync_stop
for t in public.items public.accounts public.docs public.mesh_marker; do mesh_compare a b $t || fail "nodes differ on $t"; done
log "ok"
