#!/usr/bin/env bash
# mesh_converge.sh — 3-node mesh (a, b, c) under a conflicting workload with SIGKILLs of odsync.
#
# Workload: pgbench at every node at once, 2 clients x MESH_TXNS transactions each, every
# transaction a random insert-or-upsert, update, delete or key-changing update (the row moves to
# another of the keys unless that one is taken) of one of 30 overlapping keys (some transactions
# write two keys), so concurrent writes to the same row are frequent. odsync is
# SIGKILLed twice while it runs and started again.
# Asserts, after the load stops and every stream has caught up (markers a->b->c->a):
#  - all three nodes hold identical rows of items (od_compare_pg, pairwise a-b, a-c, b-c);
#  - conflicts were detected (the workload guarantees concurrent writes) at every node, of at
#    least two kinds, and no conflict was logged twice for the same remote transaction and key
#    (a transaction applied twice would log its conflicts twice);
#  - every node's replication origins advanced for both peers.
# MESH_DIAG=1 logs the whole conflict history of diverging keys; MESH_LOG_LEVEL=debug (tests/env/mesh.sh)
# logs every mesh decision. MESH_POLICY (default last_writer_wins) picks the policy (priority; column_merge,
# fallback last_writer_wins, with REPLICA IDENTITY FULL: mesh_converge_colmerge.sh runs it in CI); MESH_TXNS
# (default 1000) the load; MESH_KEYS (default 30) the number of shared keys (fewer: more conflicts per key).
# MESH_GC_INTERVAL (e.g. 1): mesh.gc_interval_s, and the clean-up must have removed tombstones on every node.
# MESH_COLRULE=1 (with MESH_POLICY=column_merge: mesh_converge_colrule.sh): a column st and the rule
# "public.items.st: higher wins", which orders st's concurrent writes (docs/MULTI_MASTER.md, "Business
# rules and column_merge"); st only grows along causality, as a rule needs: updates add 1-3, an
# insert takes the clock in µs (the nodes share this machine's clock, so a write that saw another is later).
# MESH_SQLRULE=deletes (not with column_merge, which refuses SQL rules: mesh_converge_sqlrule.sh): the
# same column st, growing along causality, and the SQL rule "public.items: sql: remote.st > local.st"
# on the table, REPLICA IDENTITY FULL on items, so the rule ranks a delete as the row it deleted
# (docs/MULTI_MASTER.md, "Rules and concurrent deletes"). Every node must have conflicts the rule
# decided, each won by the higher st (the log carries deleted rows too), some of them with a delete.
# MESH_SQLRULE=1: the same without deletes or moves (they become updates) and without FULL.
# MESH_SKEW_US (default 0): node c's PostgreSQL clock runs that many µs off (tests/tools/preload/
# clockshift.c, as in mesh_hlc_skew.sh), so last_writer_wins orders by hybrid logical clocks under skew.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

POLICY=${MESH_POLICY:-last_writer_wins}
TXNS=${MESH_TXNS:-1000}
KEYS=${MESH_KEYS:-30}
test_init mesh_converge
COLRULE=${MESH_COLRULE:-}
[[ -z $COLRULE || $POLICY == column_merge ]] || fail "MESH_COLRULE needs MESH_POLICY=column_merge"
SQLRULE=${MESH_SQLRULE:-}
[[ -z $SQLRULE || ($POLICY != column_merge && -z $COLRULE) ]] || fail "MESH_SQLRULE does not go with column_merge or MESH_COLRULE"
ST=$COLRULE$SQLRULE # the column st: MESH_COLRULE or MESH_SQLRULE
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
SKEW=${MESH_SKEW_US:-0}
if [[ $SKEW != 0 ]]; then
  ${CC:-cc} -shared -fPIC -O2 -o "$TEST_TMP/clockshift.so" \
    "${ODSYNC_SOURCE_DIR:-$(dirname "${BASH_SOURCE[0]}")/../..}/tests/tools/preload/clockshift.c" -ldl ||
    fail "cannot build the clock-shift library"
  chmod 711 "$TEST_TMP"
  chmod 755 "$TEST_TMP/clockshift.so"
  mesh_start_nodes a b
  OD_CLOCK_SHIFT_US=$SKEW LD_PRELOAD=$TEST_TMP/clockshift.so mesh_start_nodes c
else
  mesh_start_nodes a b c
