#!/usr/bin/env bash
# pg_to_pg_kill9.sh — exactly-once across crashes into PostgreSQL (source and target on two
# servers): the scenario of tests/env/kill9.sh. CONSISTENCY (strong|causal|eventual) selects the
# pipeline's consistency level; the pg_to_pg_kill9_<level>.sh wrappers run it with 4 parallel writers.
# KILL9_SINK_EXTRA adds keys to the sink (pg_to_pg_kill9_async.sh: synchronous_commit: off), and
# KILL9_NAME_SUFFIX to the test's name.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/kill9.sh"

CONSISTENCY=${CONSISTENCY:-strong}
test_init "pg_to_pg_kill9_$CONSISTENCY${KILL9_NAME_SUFFIX:-}"
kill9_run postgres
