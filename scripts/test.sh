#!/usr/bin/env bash
# scripts/test.sh — the test command: a sanitizer (ASan+UBSan, -O1) Debug build in build/, every CTest
# test (unit and integration; integration tests each start their own servers, so they run in
# parallel), and beside ctest, at the lowest CPU priority, a Release build of odsync in
# build-release/ and the decoder, queue, checkpoint (apply), router, config, sink, key-tuple,
# COPY-format, pipeline, observability (metrics, EWMA, alerts, log, OTLP, admin config), transform and
# schema-plan unit tests under valgrind from a second, non-sanitized build in build-valgrind/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS=${JOBS:-2}
# ctest runs one test more than the cores: most integration tests wait on servers, timers and
# markers much of the time (at 3 on 2 cores the machine was 85 % busy, at 2 well under). The longest
# tests start first (COST from tests/costs.txt).
CTEST_JOBS=${CTEST_JOBS:-$((JOBS + 1))}

echo "== sanitizer build (build/)"
cmake -S . -B build -DODSYNC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j"$JOBS"

# The release and valgrind builds, and the valgrind runs, go on beside ctest at the lowest CPU
# priority (nice 19): they take the cycles the integration tests leave idle while they wait on
# servers (the machine is ~80 % busy during ctest on 2 cores), and nothing from the tests. Their
# output is printed after ctest's.
side_log=$(mktemp)
side() {
  echo "== release build (build-release/): -O2 finds what the Debug builds do not (README's scripts/build.sh)"
  cmake -S . -B build-release -DODSYNC_SANITIZE=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-release -j"$JOBS" --target odsync
  echo "== valgrind build (build-valgrind/)"
  cmake -S . -B build-valgrind -DODSYNC_SANITIZE=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-valgrind -j"$JOBS"
  valgrind_tests
}

valgrind_tests() {
  local ran=() failed=() t exe
  # One per line (branches add to this list: a line each merges cleanly).
  VALGRIND_TESTS=(
    test_pgoutput
    test_pg_stream
    test_queue
    test_apply
    test_route
    test_schema
    test_config
    test_sink_sqlite
    test_sink_sqlite_schema
    test_sink_sqlite_values
    test_keytuple
    test_pg_copy_text
    test_pg_copy_binary
    test_pipeline
    test_metrics
    test_ewma
    test_alerts
    test_log
    test_otlp
    test_config_admin
    test_sink_clickhouse_types
    test_binlog
    test_binlog_mysql
    test_mysql_gtidset
    test_my_stream
    test_my_config
    test_pg_attalign
    test_pg_ident
    test_sink_clickhouse_keyless
    test_schema_plan
    test_filter_expr
    test_transforms
    test_pipeline_transforms
    test_http_ingest
    test_seal
    test_admin_auth
    test_audit
    test_spool
    test_segfile
    test_dl_seal
    test_poll_position
    test_config_mesh
    test_error_class
    test_breaker
    test_dead_letter
    test_config_fault
    test_pg_readahead
    test_pg_mesh
    test_pg_mesh_vv
    test_pg_mesh_colver
    test_config_diff
    test_poll_keys
    test_mytrig_values
    test_lathist
    test_arena
    test_sink_contract
    test_sink_pg_types
    test_sink_pg_durable
    test_tblowner
  )
  for t in "${VALGRIND_TESTS[@]}"; do
    exe=build-valgrind/$t
    if [[ ! -x "$exe" ]]; then
      echo "valgrind: $exe was not built" >&2
      failed+=("$t")
      continue
    fi
    echo "== valgrind $t"
    # Unit tests find fixtures relative to the source dir, compiled in; run from the build dir.
    if (cd build-valgrind && valgrind -q --error-exitcode=1 --leak-check=full "./$t"); then
      ran+=("$t")
    else
      failed+=("$t")
    fi
  done
  echo "valgrind: ran ${ran[*]:-none}; failed: ${failed[*]:-none}"
  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "valgrind: FAILED: ${failed[*]}" >&2
    return 1
  fi
}

echo "== ctest (beside it, at nice 19: the release and valgrind builds, the valgrind runs; log $side_log)"
# (its own session, setsid, so that stopping the script stops its builds too; with the kernel's
# autogroup scheduling a session is a group that shares the CPU equally with the others whatever
# its processes' nice values, so the group itself is set to nice 19: without it the tests that ran
# beside the builds took 1.75-2.25x as long, CI of 12-06 00:00)
export -f side valgrind_tests
export JOBS
setsid nice -n 19 bash -c '{ echo 19 >/proc/self/autogroup; } 2>/dev/null || true; set -euo pipefail; side' \
  >"$side_log" 2>&1 </dev/null &
side_pid=$!
trap 'kill -- -"$side_pid" 2>/dev/null || true' EXIT
ctest_rc=0
ctest --test-dir build --output-on-failure -j"$CTEST_JOBS" || ctest_rc=$?
side_rc=0
wait "$side_pid" || side_rc=$?
trap - EXIT
cat "$side_log"
rm -f "$side_log"
if ((ctest_rc || side_rc)); then
  echo "scripts/test.sh: FAILED (ctest exit $ctest_rc, release/valgrind builds and runs exit $side_rc)" >&2
  exit 1
fi
echo "scripts/test.sh: all tests passed"
