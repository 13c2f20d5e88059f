#!/usr/bin/env bash
# audit_lineage.sh — the audit log and lineage on a real PostgreSQL -> SQLite run (docs/AUDIT.md).
#
# customers (email masked, ssn pseudonymized for the sink) and orders (no transform) are copied by
# the initial snapshot, then streamed: 30 transactions (orders inserted and updated, customers
# inserted), one SIGKILL in the middle, a schema change (orders gains a column), a clean stop.
# Asserts: the sink equals the source for orders (od_compare) and holds the transformed customers;
# `odsync audit verify` passes; the log holds a session record per session, snapshot start/finish
# per table, a schema record per table and a schema_change for orders version 2, the incremental
# snapshot of orders (`odsync snapshot`: requested, start, done), batch records
# whose positions chain (each batch's from = the previous batch's to, across the restart unless a
# gap record says why) and whose orders rows add up to exactly the changes made (never more: no
# batch counted twice); the HMAC key and the DSN password appear nowhere in the audit dir. Then,
# each on its own copy of the log: an edited record, a deleted record, two swapped records, and a
# cut tail (the head file says the last fsynced record) are each detected (exit 1, the record
# named). Lineage: `odsync lineage customers` lists the mask and pseudonymize (never the key),
# `odsync lineage orders` says no transform, an unknown table exits 1, and /status carries the
# lineage of the pipeline with the same transform set id as the batch records.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init audit_lineage
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start gov
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
export ODSYNC_TX_KEY="audit-key-$RANDOM-0123456789abcdef"
SECRET=Pw-$RANDOM-s3cr3t
export ODSYNC_TEST_DSN="$(pg_dsn) password=$SECRET"

pg_psql <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, email text, ssn text, city text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int);
INSERT INTO customers SELECT g, 'c' || g || '@example.com', 'ssn-' || g, 'city ' || (g % 7) FROM generate_series(1, 50) g;
INSERT INTO orders SELECT g, g % 50 + 1, g * 3 FROM generate_series(1, 200) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
audit: { fsync_ms: 200 }
pipelines:
  - name: gov
    source: { type: postgres, dsn: "\${env:ODSYNC_TEST_DSN}", tables: [public.customers, public.orders] }
    sink:
      type: sqlite
      path: $SINK_DB
      transforms:
        - { type: mask, tables: [customers], columns: [email], style: email }
        - { type: pseudonymize, tables: [public.customers], columns: [ssn], key: "\${env:ODSYNC_TX_KEY}" }
YAML
AUDIT=$TEST_TMP/state/audit/gov.jsonl

