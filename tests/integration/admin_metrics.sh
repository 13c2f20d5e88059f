#!/usr/bin/env bash
# admin_metrics.sh — the admin server of a running postgres -> sqlite pipeline under load.
#
# Asserts:
#  - /healthz answers 200 and /readyz 200 once the pipeline streams;
#  - while a known workload runs (2,000 inserts in 20 transactions, 500 updates in 10, 300 deletes
#    in 1), bad requests get clear 4xx answers (unknown path 404, POST 405 with Allow, a 40 kB
#    header 431, a 40 kB URL 414) and a slowloris client (headers never finished) is cut off by
#    the server's idle timeout, while the sink still ends up equal to the source row for row;
#  - /metrics counts exactly the rows applied, by operation (insert 2000, update 500, delete 300,
#    and the sink holds 1,700 rows), `promtool check metrics` passes on it, and a real Prometheus
#    server scraping odsync answers a PromQL query with the same total, and every query of the
#    Grafana dashboard (docs/grafana/odsync.json) runs on it (the main panels with data);
#  - /readyz flips to 503 (naming the pipeline and its state) while PostgreSQL is down and back to
#    200 after it returns; the error is counted in odsync_errors_total and shown by /status, and
#    the `errors_per_minute: 0.5` alert fires (one error is enough) (gauge and one log line);
#  - `odsync status -c` and `--url` print the table; an unreachable --url exits 1 with a message;
#  - the DSN's password (from ${env:}) appears in no log line, metric, status or page, and with
#    log.format json every log line is a JSON object; those about the pipeline carry "pipeline".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init admin_metrics
for tool in curl promtool prometheus; do
  command -v "$tool" >/dev/null || fail "$tool not installed (scripts/setup.sh installs it)"
done
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

PROM_PID=
SLOW_PID=
test_extra_cleanup() {
  [[ -n "$PROM_PID" ]] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
  [[ -n "$SLOW_PID" ]] && kill "$SLOW_PID" 2>/dev/null && wait "$SLOW_PID" 2>/dev/null
  if [[ ${TEST_RC:-0} -ne 0 && -f "$TEST_TMP/prometheus.log" ]]; then
    echo "---- last 20 lines of the Prometheus log ----" >&2
    tail -n 20 "$TEST_TMP/prometheus.log" >&2
  fi
  return 0
}

pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text, n int)"
# The DSN carries a password (the test server trusts every local connection, so it is not checked):
# it must appear in no log line, no metric, no status and no page.
SECRET=Pw-$RANDOM-s3cr3t
export ODSYNC_TEST_DSN="$(pg_dsn) password=$SECRET"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log: { format: json }
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "\${env:ODSYNC_TEST_DSN}", tables: [public.items], reconnect_max_ms: 500 }
    sink: { type: sqlite, path: $SINK_DB }
    alerts: { errors_per_minute: 0.5 }
YAML

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
# The value of one sample line of the exposition (exact series name with labels).
metric() { grep -F "$1 " "$TEST_TMP/metrics.txt" | awk '{print $NF}'; }

odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(http_code $ADMIN/healthz) == 200 ]]" 20 || fail "/healthz did not answer 200"
wait_for "[[ \$(http_code $ADMIN/readyz) == 200 ]]" 60 || fail "/readyz never became 200: $(curl -s $ADMIN/readyz)"
wait_slot_active odsync_shop 60
log "streaming; /readyz 200; workload with bad requests and a slowloris client alongside"

# Slowloris: a request line and one header, then silence. The server must close it by itself.
perl -MIO::Socket::INET -MTime::HiRes=time -e '
  my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ARGV[0], Proto => "tcp") or die "connect: $!";
  print $s "GET /metrics HTTP/1.1\r\nHost: x\r\n"; $s->flush;
  my $t0 = time; my $buf; my $n = sysread($s, $buf, 4096);
  printf "%.1f %d\n", time - $t0, $n // -1;' "$APORT" >"$TEST_TMP/slow.out" 2>&1 &
SLOW_PID=$!

