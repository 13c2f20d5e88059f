#!/usr/bin/env bash
# pg_to_sqlite_kill9.sh — exactly-once across crashes into SQLite: the scenario of
# tests/env/kill9.sh (SIGKILLs at random moments under a mixed workload, acknowledgement never
# ahead of the sink's checkpoint, exact row-for-row result).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/kill9.sh"

test_init pg_to_sqlite_kill9
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-25}
kill9_run sqlite
