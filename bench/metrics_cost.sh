#!/usr/bin/env bash
# bench/metrics_cost.sh — what observability costs on the hot path, PG→SQLite, in instructions
# per change (callgrind; see bench/instructions.sh), in one run on the same WAL:
#
#   base: a Release build with the hot-path metric writes compiled out
#         (cmake -DODSYNC_BENCH_NO_METRICS=ON) and no tracing;
#   new:  the Release build users run — every metric on — with OTLP tracing at 1 % to a local
#         receiver that answers 200, and the admin server listening (idle).
#
# The issue's budget is 3 % (new/base ≤ 1.03). Both builds are made here, from this checkout, in
# build-bench-off/ and build-bench-on/.
#
#   bench/metrics_cost.sh            (BENCH_ROWS, BENCH_TXN, BENCH_ROUNDS as for instructions.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v python3 >/dev/null || { echo "python3 is needed for the OTLP receiver" >&2; exit 1; }

for v in off on; do
  flag=OFF
  [[ $v == off ]] && flag=ON
  cmake -S . -B "build-bench-$v" -DCMAKE_BUILD_TYPE=Release -DODSYNC_SANITIZE=OFF \
    -DODSYNC_BENCH_NO_METRICS=$flag >/dev/null
  cmake --build "build-bench-$v" -j2 --target odsync >/dev/null
done

# A trace receiver that accepts every export (the exporter's cost, not a collector's, is measured).
RECV_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$RECV_PORT" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
RECV_PID=$!
trap 'kill $RECV_PID 2>/dev/null || true' EXIT
ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

export BENCH_YAML_BASE=""
export BENCH_YAML_NEW="admin: { listen: \"127.0.0.1:$ADMIN_PORT\" }
tracing: { endpoint: \"http://127.0.0.1:$RECV_PORT/v1/traces\", sample_ratio: 0.01 }"
echo "base: metrics compiled out, no tracing; new: metrics on, tracing 1 % (receiver :$RECV_PORT), admin :$ADMIN_PORT"
bash bench/instructions.sh build-bench-off/odsync build-bench-on/odsync
