#!/usr/bin/env bash
# dead_letters_pg_causal.sh — the poison-row scenario of dead_letters_postgres.sh under
# consistency: causal (4 parallel writers into the PostgreSQL sink): a batch whose helper writer
# meets a rejected row is re-run on the serial, change-by-change path; the same exact results.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/poison.sh"

test_init dead_letters_pg_causal
POISON_CONSISTENCY=causal
poison_scenario postgres