fi
for n in a b c; do
  node_psql $n <<SQL
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0${ST:+, st bigint NOT NULL DEFAULT 0});
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
INSERT INTO items SELECT g, 'init', 0 FROM generate_series(1, $KEYS) g;
SQL
  # column_merge reads which columns an update changed from its old and new images
  [[ $POLICY == column_merge ]] &&
    node_psql $n -c "ALTER TABLE items REPLICA IDENTITY FULL; ALTER TABLE mesh_marker REPLICA IDENTITY FULL" >/dev/null
  # an SQL rule ranks a delete as the row it deleted: its stream carries that row with FULL
  [[ $SQLRULE == deletes ]] && node_psql $n -c "ALTER TABLE items REPLICA IDENTITY FULL" >/dev/null
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
EXTRA=""
[[ $POLICY == priority ]] && EXTRA="  priority: [b, a, c]"
# (MESH_COLRULE=norule: the same column and workload without the rule, for comparison)
[[ -n $COLRULE && $COLRULE != norule ]] && EXTRA='  rules: ["public.items.st: higher wins"]'
if [[ -n $SQLRULE ]]; then
  [[ -n $EXTRA ]] && EXTRA+=$'\n'
  EXTRA+='  rules: ["public.items: sql: remote.st > local.st"]'
fi

# MESH_GC_INTERVAL=1: the clean-up of tombstones and _odsync_hlc runs every second during the load
# (tests/env/mesh.sh puts it in the config)
GC=${MESH_GC_INTERVAL:-}
mesh_config "$CONFIG" "$POLICY" "public.items, public.mesh_marker" "$EXTRA"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120

# MESH_COLRULE, MESH_SQLRULE: st grows with every write of the row (1-3 per update, the clock in µs on
# an insert)
INS_ST="" UPS_ST="" UPD_ST="" MOVE_ST=""
if [[ -n $ST ]]; then
  INS_ST=", (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
  UPS_ST=", st = items.st + :step"
  UPD_ST=", st = st + :step"
  MOVE_ST=", st = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint" # a new key: as an insert
fi
cat >"$TEST_TMP/load.sql" <<SQL
\set k random(1, $KEYS)
\set k2 random(1, $KEYS)
\set op random(1, 11)
\set step random(1, 3)
\if :op <= 3
INSERT INTO items VALUES (:k, 'i' || :client_id || '-' || md5(random()::text), 1$INS_ST)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = items.n + 1$UPS_ST;
\elif :op <= 7
UPDATE items SET v = 'u' || :client_id || '-' || md5(random()::text), n = n + 1$UPD_ST WHERE id = :k;
\elif :op <= 8
BEGIN;
UPDATE items SET n = n + 1 WHERE id = :k;
UPDATE items SET v = 'p' || :client_id WHERE id = :k2;
COMMIT;
\elif :op <= 10
DELETE FROM items WHERE id = :k;
\else
DO \$\$ BEGIN UPDATE items SET id = :k2, n = n + 1$MOVE_ST WHERE id = :k; EXCEPTION WHEN unique_violation THEN NULL; END \$\$;
\endif
SQL
if [[ $SQLRULE == 1 ]]; then # no deletes, no moves: they become updates (above)
  sed -i -e 's/^DELETE FROM items WHERE id = :k;$/UPDATE items SET n = n + 1, st = st + :step WHERE id = :k;/' \
    -e 's/^DO .*$/UPDATE items SET v = '"'"'m'"'"' || :client_id, st = st + :step WHERE id = :k2;/' "$TEST_TMP/load.sql"
  grep -q -e '^DELETE' -e '^DO ' "$TEST_TMP/load.sql" && fail "load.sql still deletes or moves rows"
