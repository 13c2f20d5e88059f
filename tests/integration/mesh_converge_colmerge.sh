#!/usr/bin/env bash
# mesh_converge_colmerge.sh — mesh_converge.sh with policy column_merge (fallback last_writer_wins) on
# its 3 nodes: random upserts, updates (of both columns, of one column) and deletes on 30 shared keys,
# values that repeat all the time ('p<client>', n + 1), two SIGKILLs of odsync; afterwards all three
# nodes identical row for row, conflicts logged, none twice (docs/MULTI_MASTER.md, "column_merge").
# A smaller load than the default run (MESH_TXNS, default here 600) keeps it within CI's time budget.
set -euo pipefail
MESH_POLICY=column_merge MESH_TXNS=${MESH_TXNS:-600} exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_converge.sh"
