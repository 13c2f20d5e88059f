#!/usr/bin/env bash
# bench/pg_update_shapes.sh [ROWS] [BATCH] [ROUNDS] — build bench/pg_update_shapes.c and run it on a
# throwaway PostgreSQL server on loopback: the server CPU per row of full-row updates of existing
# keys as the upsert the PostgreSQL sink sends, as UPDATE ... FROM unnest, and as one statement that
# updates and inserts the keys the table lacks, on the same rows, interleaved, ROUNDS times.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
OUT=$(mktemp -d)
chmod 755 "$OUT"
trap 'od_pg_stop || true; rm -rf "$OUT"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$(pg_config --includedir)" "$ROOT/bench/pg_update_shapes.c" \
  -o "$OUT/pg_update_shapes" $(pkg-config --libs libpq)
od_pg_start "$OUT/pg" "shared_buffers = 256MB" "max_wal_size = 4GB" "autovacuum = off"
"$OUT/pg_update_shapes" "$(od_pg_dsn)" "${1:-200000}" "${2:-1000}" "${3:-2}"
