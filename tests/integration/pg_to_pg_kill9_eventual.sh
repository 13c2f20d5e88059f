#!/usr/bin/env bash
# pg_to_pg_kill9_eventual.sh — pg_to_pg_kill9.sh with consistency: eventual (4 parallel sink writers):
# SIGKILL/restart cycles under load, then an exact row-for-row comparison.
CONSISTENCY=eventual exec bash "$(dirname "${BASH_SOURCE[0]}")/pg_to_pg_kill9.sh"
