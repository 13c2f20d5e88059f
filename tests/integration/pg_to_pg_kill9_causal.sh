#!/usr/bin/env bash
# pg_to_pg_kill9_causal.sh — pg_to_pg_kill9.sh with consistency: causal (4 parallel sink writers):
# SIGKILL/restart cycles under load, then an exact row-for-row comparison.
CONSISTENCY=causal exec bash "$(dirname "${BASH_SOURCE[0]}")/pg_to_pg_kill9.sh"
