#!/usr/bin/env bash
# pg_to_pg_kill9.sh — exactly-once across crashes into PostgreSQL (source and target on two
# servers): the scenario of tests/env/kill9.sh. CONSISTENCY (strong|causal|eventual) selects the
# pipeline's consistency level; the pg_to_pg_kill9_<level>.sh wrappers run it with 4 parallel writers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/kill9.sh"

CONSISTENCY=${CONSISTENCY:-strong}
test_init "pg_to_pg_kill9_$CONSISTENCY"
kill9_run postgres
