#!/usr/bin/env bash
# scripts/test_costs.sh — rewrite tests/costs.txt from the last ctest run's timings in build/
# (ctest's own build/Testing/Temporary/CTestCostData.txt). Unit tests and tests under 5 s are left
# out: they are cheap wherever they start. Run it after a clean, quiet run of scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data=${1:-build/Testing/Temporary/CTestCostData.txt}
[[ -s "$data" ]] || { echo "test_costs: no timings at $data (run scripts/test.sh first)" >&2; exit 1; }
{
  sed -n '1,/^integration\|^chaos\|^unit/{/^#/p}' tests/costs.txt
  awk 'NF==3 && $1 !~ /^unit\./ && $3>=5 {printf "%s %d\n",$1,$3+0.5}' "$data" | sort -k2,2nr
} > tests/costs.txt.new
mv tests/costs.txt.new tests/costs.txt
echo "test_costs: $(grep -vc '^#' tests/costs.txt) tests in tests/costs.txt"