workload() {
  for i in $(seq 0 19); do
    pg_psql -c "INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series($((i * 100 + 1)), $((i * 100 + 100))) g"
  done
  for i in $(seq 0 9); do
    pg_psql -c "UPDATE items SET n = n + 1, v = v || '+' WHERE id BETWEEN $((i * 50 + 1)) AND $((i * 50 + 50))"
  done
  pg_psql -c "DELETE FROM items WHERE id > 1700"
}
workload_start workload

[[ $(http_code $ADMIN/no/such/page) == 404 ]] || fail "unknown path: expected 404"
grep -q "not found: /no/such/page" <<<"$(curl -s --max-time 5 $ADMIN/no/such/page)" || fail "404 body does not name the path"
[[ $(http_code -X POST -d x=1 $ADMIN/metrics) == 405 ]] || fail "POST /metrics: expected 405"
grep -qi "^Allow: GET, HEAD" <<<"$(curl -s -i --max-time 5 -X DELETE $ADMIN/status)" || fail "405 without an Allow header"
big=$(head -c 40000 /dev/zero | tr '\0' a)
[[ $(http_code -H "X-Big: $big" $ADMIN/metrics) == 431 ]] || fail "a 40 kB header: expected 431"
[[ $(http_code "$ADMIN/$big") == 414 ]] || fail "a 40 kB URL: expected 414"
[[ $(http_code "$ADMIN/status?format=xml") == 400 ]] || fail "unknown status format: expected 400"
[[ $(http_code $ADMIN/metrics) == 200 ]] || fail "/metrics stopped answering during bad requests"

workload_wait
wait_equal 60
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM items") == 1700 ]] || fail "sink does not hold 1,700 rows"

# Counters match what was applied (the batch that carries the last transaction is committed before
# wait_equal can see it; give the apply thread's counters one more second to be published).
ok=0
for _ in $(seq 1 25); do
  curl -s --max-time 5 "$ADMIN/metrics" >"$TEST_TMP/metrics.txt"
  if [[ $(metric 'odsync_changes_applied_total{pipeline="shop",sink="default",op="delete"}') == 300 ]]; then ok=1; break; fi
  sleep 0.2
done
((ok)) || fail "odsync_changes_applied_total{op=delete} never reached 300: $(grep changes_applied "$TEST_TMP/metrics.txt")"
for want in insert:2000 update:500 delete:300 read:0 truncate:0; do
  got=$(metric "odsync_changes_applied_total{pipeline=\"shop\",sink=\"default\",op=\"${want%%:*}\"}")
  [[ "$got" == "${want#*:}" ]] || fail "odsync_changes_applied_total op=${want%%:*}: $got, expected ${want#*:}"
done
txns=$(metric 'odsync_transactions_applied_total{pipeline="shop",sink="default"}')
[[ "$txns" == 31 ]] || fail "odsync_transactions_applied_total is $txns, expected 31"
lat=$(metric 'odsync_end_to_end_latency_seconds_count{pipeline="shop",sink="default"}')
[[ "$lat" == 31 ]] || fail "the end-to-end latency histogram counts $lat transactions, expected 31 (one per transaction)"
# The stage account: every stage observed once per sampled batch (a batch's first transaction).
batches=$(metric 'odsync_batches_total{pipeline="shop",sink="default"}')
st_n=
for st in source decode queue apply commit; do
  n=$(metric "odsync_stage_latency_seconds_count{pipeline=\"shop\",sink=\"default\",stage=\"$st\"}")
  [[ -n $n && $n -gt 0 ]] || fail "odsync_stage_latency_seconds{stage=$st} has no observations ($n)"
  [[ -z $st_n || $n == "$st_n" ]] || fail "stage $st counts $n observations, the others $st_n"
  st_n=$n
