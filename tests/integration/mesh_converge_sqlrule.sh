#!/usr/bin/env bash
# mesh_converge_sqlrule.sh — mesh_converge.sh with the SQL business rule
# "public.items: sql: remote.st > local.st" on its 3 nodes (policy last_writer_wins behind it), st
# growing with every write along causality: random upserts, updates, deletes and key-changing
# updates on 30 shared keys, two SIGKILLs of odsync; afterwards all three nodes identical row for row,
# conflicts logged, none twice, some decided by the rule on every node and each of those for the
# higher st (docs/MULTI_MASTER.md, "Business rules"), among them pairs with a delete, ranked as the row
# it deleted (REPLICA IDENTITY FULL on items: "Rules and concurrent deletes"). The same workload
# left the nodes apart in 3 of 4 runs before deletes were ranked (2026-12-05).
# A smaller load than the default run (MESH_TXNS, default here 600) keeps it within CI's time budget.
set -euo pipefail
MESH_SQLRULE=deletes MESH_TXNS=${MESH_TXNS:-600} exec bash "$(dirname "${BASH_SOURCE[0]}")/mesh_converge.sh"
