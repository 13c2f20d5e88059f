#!/usr/bin/env bash
# admin_traces.sh — OpenTelemetry traces (OTLP/HTTP JSON) of a postgres -> sqlite pipeline.
#
# 1. With sample_ratio 1, a test collector receives the export requests; each is checked against
#    the OTLP JSON shape (resourceSpans / scopeSpans / spans; 32-hex trace ids, 16-hex span ids;
#    each batch a root "odsync.batch" with children decode, queue_wait, sink.apply, sink.commit
#    linked by parentSpanId inside its trace, start <= end, nested in the root) and the roots'
#    odsync.rows add up to exactly the rows applied; the roots carry the pipeline, the sink, the
#    source transaction id and the checkpoint position.
# 2. With a collector that accepts connections and never answers, the stream is not slowed: the
#    same workload catches up in at most twice the time (+5 s) it took with a working collector,
#    the failures are counted (odsync_trace_export_failures_total) and SIGTERM still exits 0
#    within 12 s.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init admin_traces
command -v python3 >/dev/null || fail "python3 not installed (scripts/setup.sh installs it)"
command -v curl >/dev/null || fail "curl not installed"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

COLL_PID=
test_extra_cleanup() {
  [[ -n "$COLL_PID" ]] && kill "$COLL_PID" 2>/dev/null && wait "$COLL_PID" 2>/dev/null
  return 0
}

# collector PORT OUT MODE: MODE ok = store each body as one line of OUT and answer 200 {};
# MODE hang = accept, read nothing, answer nothing (a collector that is stuck).
collector() {
  perl -MIO::Socket::INET -e '
    my ($port, $out, $mode) = @ARGV;
    my $srv = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 64, ReuseAddr => 1)
      or die "listen: $!";
    my @held;
    while (my $c = $srv->accept) {
      if ($mode eq "hang") { push @held, $c; next; }
      my ($len, $line) = (0);
      while (defined($line = <$c>)) { last if $line eq "\r\n"; $len = $1 if $line =~ /^Content-Length:\s*(\d+)/i; }
      my $body = ""; while (length($body) < $len) { my $n = read($c, $body, $len - length($body), length($body)); last unless $n; }
      open(my $f, ">>", $out) or die; print $f "$body\n"; close $f;
      print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"; close $c;
    }' "$1" "$2" "$3" &
  COLL_PID=$!
}

pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
TPORT=$(pg_free_port)
BODIES=$TEST_TMP/otlp.jsonl
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)"
config() {
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
tracing: { endpoint: "http://127.0.0.1:$TPORT/v1/traces", sample_ratio: $1, service_name: odsync-test }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $SINK_DB }
YAML
}

collector "$TPORT" "$BODIES" ok
config 1
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
t0=$(date +%s)
for i in $(seq 0 29); do
  pg_psql -c "INSERT INTO items SELECT g, 'v' || g FROM generate_series($((i * 10 + 1)), $((i * 10 + 10))) g"
done
pg_psql -c "UPDATE items SET v = v || '+' WHERE id <= 50"
wait_equal 60
base=$(($(date +%s) - t0))
want_rows=350
check_traces() {
  python3 - "$BODIES" "$want_rows" <<'PY'
import json, re, sys
path, want = sys.argv[1], int(sys.argv[2])
HEX32, HEX16 = re.compile(r"^[0-9a-f]{32}$"), re.compile(r"^[0-9a-f]{16}$")
rows = roots = spans_n = 0
xids = set()
for line in open(path):
    if not line.strip(): continue
    req = json.loads(line)
    for rs in req["resourceSpans"]:
        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
        assert attrs["service.name"] == {"stringValue": "odsync-test"}, attrs
        for ss in rs["scopeSpans"]:
            assert ss["scope"]["name"] == "odsync"
            by_id = {}
            for s in ss["spans"]:
                assert HEX32.match(s["traceId"]) and HEX16.match(s["spanId"]), s
                assert s["traceId"] != "0" * 32 and s["spanId"] != "0" * 16
                st, en = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
                assert 0 < st <= en, s
                assert s["kind"] == 1
                by_id[s["spanId"]] = s
                spans_n += 1
            for s in ss["spans"]:
                if "parentSpanId" not in s:
                    assert s["name"] == "odsync.batch", s["name"]
                    a = {x["key"]: x["value"] for x in s["attributes"]}
                    assert a["odsync.pipeline"] == {"stringValue": "shop"}
                    assert a["odsync.sink"] == {"stringValue": "default"}
                    assert a["odsync.position.end"]["stringValue"].startswith("pg:")
                    rows += int(a["odsync.rows"]["intValue"])
                    xids.add(int(a["odsync.source.txn_id"]["intValue"]))
                    roots += 1
                    kids = sorted(c["name"] for c in ss["spans"] if c.get("parentSpanId") == s["spanId"])
                    assert kids == ["odsync.decode", "odsync.queue_wait", "odsync.sink.apply", "odsync.sink.commit"], kids
                else:
                    p = by_id[s["parentSpanId"]]
                    assert p["traceId"] == s["traceId"]
                    assert int(p["startTimeUnixNano"]) <= int(s["startTimeUnixNano"])
                    assert int(s["endTimeUnixNano"]) <= int(p["endTimeUnixNano"])
assert rows == want, f"roots carry {rows} rows, expected {want}"
assert all(x > 0 for x in xids), xids
print(f"traces: {roots} batches, {spans_n} spans, {rows} rows, {len(xids)} distinct source txn ids")
PY
}
wait_for "check_traces" 15 || { check_traces || true; fail "the collector did not receive valid traces for all $want_rows rows"; }
check_traces
odsync_stop
kill "$COLL_PID"; wait "$COLL_PID" 2>/dev/null || true; COLL_PID=

log "a collector that never answers: the stream must not slow down"
collector "$TPORT" /dev/null hang
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
t0=$(date +%s)
for i in $(seq 100 129); do
  pg_psql -c "INSERT INTO items SELECT g, 'v' || g FROM generate_series($((i * 10 + 1)), $((i * 10 + 10))) g"
done
wait_equal 60
took=$(($(date +%s) - t0))
log "caught up $took s after the workload started (with a collector that answers: $base s)"
((took <= 2 * base + 5)) || fail "the stream slowed down with a stuck collector: $took s, $base s with a working one"
wait_for "curl -s --max-time 5 http://127.0.0.1:$APORT/metrics | grep -Eq '^odsync_trace_export_failures_total [1-9]'" 20 ||
  fail "no trace export failure counted: $(curl -s "http://127.0.0.1:$APORT/metrics" | grep trace_)"
t1=$(date +%s)
odsync_stop
(($(date +%s) - t1 <= 12)) || fail "odsync took $(($(date +%s) - t1)) s to stop with a stuck collector"
log "all assertions passed"
