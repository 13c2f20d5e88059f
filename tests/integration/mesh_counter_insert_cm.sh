#!/usr/bin/env bash
# mesh_counter_insert_cm.sh — mesh_counter_insert.sh on a column_merge table (3 nodes).
set -euo pipefail
CTRINS_POLICY=column_merge exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_counter_insert.sh"
