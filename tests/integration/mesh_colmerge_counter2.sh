#!/usr/bin/env bash
# mesh_colmerge_counter2.sh — mesh_colmerge_counter.sh on 2 nodes (a, b): counters on a column_merge table.
set -euo pipefail
CMC_NODES=2 exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_colmerge_counter.sh"
