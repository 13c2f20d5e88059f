#!/usr/bin/env bash
# admin_alerts.sh — lag and its alert while the sink is blocked, on a postgres -> sqlite pipeline.
#
# A steady insert workload runs; then another process holds SQLite's write lock for 7 s (the sink
# waits: busy_timeout_ms 30000). Asserts:
#  - odsync_lag_seconds rises above 2 s while the sink is blocked and falls back under 1 s after;
#  - the alert `lag_seconds: 2` fires (odsync_alert_firing 1, one "firing" log line) and resolves
#    (gauge 0, one "resolved" line), and the webhook receiver gets exactly one firing and one
#    resolved JSON POST for it, with the pipeline, alert, value and threshold;
#  - /status shows the lag while blocked; the sink equals the source afterwards.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init admin_alerts
command -v curl >/dev/null || fail "curl not installed"
command -v sqlite3 >/dev/null || fail "sqlite3 not installed"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

HOOK_PID=
LOCK_PID=
test_extra_cleanup() {
  [[ -n "$HOOK_PID" ]] && kill "$HOOK_PID" 2>/dev/null && wait "$HOOK_PID" 2>/dev/null
  [[ -n "$LOCK_PID" ]] && kill "$LOCK_PID" 2>/dev/null && wait "$LOCK_PID" 2>/dev/null
  return 0
}

pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
HPORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
HOOKS=$TEST_TMP/hooks.jsonl

# The webhook receiver: one JSON body per line into $HOOKS, answers 204.
perl -MIO::Socket::INET -e '
  my ($port, $out) = @ARGV;
  my $srv = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
  while (my $c = $srv->accept) {
    my ($len, $line) = (0);
    while (defined($line = <$c>)) { last if $line eq "\r\n"; $len = $1 if $line =~ /^Content-Length:\s*(\d+)/i; }
    my $body = ""; read($c, $body, $len) if $len;
    open(my $f, ">>", $out) or die; print $f "$body\n"; close $f;
    print $c "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"; close $c;
  }' "$HPORT" "$HOOKS" &
HOOK_PID=$!

pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $SINK_DB, busy_timeout_ms: 30000 }
    alerts: { lag_seconds: 2, webhook: "http://127.0.0.1:$HPORT/hook" }
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60

# Inserts until the test says stop (a flag file), 400 at most.
workload() {
  for i in $(seq 1 400); do
    [[ -f "$TEST_TMP/stop" ]] && break
    pg_psql -c "INSERT INTO items VALUES ($i, 'v$i')"
    sleep 0.05
  done
}
workload_start workload

lag() { curl -s --max-time 5 "$ADMIN/metrics" | awk '/^odsync_lag_seconds\{pipeline="shop",sink="default"\} / {print $2}'; }
firing() { curl -s --max-time 5 "$ADMIN/metrics" | awk '/^odsync_alert_firing\{pipeline="shop",alert="lag_seconds"\} / {print $2}'; }

# On a machine loaded far beyond its cores the start itself can lag > 2 s: a real alert, fired and
# resolved before the block. What the block must cause is counted from here: exactly one more of each.
count_in() { local n; n=$(grep -c -- "$2" "$1" 2>/dev/null) || true; echo "${n:-0}"; } # FILE PATTERN: matching lines, 0 if none
sleep 2
wait_for "[[ \$(firing) == 0 ]]" 15 || fail "the lag alert fires before the sink is blocked (lag $(lag))"
wait_for "[[ \$(count_in '$HOOKS' '\"state\":') -eq \$(count_in '$LOG' 'pipeline shop: alert lag_seconds') ]]" 10 ||
  fail "the webhook did not receive the POSTs of the alerts logged before the block"
hooks_before=$(count_in "$HOOKS" .)
fired_before=$(count_in "$HOOKS" '"state":"firing"')
resolved_before=$(count_in "$HOOKS" '"state":"resolved"')
lines_fired_before=$(count_in "$LOG" "pipeline shop: alert lag_seconds firing")
lines_resolved_before=$(count_in "$LOG" "pipeline shop: alert lag_seconds resolved")
(( fired_before == 0 )) || log "before the block the start's own lag fired the alert $fired_before time(s) (resolved $resolved_before)"
log "blocking the sink: another process holds SQLite's write lock for 7 s (lag before: $(lag) s)"
(echo ".timeout 10000"; echo "BEGIN EXCLUSIVE;"; echo "SELECT 'locked';"; sleep 7; echo "COMMIT;") |
  sqlite3 "$SINK_DB" >"$TEST_TMP/lock.out" 2>&1 &
LOCK_PID=$!
wait_for "grep -q locked '$TEST_TMP/lock.out'" 10 || fail "could not take SQLite's write lock: $(cat "$TEST_TMP/lock.out")"
wait_for "awk -v l=\"\$(lag)\" 'BEGIN { exit !(l > 2) }'" 6 || fail "lag did not rise above 2 s while the sink was blocked (lag $(lag))"
wait_for "[[ \$(firing) == 1 ]]" 5 || fail "the lag alert did not fire (lag $(lag))"
grep -q '"lag_seconds":[2-9]' <<<"$(curl -s --max-time 5 "$ADMIN/status")" || grep -q '"lag_seconds":[1-9][0-9]' <<<"$(curl -s "$ADMIN/status")" ||
  fail "/status does not show the lag: $(curl -s "$ADMIN/status")"
log "blocked: lag $(lag) s, alert firing"
wait "$LOCK_PID" || fail "the lock holder failed: $(cat "$TEST_TMP/lock.out")"
LOCK_PID=
wait_for "awk -v l=\"\$(lag)\" 'BEGIN { exit !(l < 1) }'" 15 || fail "lag did not fall back under 1 s after the sink was released (lag $(lag))"
wait_for "[[ \$(firing) == 0 ]]" 5 || fail "the lag alert did not resolve"
log "released: lag $(lag) s, alert resolved"

touch "$TEST_TMP/stop"
workload_wait
wait_equal 60
wait_for "[[ \$(grep -c . '$HOOKS') -ge $((hooks_before + 2)) ]]" 10 ||
  fail "the webhook received $(grep -c . "$HOOKS" 2>/dev/null || echo 0) POSTs, expected $((hooks_before + 2))"
cat "$HOOKS"
[[ $(grep -c '"state":"firing"' "$HOOKS") == $((fired_before + 1)) && $(grep -c '"state":"resolved"' "$HOOKS") == $((resolved_before + 1)) ]] ||
  fail "expected one firing and one resolved POST for the block"
tail -n 2 "$HOOKS" | head -n 1 | grep -q '^{"pipeline":"shop","alert":"lag_seconds","state":"firing","value":[0-9.e+]*,"threshold":2,"at":"20[0-9-]*T[0-9:]*Z"}$' ||
  fail "the firing POST does not have the expected shape"
[[ $(grep -c "pipeline shop: alert lag_seconds firing" "$LOG") == $((lines_fired_before + 1)) ]] || fail "expected one 'firing' log line for the block"
[[ $(grep -c "pipeline shop: alert lag_seconds resolved" "$LOG") == $((lines_resolved_before + 1)) ]] || fail "expected one 'resolved' log line for the block"
odsync_stop
log "all assertions passed"
