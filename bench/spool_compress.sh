#!/usr/bin/env bash
# bench/spool_compress.sh [REPEAT] — build bench/spool_compress.c against a Release build's core
# (build-release/, made by `cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DODSYNC_SANITIZE=OFF
# && cmake --build build-release --target odsync`) and run it: bytes and CPU per spool record with
# no compression, lz4 and zstd (level 1), on the same chunk in the same process.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${BUILD:-$ROOT/build-release}
[[ -f $B/libodsync_core.a ]] || { echo "no $B/libodsync_core.a: build build-release first" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT/include" -I"$ROOT/src" "$ROOT/bench/spool_compress.c" -o "$OUT/spool_compress" \
  "$B/libodsync_core.a" $(ls "$B"/libodsync_s*.a) "$B/libodsync_core.a" \
  $(pkg-config --libs libzstd liblz4 zlib libpq sqlite3 yaml-0.1 libcrypto libcurl hiredis libmariadb libmicrohttpd) \
  -lpthread -lm
"$OUT/spool_compress" "${1:-200}"
