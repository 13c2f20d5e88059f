#!/usr/bin/env bash
# pg_stream_in_progress.sh — streaming of in-progress transactions (protocol v2) into SQLite: the
# scenario of tests/env/pg_stream.sh (large committed, rolled back and savepoint transactions,
# interleaved ones, a SIGKILL in the middle of a streamed transaction; row for row).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg_stream.sh"

test_init pg_stream_in_progress
stream_run sqlite
