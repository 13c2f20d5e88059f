#!/usr/bin/env bash
# scripts/build.sh — Release build of odsync and its helper programs into build/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# SANITIZE=OFF explicitly: build/ may hold the sanitizer configuration of scripts/test.sh.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DODSYNC_SANITIZE=OFF
cmake --build build -j"$(nproc)"
