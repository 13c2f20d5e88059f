#!/usr/bin/env bash
# admin_dashboard.sh — the dashboard page served at / by a running odsync, in headless Chromium.
#
# Asserts, while a steady insert workload runs through a postgres -> sqlite pipeline:
#  - the page loads from the binary alone (no external request: the page has no CDN reference,
#    and its Content-Security-Policy allows only itself);
#  - the rendered DOM shows a card for the pipeline with its state "streaming", and the page
#    re-rendered from /status several times without a reload;
#  - the number of changes it shows grows between two loads a few seconds apart and matches the
#    scale of /status (the numbers are live);
#  - a screenshot is saved ($ODSYNC_BUILD_DIR/test-artifacts/dashboard.png) and is a real PNG;
#  - the sink equals the source afterwards.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init admin_dashboard
command -v chromium >/dev/null || fail "chromium not installed (scripts/setup.sh installs it)"
command -v curl >/dev/null || fail "curl not installed"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text, n int)"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $SINK_DB }
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60

page=$(curl -s --max-time 5 "$ADMIN/")
[[ "$page" == *"<title>odsync</title>"* ]] || fail "GET / is not the dashboard"
if grep -Eqi '(src|href)="(https?:)?//' <<<"$page"; then fail "the dashboard references an external asset"; fi
grep -qi "^Content-Security-Policy: default-src 'self'" <<<"$(curl -s -i --max-time 5 "$ADMIN/")" || fail "no CSP on /"

# Inserts until the test says stop (a flag file), 300 batches at most.
workload() {
  for i in $(seq 0 299); do
    [[ -f "$TEST_TMP/stop" ]] && break
    pg_psql -c "INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series($((i * 20 + 1)), $((i * 20 + 20))) g"
    sleep 0.05
  done
}
workload_start workload

chrome() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-dev-shm-usage --user-data-dir="$TEST_TMP/chrome-$1" \
    --virtual-time-budget=5000 "${@:2}" 2>>"$TEST_TMP/chromium.log"
}
# The changes the pipeline card shows: data-value="N" on the element with id changes-shop.
shown() { grep -o 'id="changes-shop"[^>]*data-value="[0-9]*"' "$1" | grep -o '[0-9]*"$' | tr -d '"'; }

sleep 2
timeout 60 bash -c "$(declare -f chrome); TEST_TMP=$TEST_TMP chrome 1 --dump-dom $ADMIN/" >"$TEST_TMP/dom1.html" ||
  fail "chromium --dump-dom failed: $(tail -5 "$TEST_TMP/chromium.log")"
grep -q 'data-pipeline="shop"' "$TEST_TMP/dom1.html" || fail "the page shows no card for pipeline shop"
grep -q '>streaming</span>' "$TEST_TMP/dom1.html" || fail "the card does not say streaming"
renders=$(grep -o 'data-renders="[0-9]*"' "$TEST_TMP/dom1.html" | grep -o '[0-9]*')
((${renders:-0} >= 2)) || fail "the page rendered ${renders:-0} times (it should poll /status without reloading)"
n1=$(shown "$TEST_TMP/dom1.html")
[[ -n "$n1" ]] || fail "no changes number on the card"
sleep 3
timeout 60 bash -c "$(declare -f chrome); TEST_TMP=$TEST_TMP chrome 2 --dump-dom $ADMIN/" >"$TEST_TMP/dom2.html" ||
  fail "chromium --dump-dom (2) failed"
n2=$(shown "$TEST_TMP/dom2.html")
((n2 > n1)) || fail "the changes shown did not grow while load ran ($n1 -> $n2)"
log "dashboard: card for shop, streaming, $renders renders in one load, changes shown $n1 -> $n2"

ART=${ODSYNC_BUILD_DIR}/test-artifacts
mkdir -p "$ART"
rm -f "$ART/dashboard.png"
timeout 60 bash -c "$(declare -f chrome); TEST_TMP=$TEST_TMP chrome 3 --window-size=1280,800 --screenshot=$ART/dashboard.png $ADMIN/" \
  >/dev/null || fail "chromium --screenshot failed: $(tail -5 "$TEST_TMP/chromium.log")"
[[ -s "$ART/dashboard.png" && $(head -c 8 "$ART/dashboard.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
  fail "no PNG screenshot at $ART/dashboard.png"
log "screenshot: $ART/dashboard.png ($(stat -c %s "$ART/dashboard.png") bytes)"

touch "$TEST_TMP/stop"
workload_wait
wait_equal 60
odsync_stop
log "all assertions passed"
