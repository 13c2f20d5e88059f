# bench/lib_backend.sh — what one statement costs the PostgreSQL backend that runs it (source it;
# don't run it). Used by the trigger-cost benchmarks (mesh_unique_left_cost.sh,
# mesh_counter_insert_cost.sh), which start their servers through tests/env (pg_psql).
#
#   bench_backend_cpu LABEL PORT DB ROWS SQL
#     runs SQL in one psql session on PORT/DB and prints "LABEL: N ms CPU per 1000 rows": the
#     backend's utime + stime from /proc/<pid>/stat (clock ticks, usually 10 ms) over ROWS. Needs
#     root or the server's user (reads the backend's /proc entry).
bench_backend_cpu() {
  local label=$1 port=$2 db=$3 rows=$4 sql=$5 pid t0 t1 line tick
  tick=$(getconf CLK_TCK)
  coproc P { PGPORT=$port PGDATABASE=$db pg_psql -q 2>&1; }
  echo "SELECT pg_backend_pid();" >&"${P[1]}"
  read -r pid <&"${P[0]}"
  t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  echo "$sql" >&"${P[1]}"
  echo "SELECT 'done';" >&"${P[1]}"
  while read -r line <&"${P[0]}"; do [[ $line == done ]] && break; done
  t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  echo "\\q" >&"${P[1]}"
  wait $P_PID 2>/dev/null || true
  echo "$label: $(((t1 - t0) * 1000 * 1000 / tick / rows)) ms CPU per 1000 rows"
}
