#!/usr/bin/env bash
# mesh_converge_colrule.sh — mesh_converge.sh with policy column_merge and the column rule
# "public.items.st: higher wins" (st growing along causality): 3 nodes converge with the rule ordering
# st's concurrent writes (docs/MULTI_MASTER.md, "Business rules and column_merge").
MESH_POLICY=column_merge MESH_COLRULE=1 MESH_TXNS=${MESH_TXNS:-600} exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_converge.sh"