customers_ok() {
  [[ "$(pg_psql -c "SELECT count(*) FROM customers")" == "$(sqlite3 "$SINK_DB" "SELECT count(*) FROM customers" 2>/dev/null)" ]] &&
    [[ "$(sqlite3 "$SINK_DB" "SELECT count(*) FROM customers WHERE instr(email, '*') = 0 OR ssn LIKE 'ssn-%'")" == 0 ]]
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_gov 60
wait_for "compare --table public.orders" 60 || fail "orders not copied: $(compare --table public.orders 2>&1 | tail -5)"
log "snapshot copied; streaming"

workload() {
  local from=$1 to=$2 i
  for i in $(seq "$from" "$to"); do
    pg_psql <<SQL
BEGIN;
INSERT INTO orders VALUES (1000 + $i, $i, $i), (2000 + $i, $i, $i);
UPDATE orders SET amount = amount + 1 WHERE id = $i;
INSERT INTO customers VALUES (100 + $i, 'new$i@example.org', 'ssn-new-$i', 'x');
COMMIT;
SQL
  done
}
workload 1 15
wait_for "[[ \$(grep -c '\"kind\":\"batch\"' $AUDIT) -ge 1 ]]" 60 || fail "no batch record in $AUDIT"
odsync_kill9
log "SIGKILL after 15 transactions"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_gov 60
workload 16 25
pg_psql -c "ALTER TABLE orders ADD COLUMN note text"
workload 26 30
pg_psql -c "UPDATE orders SET note = 'n' WHERE id = 1030"
wait_for "compare --table public.orders" 90 || fail "orders differ: $(compare --table public.orders 2>&1 | tail -8)"
wait_for customers_ok 60 || fail "customers in the sink are not the transformed source rows"
"$ODSYNC_BIN" snapshot -c "$CONFIG" --table public.orders >/dev/null || fail "odsync snapshot failed"
wait_for "grep -q '\"kind\":\"isnap_table_done\",\"table\":\"public.orders\"' $AUDIT" 120 || fail "no isnap_table_done record"
wait_for "compare --table public.orders" 60 || fail "orders differ after the incremental snapshot"

# /status: the pipeline's lineage (before the stop)
curl -s --max-time 5 "$ADMIN/status" >"$TEST_TMP/status.json"
python3 - "$TEST_TMP/status.json" <<'PY' || fail "/status has no proper lineage section: $(head -c 600 "$TEST_TMP/status.json")"
import json, sys
s = json.load(open(sys.argv[1]))
lin = s["pipelines"][0]["lineage"]
assert lin["source"]["type"] == "postgres", lin
assert lin["source"]["tables"] == ["public.customers", "public.orders"], lin
sk = lin["sinks"][0]
assert sk["name"] == "default" and sk["type"] == "sqlite", sk
types = [t["type"] for t in sk["transforms"]]
assert types == ["mask", "pseudonymize"], types
assert sk["transforms"][1].get("keyed") is True and "key" not in sk["transforms"][1], sk
open(sys.argv[1] + ".id", "w").write(sk["transforms_id"])
PY
odsync_stop
log "stopped cleanly"

# ---- verify on the real log
"$ODSYNC_BIN" audit verify -c "$CONFIG" >"$TEST_TMP/verify.txt" 2>&1 || { cat "$TEST_TMP/verify.txt"; fail "audit verify failed on an untouched log"; }
cat "$TEST_TMP/verify.txt"
grep -q "chain intact" "$TEST_TMP/verify.txt" || fail "verify did not say the chain is intact"

python3 - "$AUDIT" "$TEST_TMP/status.json.id" <<'PY' || fail "the audit records do not tell what happened (see above)"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
tid = open(sys.argv[2]).read()
kinds = [r["kind"] for r in recs]
assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1)), "seq not 1..n"
assert kinds.count("session") == 2, kinds
for t in ("public.customers", "public.orders"):
    assert any(r["kind"] == "snapshot_table_start" and r["table"] == t for r in recs), ("no snapshot start", t)
    done = [r for r in recs if r["kind"] == "snapshot_table_done" and r["table"] == t]
    assert done and done[0]["rows"] == (50 if t.endswith("customers") else 200), ("snapshot done", t, done)
    assert any(r["kind"] == "schema" and r["table"] == t for r in recs), ("no schema record", t)
sc = [r for r in recs if r["kind"] == "schema_change" and r["table"] == "public.orders"]
assert sc and sc[0]["version"] == 2 and ["note", "text", False] in sc[0]["columns"], sc
batches = [r for r in recs if r["kind"] == "batch"]
assert batches, "no batch"
for b in batches:
    assert b["sink"] == "default" and b["transforms"] == tid and len(b["config"]) == 64, b
    assert sum(b["tables"].values()) == b["rows"], b
gaps = [r for r in recs if r["kind"] == "gap"]
# positions chain: a batch starts where the sink's previous known position ended
last = None
for r in recs:
    if r.get("sink") != "default":
        continue
    if r["kind"] == "batch":
        assert last is None or r["from"] == last, ("batch does not start at the last position", last, r)
        last = r["to"]
    elif r["kind"] in ("snapshot_done", "checkpoint", "idle"):
        last = r["position"]
    elif r["kind"] == "session":
        last = r["checkpoint"]
