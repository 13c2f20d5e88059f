#!/usr/bin/env bash
# dead_letters_postgres.sh — poison rows into the postgres sink (tests/env/poison.sh, poison_scenario):
# a sink CHECK constraint and a raising trigger reject some source changes (inserts, updates, a
# keyless table's rows); with on_poison: dead_letter exactly those changes end as dead letters
# (named by table, op and key), every other row arrives (row for row), also across SIGKILLs (no
# dead letter twice); dlq list/show name the error code, position and typed columns; a replay
# before the fix is rejected and keeps them; after the fix, dlq replay --all makes the sink equal
# to the source; on_poison: stop ends the pipeline with an error naming table, key and position.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/poison.sh"

test_init dead_letters_postgres
poison_scenario postgres