done
((st_n <= batches)) || fail "the stage account counts $st_n batches, more than the $batches committed"
grep -q '^odsync_pipeline_ready{pipeline="shop"} 1$' "$TEST_TMP/metrics.txt" || fail "odsync_pipeline_ready is not 1"
grep -q '^odsync_lag_bytes{pipeline="shop",sink="default"} ' "$TEST_TMP/metrics.txt" || fail "no odsync_lag_bytes"
log "counters: insert 2000, update 500, delete 300, 31 transactions, $lat latency observations (one per transaction), stage account of $st_n of $batches batches"
promtool check metrics <"$TEST_TMP/metrics.txt" || fail "promtool check metrics failed"

wait "$SLOW_PID" || fail "slowloris client failed: $(cat "$TEST_TMP/slow.out")"
SLOW_PID=
read -r slow_secs slow_n <"$TEST_TMP/slow.out" || fail "slowloris client: no result ($(cat "$TEST_TMP/slow.out"))"
[[ "$slow_n" -le 0 ]] || log "slowloris client got $slow_n bytes back"
awk -v s="$slow_secs" 'BEGIN { exit !(s >= 5 && s <= 30) }' || fail "slowloris connection closed after ${slow_secs}s (expected the ~10 s idle timeout)"
log "slowloris connection closed by the server after ${slow_secs}s"

# A real Prometheus scrapes odsync and answers PromQL.
PPORT=$(pg_free_port)
cat >"$TEST_TMP/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: odsync
    static_configs: [{ targets: ["127.0.0.1:$APORT"] }]
YAML
prometheus --config.file="$TEST_TMP/prometheus.yml" --storage.tsdb.path="$TEST_TMP/prom" \
  --web.listen-address="127.0.0.1:$PPORT" >"$TEST_TMP/prometheus.log" 2>&1 &
PROM_PID=$!
query='sum(odsync_changes_applied_total{job="odsync",pipeline="shop"})'
prom_value() {
  curl -s --max-time 5 -G "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1" |
    sed -n 's/.*"value":\[[0-9.]*,"\([^"]*\)"\].*/\1/p'
}
wait_for "[[ \$(prom_value '$query') == 2800 ]]" 45 ||
  fail "Prometheus did not answer $query = 2800 (got '$(prom_value "$query")')"
up=$(prom_value 'up{job="odsync"}')
[[ "$up" == 1 ]] || fail "Prometheus says up{job=odsync} = '$up'"
log "Prometheus: $query = 2800, up = 1"
# Every query of the Grafana dashboard in docs/ runs on this Prometheus without error, and the main
# panels have data (rate() needs at least two scrapes: wait for three).
wait_for "(( \$(prom_value 'count_over_time(up{job=\"odsync\"}[1m])' || echo 0) >= 3 ))" 20 ||
  fail "Prometheus did not scrape odsync three times"
python3 - "$ODSYNC_SOURCE_DIR/docs/grafana/odsync.json" "http://127.0.0.1:$PPORT" <<'PY' || fail "the Grafana dashboard's queries do not work"
import json, sys, urllib.parse, urllib.request
dash, base = json.load(open(sys.argv[1])), sys.argv[2]
n = with_data = 0
for panel in dash["panels"]:
    for t in panel["targets"]:
        expr = t["expr"].replace("$pipeline", ".*")
        url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        r = json.load(urllib.request.urlopen(url, timeout=5))
        assert r["status"] == "success", (panel["title"], expr, r)
        n += 1
        if r["data"]["result"]: with_data += 1
        elif panel["title"] in ("Ready", "Changes/s", "Lag", "Changes applied by operation", "Queue depth"):
            raise AssertionError(f"no data for panel {panel['title']}: {expr}")
print(f"grafana: {n} queries ran, {with_data} with data")
PY
kill "$PROM_PID"; wait "$PROM_PID" 2>/dev/null || true; PROM_PID=

# odsync status, from the config and from a URL.
out=$("$ODSYNC_BIN" status -c "$CONFIG")
echo "$out"
grep -Eq '^shop +streaming +postgres->sqlite +2800 ' <<<"$out" || fail "odsync status -c does not show the pipeline"
grep -q '^shop ' <<<"$("$ODSYNC_BIN" status --url "$ADMIN")" || fail "odsync status --url does not show the pipeline"
set +e
err=$("$ODSYNC_BIN" status --url "http://127.0.0.1:1" 2>&1); rc=$?
set -e
[[ $rc -eq 1 && "$err" == *"cannot reach the admin server at http://127.0.0.1:1"* ]] ||
  fail "status against a dead URL: exit $rc, '$err'"