orders = sum(b["tables"].get("public.orders", 0) for b in batches)
customers = sum(b["tables"].get("public.customers", 0) for b in batches)
isnap = [r for r in recs if r["kind"].startswith("isnap_")]
assert [r["kind"] for r in isnap] == ["isnap_requested", "isnap_table_start", "isnap_table_done"], isnap
assert isnap[2]["rows"] + isnap[2]["rows_from_stream"] >= 230, isnap  # 230 orders at the time
want_orders, want_customers = 30 * 3 + 1 + isnap[2]["rows"], 30
print(f"batches: {len(batches)}, orders rows {orders} (made {want_orders}), customers rows {customers} "
      f"(made {want_customers}), gap records {len(gaps)}")
assert orders <= want_orders and customers <= want_customers, "rows counted twice"
assert gaps or (orders == want_orders and customers == want_customers), "rows missing from the audit without a gap record"
PY

! grep -rqF "$ODSYNC_TX_KEY" "$TEST_TMP/state/audit" || fail "the HMAC key is in the audit log"
! grep -rqF "$SECRET" "$TEST_TMP/state/audit" || fail "the DSN password is in the audit log"
log "audit verify passes; the records add up"

# ---- tampering, each on its own copy
tamper() { # NAME PYTHON-EDIT: copy the state dir, edit the copy's log, expect verify to fail with PATTERN
  local name=$1 edit=$2 pattern=$3 dir=$TEST_TMP/t-$1
  cp -r "$TEST_TMP/state" "$dir"
  sed "s#state_dir: .*#state_dir: $dir#" "$CONFIG" >"$dir.yaml"
  python3 -c "$edit" "$dir/audit/gov.jsonl"
  local rc=0
  "$ODSYNC_BIN" audit verify -c "$dir.yaml" --pipeline gov >"$dir.out" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] || { cat "$dir.out"; fail "$name: audit verify exited $rc (expected 1)"; }
  grep -q "$pattern" "$dir.out" || { cat "$dir.out"; fail "$name: verify did not say '$pattern'"; }
  log "$name detected: $(grep -m1 problem "$dir.out")"
}
tamper edited 'import sys
p = sys.argv[1]; L = open(p).read().split("\n")
i = next(k for k, l in enumerate(L) if "\"kind\":\"batch\"" in l and "\"rows\":" in l)
L[i] = L[i].replace("\"rows\":", "\"rows\":1", 1)
open(p, "w").write("\n".join(L))' "record seq [0-9]* was edited"
tamper deleted 'import sys
p = sys.argv[1]; L = open(p).readlines(); del L[4]; open(p, "w").writelines(L)' "record seq 6 does not follow the record before it (seq 4)"
tamper reordered 'import sys
p = sys.argv[1]; L = open(p).readlines(); L[5], L[6] = L[6], L[5]; open(p, "w").writelines(L)' "does not follow the record before it"
tamper truncated 'import sys
p = sys.argv[1]; L = open(p).readlines(); open(p, "w").writelines(L[:-3])' "records were cut from its end"

# ---- lineage
"$ODSYNC_BIN" lineage -c "$CONFIG" customers >"$TEST_TMP/lineage.txt" || fail "odsync lineage customers failed"
cat "$TEST_TMP/lineage.txt"
grep -q "source: *postgres, table public.customers" "$TEST_TMP/lineage.txt" || fail "lineage does not name the source table"
grep -q 'transform 1: *{"type":"mask","tables":\["customers"\],"columns":\["email"\],"style":"email"}' "$TEST_TMP/lineage.txt" || fail "lineage: no mask step"
grep -q 'transform 2: *{"type":"pseudonymize".*"columns":\["ssn"\],"keyed":true}' "$TEST_TMP/lineage.txt" || fail "lineage: no pseudonymize step"
! grep -qF "$ODSYNC_TX_KEY" "$TEST_TMP/lineage.txt" || fail "lineage shows the key"
"$ODSYNC_BIN" lineage -c "$CONFIG" public.orders | grep_q "transforms: *none" || fail "lineage orders should say no transforms"
rc=0
"$ODSYNC_BIN" lineage -c "$CONFIG" nosuch >/dev/null 2>&1 || rc=$?
[[ $rc -eq 1 ]] || fail "lineage of an unknown table exited $rc (expected 1)"
log "all assertions passed"
