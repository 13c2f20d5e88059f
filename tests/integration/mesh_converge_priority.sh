#!/usr/bin/env bash
# mesh_converge_priority.sh — mesh_converge.sh with policy priority (order b, a, c) on its 3 nodes:
# random upserts, updates, deletes and key-changing updates on 30 shared keys, two SIGKILLs of
# odsync; afterwards all three nodes identical row for row, conflicts logged, none twice
# (docs/MULTI_MASTER.md, "Conflict kinds and policies").
# A smaller load than the default run (MESH_TXNS, default here 600) keeps it within CI's time budget.
set -euo pipefail
MESH_POLICY=priority MESH_TXNS=${MESH_TXNS:-600} exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_converge.sh"
