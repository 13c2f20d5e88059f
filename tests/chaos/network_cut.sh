#!/usr/bin/env bash
# tests/chaos/network_cut.sh — the network between odsync and the source is cut and restored, under
# pgbench load. odsync runs in its own network namespace joined to the host by a veth pair; the
# source listens on the host end's address, the sinks are reached without that link (SQLite file,
# PostgreSQL sink over its Unix socket). No iptables/netem here: the cut is `ip link set ... down`
# on the host end (packets are dropped, no RST: like a pulled cable).
#
# Injected: a short cut (3 s, below the source's wal_sender_timeout of 5 s), a long one (15 s: the
# walsender gives up, counted from the server log's "replication timeout" line), and a cut of a
# server that stays silent (wal_sender_timeout = 0: the server never gives up and never sends, so
# only odsync's own receive_timeout_ms can notice; counted from odsync's "presumed dead" lines).
# Counted: source rows written during each cut (> 0).
# Verified: odsync never exits; after each restore it streams again (new rows reach both sinks);
# chaos_finish: both sinks equal the source row for row, pgbench_history's exact count, SIGTERM under
# load drains, a restart applies nothing twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/chaos.sh"

test_init chaos_network_cut
ip netns list >/dev/null 2>&1 || fail "ip netns does not work here (root and iproute2 needed)"
# Names and a /30 of our own (parallel-safe): from the shell's pid.
NS=odc$$
HOST_IF=odc$$h
NS_IF=odc$$n
NET="10.$((($$ >> 8) % 200 + 20)).$(($$ & 255))"
CHAOS_NS=$NS
CHAOS_SRC_HOST=$NET.1
# Silence on the stream for 8 s: ask the server for a keepalive at 4 s, give the connection up at 8 s.
CHAOS_SOURCE_EXTRA="receive_timeout_ms: 8000"
test_extra_cleanup() {
  ip link del "$HOST_IF" 2>/dev/null
  ip netns del "$NS" 2>/dev/null
}

chaos_pre_start() {
  ip netns add "$NS" || fail "ip netns add $NS failed"
  ip link add "$HOST_IF" type veth peer name "$NS_IF" || fail "ip link add ... type veth failed"
  ip link set "$NS_IF" netns "$NS"
  ip addr add "$NET.1/30" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip netns exec "$NS" ip addr add "$NET.2/30" dev "$NS_IF"
  ip netns exec "$NS" ip link set "$NS_IF" up
  ip netns exec "$NS" ip link set lo up
  # The source listens on the host end too and lets the namespace in (replication included).
  src_psql -c "ALTER SYSTEM SET listen_addresses = '127.0.0.1,$NET.1'" >/dev/null
  { echo "host all all $NET.0/30 trust"; echo "host replication all $NET.0/30 trust"; cat "$SRC_DATA/pg_hba.conf"; } >"$SRC_DATA/pg_hba.new"
  cat "$SRC_DATA/pg_hba.new" >"$SRC_DATA/pg_hba.conf"
  chaos_pg_stop "$SRC_DIR" fast
  chaos_pg_start "$SRC_DIR"
  ip netns exec "$NS" psql -X -At -h "$NET.1" -p "$SRC_PORT" -U postgres -d bench -c "SELECT 1" >/dev/null ||
    fail "the source is not reachable from namespace $NS at $NET.1:$SRC_PORT"
  chaos_log "namespace $NS: odsync reaches the source at $NET.1:$SRC_PORT over veth $HOST_IF/$NS_IF"
}

chaos_setup
chaos_load_start
slot_active() { [[ $(src_psql -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_bench'" 2>/dev/null) == t ]]; }
walsender_pid() { src_psql -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'odsync_bench'" 2>/dev/null; }

cut() {
  local secs=$1 what=$2 src0 lite0 pid0
  sleep 2
  wait_for slot_active 60 || fail "$what: slot not active before the cut"
  pid0=$(walsender_pid)
  src0=$(chaos_history_src)
  ip link set "$HOST_IF" down
  chaos_log "$what: link $HOST_IF down for $secs s (walsender pid $pid0)"
  sleep "$secs"
  ip link set "$HOST_IF" up
  chaos_injected "$what: source rows written during the cut" "$(($(chaos_history_src) - src0))"
  chaos_running || fail "$what: odsync exited during the cut"
  lite0=$(chaos_history_lite)
  wait_for "(( \$(chaos_history_lite) > $lite0 + 10 ))" 120 || fail "$what: no new rows reached SQLite within 120 s of the restore"
  wait_for slot_active 60 || fail "$what: slot not active after the restore"
  chaos_log "VERIFIED ($what): streaming again (walsender pid $pid0 -> $(walsender_pid)); SQLite pgbench_history $lite0 -> $(chaos_history_lite)"
}

cut 3 "short cut"
timeouts0=$(grep -c "replication timeout" "$PG_LOG" || true)
cut 15 "cut longer than wal_sender_timeout"
timeouts=$(($(grep -c "replication timeout" "$PG_LOG" || true) - timeouts0))
chaos_injected "walsender terminations by wal_sender_timeout during the long cut" "$timeouts"
# A server that never times the walsender out: during the cut nothing reaches odsync, and nothing
# but odsync's own receive timeout ends its wait (without it, the reading socket waits for ever).
src_psql -c "ALTER SYSTEM SET wal_sender_timeout = 0" >/dev/null
src_psql -c "SELECT pg_reload_conf()" >/dev/null
dead0=$(grep -c "presumed dead" "$LOG" || true)
cut 20 "cut of a server that stays silent (wal_sender_timeout = 0)"
chaos_injected "receive timeouts odsync noticed during the silent cut" "$(($(grep -c "presumed dead" "$LOG" || true) - dead0))"
chaos_finish
