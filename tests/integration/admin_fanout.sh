#!/usr/bin/env bash
# admin_fanout.sh — metrics and status of one pipeline with two sinks (`sinks:`), postgres -> 2x sqlite.
#
# Asserts: after a workload (1,000 inserts, 200 updates, 100 deletes), each sink equals the source
# row for row, and /metrics counts exactly those rows for each sink under its own name
# (odsync_changes_applied_total{sink="a"|"b"}), with odsync_sink_info naming its type, a sink
# position and no lag for each; /status lists both sinks with their positions and counts;
# `promtool check metrics` passes. A second odsync whose admin.listen port is taken exits 1 before
# starting its pipeline, with an error naming FILE:LINE:COL and the address.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init admin_fanout
for tool in curl promtool; do command -v "$tool" >/dev/null || fail "$tool not installed (scripts/setup.sh installs it)"; done
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

pg_start shop
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sinks:
      - { name: a, type: sqlite, path: $TEST_TMP/a.db }
      - { name: b, type: sqlite, path: $TEST_TMP/b.db }
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
for i in $(seq 0 9); do
  pg_psql -c "INSERT INTO items SELECT g, 'v' || g FROM generate_series($((i * 100 + 1)), $((i * 100 + 100))) g"
done
pg_psql -c "UPDATE items SET v = v || '+' WHERE id <= 200"
pg_psql -c "DELETE FROM items WHERE id > 900"
SINK_DB=$TEST_TMP/a.db wait_equal 60
SINK_DB=$TEST_TMP/b.db wait_equal 60

metric() { grep -F "$1 " "$TEST_TMP/metrics.txt" | awk '{print $NF}'; }
ok=0
for _ in $(seq 1 25); do
  curl -s --max-time 5 "$ADMIN/metrics" >"$TEST_TMP/metrics.txt"
  [[ $(metric 'odsync_changes_applied_total{pipeline="shop",sink="a",op="delete"}') == 100 &&
     $(metric 'odsync_changes_applied_total{pipeline="shop",sink="b",op="delete"}') == 100 ]] && { ok=1; break; }
  sleep 0.2
done
((ok)) || fail "the delete counters of both sinks never reached 100: $(grep changes_applied "$TEST_TMP/metrics.txt")"
for s in a b; do
  for want in insert:1000 update:200 delete:100; do
    got=$(metric "odsync_changes_applied_total{pipeline=\"shop\",sink=\"$s\",op=\"${want%%:*}\"}")
    [[ "$got" == "${want#*:}" ]] || fail "sink $s op ${want%%:*}: $got, expected ${want#*:}"
  done
  [[ $(metric "odsync_transactions_applied_total{pipeline=\"shop\",sink=\"$s\"}") == 12 ]] || fail "sink $s: transactions != 12"
  [[ $(metric "odsync_sink_info{pipeline=\"shop\",sink=\"$s\",type=\"sqlite\"}") == 1 ]] || fail "no odsync_sink_info for $s"
  pos=$(metric "odsync_sink_position{pipeline=\"shop\",sink=\"$s\"}")
  ((pos > 0)) || fail "sink $s: position $pos"
done
promtool check metrics <"$TEST_TMP/metrics.txt" || fail "promtool check metrics failed"
status=$(curl -s --max-time 5 "$ADMIN/status")
python3 - <<PY || fail "/status does not list both sinks: $status"
import json
s = json.loads('''$status''')
p = s["pipelines"][0]
names = [k["name"] for k in p["sinks"]]
assert names == ["a", "b"], names
for k in p["sinks"]:
    assert k["type"] == "sqlite" and k["changes_applied"] == 1300 and k["position"] != "none", k
assert p["changes_applied"] == 1300, p["changes_applied"]
PY
log "both sinks: 1000 inserts, 200 updates, 100 deletes, 12 transactions each; /status lists a and b"

# A second odsync whose admin.listen is taken stops at once, naming the config position and address.
cat >"$TEST_TMP/second.yaml" <<YAML
state_dir: $TEST_TMP/state2
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: other
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $TEST_TMP/other.db }
YAML
set +e
out=$(timeout 30 "$ODSYNC_BIN" run -c "$TEST_TMP/second.yaml" --no-progress 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] || fail "a second odsync on a taken admin port exited $rc: $out"
grep -q "second.yaml:2:18: admin.listen 127.0.0.1:$APORT: cannot listen: Address already in use" <<<"$out" ||
  fail "unclear error for a taken admin port: $out"
[[ -z $(pg_psql -c "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'odsync_other'") ]] ||
  fail "the second odsync started its pipeline although its admin port was taken"
odsync_stop
log "all assertions passed"
