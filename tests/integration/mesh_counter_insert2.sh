#!/usr/bin/env bash
# mesh_counter_insert2.sh — mesh_counter_insert.sh on 2 nodes (a, b).
set -euo pipefail
CTRINS_NODES=2 exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_counter_insert.sh"