# /readyz flips while PostgreSQL is down, and back.
log "stopping PostgreSQL: /readyz must say 503"
pg_as_user "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null
wait_for "[[ \$(http_code $ADMIN/readyz) == 503 ]]" 30 || fail "/readyz stayed 200 with PostgreSQL down"
grep -Eq '^pipeline shop: (retrying|starting)$' <<<"$(curl -s --max-time 5 $ADMIN/readyz)" || fail "/readyz 503 body: $(curl -s $ADMIN/readyz)"
[[ $(http_code $ADMIN/healthz) == 200 ]] || fail "/healthz must stay 200 while a pipeline retries"
grep -q '"last_error":{"class":"e' <<<"$(curl -s --max-time 5 $ADMIN/status)" || fail "/status shows no last_error"
pg_as_user "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null
wait_for "[[ \$(http_code $ADMIN/readyz) == 200 ]]" 60 || fail "/readyz did not return to 200 after PostgreSQL came back"
curl -s --max-time 5 "$ADMIN/metrics" >"$TEST_TMP/metrics.txt"
grep -Eq '^odsync_errors_total\{pipeline="shop",class="[a-z]+"\} [1-9]' "$TEST_TMP/metrics.txt" || fail "no odsync_errors_total after the outage"
grep -Eq '^odsync_retries_total\{pipeline="shop"\} [1-9]' "$TEST_TMP/metrics.txt" || fail "no odsync_retries_total after the outage"
# Alerts are judged once a second: give the judge a few seconds on a loaded machine.
wait_for "curl -s --max-time 5 $ADMIN/metrics | grep_q '^odsync_alert_firing{pipeline=\"shop\",alert=\"errors_per_minute\"} 1\$'" 15 ||
  fail "the errors_per_minute alert did not fire: $(curl -s --max-time 5 $ADMIN/metrics | grep -E 'errors_total|alert_firing')"
[[ $(grep -c 'pipeline shop: alert errors_per_minute firing' "$LOG") == 1 ]] || fail "expected one errors_per_minute firing log line"
log "/readyz 503 during the outage, 200 after; errors and retries counted; the errors_per_minute alert fired"

wait_slot_active odsync_shop 60
pg_psql -c "INSERT INTO items SELECT g, 'after', 0 FROM generate_series(5001, 5100) g"
wait_equal 60
ok=0
for _ in $(seq 1 25); do
  curl -s --max-time 5 "$ADMIN/metrics" >"$TEST_TMP/metrics.txt"
  [[ $(metric 'odsync_changes_applied_total{pipeline="shop",sink="default",op="insert"}') == 2100 ]] && { ok=1; break; }
  sleep 0.2
done
((ok)) || fail "insert counter is not 2100 after 100 more rows"
# No secret anywhere an operator looks; every log line is one JSON object, and those about the
# pipeline name it.
for what in metrics status "status?format=text" readyz ""; do
  ! grep -q "$SECRET" <<<"$(curl -s --max-time 5 "$ADMIN/$what")" || fail "the DSN password appears in /$what"
done
odsync_stop
! grep -q "$SECRET" "$LOG" || fail "the DSN password appears in the log"
python3 - "$LOG" <<'PY' || fail "the log is not JSON lines naming their pipeline"
import json, sys
n = named = 0
for line in open(sys.argv[1]):
    if line.startswith("=== odsync run"): continue
    rec = json.loads(line)
    assert set(rec) >= {"ts", "level", "msg"}, rec
    if "pipeline shop" in rec["msg"]: assert rec.get("pipeline") == "shop", rec
    n += 1; named += rec.get("pipeline") == "shop"
assert n > 5 and named > 0, (n, named)
print(f"log: {n} JSON lines, {named} name pipeline shop")
PY
log "all assertions passed"