fi
load() {
  local pids=() n rc=0
  for n in a b c; do
    # --max-tries: a transaction chosen as a deadlock victim (against a sink holding a batch's locks:
    # the sinks' deadlock_timeout is shorter, but an application that already waited longer can
    # still be the one PostgreSQL aborts) is retried, as an application would
    pgbench -n -h 127.0.0.1 -p "${NODE_PORT[$n]}" -U postgres -c 2 -j 1 -t "$TXNS" --max-tries=10 --verbose-errors \
      -f "$TEST_TMP/load.sql" shop \
      >"$TEST_TMP/pgbench_$n.log" 2>&1 &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  return $rc
}
log "workload: 3 nodes x 2 clients x $TXNS transactions, policy $POLICY"
load &
LOAD_PID=$!
test_extra_cleanup() { [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null; return 0; }
for k in 1 2; do
  # Kill once the mesh has applied something new since the last start.
  before=$(node_psql a -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE relname = 'items'")
  deadline=$(($(date +%s) + 60))
  while kill -0 $LOAD_PID 2>/dev/null && (($(date +%s) < deadline)); do
    now=$(node_psql a -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE relname = 'items'")
    ((now > before + 100)) && break
    sleep 0.5
  done
  log "SIGKILL $k of odsync"
  odsync_kill9
  sleep 1
  odsync_start "$CONFIG" "$LOG"
done
wait $LOAD_PID || fail "the workload failed: $(tail -n 5 "$TEST_TMP"/pgbench_*.log)"
LOAD_PID=
for n in a b c; do grep -q "number of transactions actually processed: $((2 * TXNS))/" "$TEST_TMP/pgbench_$n.log" ||
  fail "pgbench at $n did not complete its transactions: $(cat "$TEST_TMP/pgbench_$n.log")"; done
log "load done; waiting for the mesh to quiesce"
mesh_wait_active 120
for round in 1 2; do
  mesh_wait_marker 300 a b; mesh_wait_marker 300 b c; mesh_wait_marker 300 c a
  mesh_wait_marker 300 a c; mesh_wait_marker 300 c b; mesh_wait_marker 300 b a
done
diverged() { # A B: show what differs (rows, tombstones, versions, conflicts of those keys), then fail
  local n keys
  keys=$( (node_psql "$1" -c "SELECT id || ':' || v || ':' || n || ':' || ${ST:+st ||} '' FROM items"; node_psql "$2" -c "SELECT id || ':' || v || ':' || n || ':' || ${ST:+st ||} '' FROM items") |
    sort | uniq -u | cut -d: -f1 | sort -un | paste -sd, -)
  for n in a b c; do
    log "node $n, keys $keys: $(node_psql $n -c "SELECT string_agg(id || '=' || v || ':' || n || ${ST:+':' || st ||} '@' || (pg_xact_commit_timestamp_origin(xmin)).roident || '/' || (extract(epoch FROM (pg_xact_commit_timestamp_origin(xmin)).timestamp) * 1000000)::int8, ' ') FROM items WHERE id IN ($keys)")"
    log "  tombstones: $(node_psql $n -c "SELECT string_agg(key || '@' || (pg_xact_commit_timestamp_origin(xmin)).roident, ' ') FROM _odsync_tombstones WHERE tbl = 'public.items' AND key = ANY (string_to_array('$keys', ','))")"
    log "  versions: $(node_psql $n -c "SELECT string_agg(key || '=' || node || '/' || ts || coalesce(' [' || also || ']', ''), ' ') FROM _odsync_versions WHERE tbl = 'public.items' AND key = ANY (string_to_array('$keys', ','))")"
    [[ $POLICY == column_merge ]] &&
      log "  local column writes: $(node_psql $n -c "SELECT string_agg(key || '=' || array_to_string(ARRAY(SELECT coalesce((extract(epoch FROM pg_xact_commit_timestamp(x)) * 1000000)::int8::text, '-') FROM unnest(xids) x), ','), ' ') FROM _odsync_colver WHERE tbl = 'public.items' AND key = ANY (string_to_array('$keys', ','))")"
    log "  conflicts: $(node_psql $n -c "SELECT string_agg(key || ' ' || kind || ' ' || local_origin || '/' || coalesce((extract(epoch FROM local_commit_ts) * 1000000)::int8::text, '-') || ' vs ' || remote_origin || '/' || (extract(epoch FROM remote_commit_ts) * 1000000)::int8 || ' -> ' || winner, '; ') FROM (SELECT * FROM _odsync_conflicts WHERE table_name = 'public.items' AND key = ANY (string_to_array('$keys', ',')) ORDER BY id DESC LIMIT 12) x")"
    # MESH_DIAG=1: the whole conflict history of those keys, in the order it was logged (with both rows)
    [[ -n "${MESH_DIAG:-}" ]] && log "  history: $(node_psql $n -c "SELECT string_agg(id || '@' || to_char(logged_at, 'MI:SS.US') || ' ' || key || ' ' || kind || ' ' || local_origin || '/' || coalesce((extract(epoch FROM local_commit_ts) * 1000000)::int8::text, '-') || '/h' || coalesce(local_hlc::text, '-') || ' vs ' || remote_origin || '/' || (extract(epoch FROM remote_commit_ts) * 1000000)::int8 || '/h' || coalesce(remote_hlc::text, '-') || ' lsn ' || remote_lsn || ' -> ' || winner || coalesce(' ' || merged::text, '') || ' local ' || coalesce(local_row::text, '-') || ' remote ' || coalesce(remote_row::text, '-'), E'\n' ORDER BY id) FROM _odsync_conflicts WHERE table_name = 'public.items' AND key = ANY (string_to_array('$keys', ','))")"
    [[ -n "${MESH_DIAG:-}" ]] && log "  origins: $(node_psql $n -c "SELECT string_agg(o.roident || '=' || o.roname || ' at ' || coalesce(s.remote_lsn::text, '-'), ' ') FROM pg_replication_origin o LEFT JOIN pg_replication_origin_status s ON s.local_id = o.roident")"
  done
  fail "$1 and $2 differ"
}
mesh_compare a b public.items || diverged a b
mesh_compare a c public.items || diverged a c
mesh_compare b c public.items || diverged b c
total=0
for n in a b c; do
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  kinds=$(node_psql $n -c "SELECT string_agg(kind || '=' || c, ' ' ORDER BY kind) FROM (SELECT kind, count(*) c FROM _odsync_conflicts GROUP BY kind) x")
  dup=$(node_psql $n -c "SELECT count(*) FROM (SELECT 1 FROM _odsync_conflicts GROUP BY remote_origin, remote_lsn, table_name, key, kind HAVING count(*) > 1) x")
  log "node $n: $c conflicts ($kinds)"
  ((c > 0)) || fail "node $n logged no conflict under a workload with concurrent writes to 30 keys"
  [[ $dup == 0 ]] || fail "node $n logged $dup conflicts twice (a transaction applied twice?)"
  total=$((total + c))
  prog=$(node_psql $n -c "SELECT count(*) FROM pg_replication_origin_status WHERE external_id LIKE 'odsync\_%' AND remote_lsn > '0/0'")
  ((prog >= 2)) || fail "node $n: replication origins did not advance for both peers"
done
kinds_all=$(for n in a b c; do node_psql $n -c "SELECT DISTINCT kind FROM _odsync_conflicts"; done | sort -u | wc -l)
if [[ $SQLRULE == 1 ]]; then # rows are only updated: update_update only
  ((kinds_all >= 1)) || fail "no kind of conflict seen"
else
  ((kinds_all >= 2)) || fail "only $kinds_all kind(s) of conflict seen; expected several"
fi
log "rows: $(node_psql a -c 'SELECT count(*) FROM items'), conflicts logged: $total"
if [[ -n $COLRULE && $COLRULE != norule ]]; then # the rule ordered st in merged conflicts (listed under "rule") on every node
  for n in a b c; do
    ruled=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE policy = 'column_merge' AND merged -> 'rule' ? 'st'")
    log "node $n: $ruled conflicts with st ordered by the rule"
    ((ruled > 0)) || fail "node $n: no merged conflict lists st under rule"
  done
fi
if [[ -n $SQLRULE ]]; then # the rule decided conflicts on every node, each for the higher st
  for n in a b c; do
    ruled=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE policy = 'rule'")
    wrong=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE policy = 'rule' AND
      ((local_row ->> 'st')::bigint > (remote_row ->> 'st')::bigint) IS DISTINCT FROM (winner = local_origin)")
    log "node $n: $ruled conflicts decided by the rule, $wrong of them for the lower st"
    ((ruled > 0)) || fail "node $n: no conflict was decided by the SQL rule"
    if [[ $SQLRULE == deletes ]]; then # deletes ranked as their rows: rule decisions of pairs with one
      rdel=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE policy = 'rule' AND kind LIKE '%delete'")
      log "node $n: $rdel of them on a pair with a delete"
      ((rdel > 0)) || fail "node $n: no pair with a delete was decided by the SQL rule"
    fi
    [[ $wrong == 0 ]] || fail "node $n: $wrong rule decisions went to the lower st, e.g. $(node_psql $n -c "SELECT string_agg(concat_ws(' ', key, kind, 'local', local_origin, local_row ->> 'st', 'remote', remote_origin, remote_row ->> 'st', 'winner', winner, 'node', node), '; ') FROM (SELECT * FROM _odsync_conflicts WHERE policy = 'rule' AND ((local_row ->> 'st')::bigint > (remote_row ->> 'st')::bigint) IS DISTINCT FROM (winner = local_origin) LIMIT 4) x")"
  done
fi
if [[ -n $GC && $GC != 0 ]]; then # the clean-up did run and removed tombstones on every node
  for n in a b c; do
    removed=$(grep -o "mesh clean-up on node $n .*removed [0-9]* tombstones" "$LOG" | grep -o "removed [0-9]*" | awk '{ s += $2 } END { print s + 0 }')
    hl=$(grep -o "mesh clean-up on node $n .* clock rows" "$LOG" | grep -o "[0-9]* clock rows" | awk '{ s += $1 } END { print s + 0 }')
    log "node $n: the clean-up removed $removed tombstones and $hl _odsync_hlc rows; $(node_psql $n -c "SELECT count(*) FROM _odsync_tombstones") tombstones and $(node_psql $n -c "SELECT count(*) FROM _odsync_hlc") _odsync_hlc rows left"
    ((removed > 0)) || fail "node $n: the clean-up (gc_interval_s $GC) removed no tombstone"
  done
fi
odsync_stop
log "ok"
