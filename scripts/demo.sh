#!/usr/bin/env bash
# scripts/demo.sh — watch odsync copy a busy PostgreSQL shop into an SQLite file, then check it.
#
#   scripts/setup.sh && scripts/build.sh && scripts/demo.sh
#
# Starts a throwaway PostgreSQL (temp dir, free loopback port, wal_level=logical), creates a small
# shop schema, runs `odsync run --progress` in the foreground of your terminal while pgbench
# places, pays, ships and deletes orders for DEMO_SECONDS, lets odsync catch up, stops it with
# SIGTERM and compares every table, source against sink. Ctrl-C stops everything.
#
# Environment:
#   DEMO_SECONDS (30)    how long the load runs
#   DEMO_RATE (1000)     pgbench transactions per second (-R)
#   DEMO_CLIENTS (4)     pgbench clients
#   DEMO_DB (./demo-shop.db)  the SQLite file written (replaced if it exists)
#   DEMO_CATCHUP_TIMEOUT (120)  seconds odsync may take to catch up after the load stops
#   ODSYNC_BIN (build/odsync)  OD_COMPARE (build/od_compare)  PG_BIN (server binaries)
#   DEMO_KEEP=1          keep the temp dir (server log, config, pgbench log)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DEMO_SECONDS=${DEMO_SECONDS:-30}
DEMO_RATE=${DEMO_RATE:-1000}
DEMO_CLIENTS=${DEMO_CLIENTS:-4}
DEMO_CATCHUP_TIMEOUT=${DEMO_CATCHUP_TIMEOUT:-120}
DEMO_DB=${DEMO_DB:-./demo-shop.db}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
OD_COMPARE=${OD_COMPARE:-$ROOT/build/od_compare}
PIPELINE=shop
TABLES=(customers products orders order_items events)

[[ $DEMO_SECONDS =~ ^[1-9][0-9]*$ ]] || od_die "DEMO_SECONDS must be a positive integer"
[[ -x $ODSYNC_BIN ]] || od_die "$ODSYNC_BIN not found: run scripts/build.sh first (or set ODSYNC_BIN)"
for tool in psql pgbench sqlite3; do
  command -v "$tool" >/dev/null || od_die "$tool not found: run scripts/setup.sh first"
done
case $DEMO_DB in /*) ;; *) DEMO_DB=$PWD/${DEMO_DB#./} ;; esac

say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-demo.XXXXXX")
ODSYNC_PID= LOAD_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $LOAD_PID ]] && { od_stop_pid "$LOAD_PID" 10; wait "$LOAD_PID" 2>/dev/null || true; }
  [[ -n $ODSYNC_PID ]] && { od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; }
  od_pg_stop
  if [[ ${DEMO_KEEP:-0} == 1 ]]; then echo "demo: kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; say "interrupted, stopping"; exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ PostgreSQL + schema
say "starting a throwaway PostgreSQL in $TMP"
od_pg_start "$TMP/pg"
DSN=$(od_pg_dsn shop)
say "PostgreSQL $(od_psql postgres -c 'SHOW server_version') on 127.0.0.1:$OD_PG_PORT"
od_psql postgres -c "CREATE DATABASE shop"

od_psql shop <<'SQL'
CREATE TABLE customers (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL,
  email       text NOT NULL UNIQUE,
  vip         boolean NOT NULL DEFAULT false,
  profile     jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
  id          bigserial PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  name        text NOT NULL,
  price       numeric(10,2) NOT NULL,
  stock       integer NOT NULL,
  active      boolean NOT NULL DEFAULT true,
  attrs       jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  status      text NOT NULL DEFAULT 'new'
              CHECK (status IN ('new', 'paid', 'shipped', 'delivered', 'cancelled')),
  total       numeric(12,2) NOT NULL DEFAULT 0,
  note        text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_items (
  order_id    bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  line_no     integer NOT NULL,
  product_id  bigint NOT NULL REFERENCES products (id),
  quantity    integer NOT NULL CHECK (quantity > 0),
  unit_price  numeric(10,2) NOT NULL,
  PRIMARY KEY (order_id, line_no)
);
-- Insert-only audit trail without a key.
CREATE TABLE events (
  at          timestamptz NOT NULL DEFAULT now(),
  kind        text NOT NULL,
  order_id    bigint,
  payload     jsonb
);
SQL

# The shop already holds rows when odsync starts: it creates its publication and slot, copies
# the existing rows (the initial snapshot), then streams the live load on top of them.

od_psql shop <<'SQL'
INSERT INTO customers (name, email, vip, profile, created_at)
SELECT 'Customer ' || g, 'customer' || g || '@example.com', g % 10 = 0,
       jsonb_build_object('segment', (ARRAY['retail', 'business', 'student'])[1 + g % 3],
                          'newsletter', g % 2 = 0),
       now() - g * interval '1 hour'
  FROM generate_series(1, 1000) AS g;
INSERT INTO products (sku, name, price, stock, attrs)
SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, round((1 + random() * 199)::numeric, 2),
       1000, jsonb_build_object('color', (ARRAY['red', 'green', 'blue', 'black'])[1 + g % 4])
  FROM generate_series(1, 200) AS g;
INSERT INTO events (kind, payload) VALUES ('demo_start', '{"customers": 1000, "products": 200}');
SQL

# ------------------------------------------------------------------ load scripts (pgbench -f)
cat >"$TMP/new_order.sql" <<'SQL'
\set cid random(1, 1000)
\set p1 random(1, 200)
\set p2 random(1, 200)
\set q1 random(1, 5)
\set q2 random(1, 3)
BEGIN;
INSERT INTO orders (customer_id, note) VALUES (:cid, CASE WHEN random() < 0.1 THEN 'gift wrap' END) RETURNING id AS oid \gset
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)
  SELECT :oid, 1, id, :q1, price FROM products WHERE id = :p1
  UNION ALL
  SELECT :oid, 2, id, :q2, price FROM products WHERE id = :p2;
UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = :oid) WHERE id = :oid;
UPDATE products SET stock = stock - :q1 WHERE id = :p1;
INSERT INTO events (kind, order_id, payload) VALUES ('order_created', :oid, jsonb_build_object('customer_id', :cid, 'lines', 2));
END;
SQL
cat >"$TMP/advance_status.sql" <<'SQL'
SELECT greatest(1, max(id) - (random() * 300)::bigint) AS oid FROM orders \gset
BEGIN;
UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid' WHEN 'paid' THEN 'shipped'
                                       WHEN 'shipped' THEN 'delivered' ELSE status END,
                  updated_at = now()
 WHERE id = :oid;
INSERT INTO events (kind, order_id, payload) VALUES ('status_changed', :oid, '{}');
END;
SQL
cat >"$TMP/delete_order.sql" <<'SQL'
SELECT greatest(1, max(id) - (random() * 300)::bigint) AS oid FROM orders \gset
WITH gone AS (DELETE FROM orders WHERE id = :oid AND status = 'new' RETURNING id)
INSERT INTO events (kind, order_id, payload) SELECT 'order_deleted', id, '{"reason": "cancelled"}' FROM gone;
SQL
cat >"$TMP/customer.sql" <<'SQL'
\set cid random(1, 1000)
UPDATE customers SET vip = NOT vip, profile = profile || jsonb_build_object('last_seen', now()) WHERE id = :cid;
SQL
cat >"$TMP/restock.sql" <<'SQL'
\set pid random(1, 200)
UPDATE products SET stock = stock + 100, price = round(price * (0.95 + random() * 0.1)::numeric, 2) WHERE id = :pid;
SQL

# ------------------------------------------------------------------ odsync
rm -f "$DEMO_DB" "$DEMO_DB-wal" "$DEMO_DB-shm" "$DEMO_DB-journal"
cat >"$TMP/odsync.yml" <<YAML
state_dir: $TMP/state
pipelines:
  - name: $PIPELINE
    source:
      type: postgres
      dsn: "$DSN"
      tables: [public.customers, public.products, public.orders, public.order_items, public.events]
    sink: { type: sqlite, path: "$DEMO_DB" }
    batch: { max_rows: 5000, max_delay_ms: 20 }
YAML
say "config: $TMP/odsync.yml → sink $DEMO_DB"
say "load: pgbench, $DEMO_RATE tx/s for ${DEMO_SECONDS}s (new orders, status updates, deletes)"
say "events has no key on purpose (an insert-only audit log): odsync warns that only its inserts replicate"
say "odsync run -c odsync.yml --progress   (Ctrl-C stops everything)"
echo >&2

"$ODSYNC_BIN" run -c "$TMP/odsync.yml" --progress &
ODSYNC_PID=$!

pgbench -n -h 127.0.0.1 -p "$OD_PG_PORT" -U postgres \
  -c "$DEMO_CLIENTS" -j 2 -R "$DEMO_RATE" -T "$DEMO_SECONDS" \
  -f "$TMP/new_order.sql@5" -f "$TMP/advance_status.sql@4" -f "$TMP/delete_order.sql@1" \
  -f "$TMP/customer.sql@1" -f "$TMP/restock.sql@1" \
  shop >"$TMP/pgbench.log" 2>&1 &
LOAD_PID=$!

while od_alive "$LOAD_PID"; do
  od_alive "$ODSYNC_PID" || break
  sleep 0.5
done
if ! od_alive "$ODSYNC_PID"; then
  wait "$ODSYNC_PID" && rc=0 || rc=$?
  ODSYNC_PID=
  echo >&2
  od_die "odsync exited early (status $rc); see its output above"
fi
wait "$LOAD_PID" && LOAD_RC=0 || LOAD_RC=$?
LOAD_PID=

# A last transaction marks the end: the LSN read inside it is past every earlier commit and not
# past its own, so the sink holds everything once its checkpoint position reaches it.
MARK_LSN=$(od_psql shop <<'SQL'
BEGIN;
INSERT INTO events (kind, payload) VALUES ('demo_end', '{}');
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
)
TARGET=$(od_lsn_to_int "$MARK_LSN")
T0=$SECONDS
while (( $(od_sink_position "$DEMO_DB" "$PIPELINE") < TARGET )); do
  if ! od_alive "$ODSYNC_PID"; then
    wait "$ODSYNC_PID" && rc=0 || rc=$?
    ODSYNC_PID=
    echo >&2
    od_die "odsync exited (status $rc) before catching up"
  fi
  if (( SECONDS - T0 > DEMO_CATCHUP_TIMEOUT )); then
    echo >&2
    od_die "odsync did not catch up within ${DEMO_CATCHUP_TIMEOUT}s" \
           "(checkpoint $(od_sink_position "$DEMO_DB" "$PIPELINE") < $TARGET = $MARK_LSN)"
  fi
  sleep 0.2
done
CATCHUP=$(( SECONDS - T0 ))
od_stop_pid "$ODSYNC_PID" 60
wait "$ODSYNC_PID" && OD_RC=0 || OD_RC=$?
ODSYNC_PID=
echo >&2
say "load stopped; odsync caught up in ~${CATCHUP}s and exited with status $OD_RC after SIGTERM"

# ------------------------------------------------------------------ results
TPS=$(awk -F'[ =]+' '/^tps/ {printf "%.0f", $2; exit}' "$TMP/pgbench.log")
TXNS=$(awk '/number of transactions actually processed/ {print $NF}' "$TMP/pgbench.log")
say "pgbench: ${TXNS:-?} transactions, ${TPS:-?} tx/s (exit $LOAD_RC)"
if (( LOAD_RC != 0 )); then
  grep -iE "error|abort" "$TMP/pgbench.log" | head -n 5 >&2 || true
fi

# Per table: row count and an md5 of the sorted rows (key + a few value columns) on both sides.
# Values compared are ones whose text is the same in both stores (numeric is kept as PG's text).
declare -A PG_COLS=(
  [customers]="id || '|' || email || '|' || vip::int"
  [products]="id || '|' || stock || '|' || price"
  [orders]="id || '|' || customer_id || '|' || status || '|' || total"
  [order_items]="order_id || '|' || line_no || '|' || quantity || '|' || unit_price"
  [events]="kind || '|' || coalesce(order_id::text, '')"
)
declare -A SQ_COLS=(
  [customers]="id || '|' || email || '|' || vip"
  [products]="id || '|' || stock || '|' || price"
  [orders]="id || '|' || customer_id || '|' || status || '|' || total"
  [order_items]="order_id || '|' || line_no || '|' || quantity || '|' || unit_price"
  [events]="kind || '|' || coalesce(order_id, '')"
)
ALL_OK=1
echo
printf '%-12s %10s %10s %-34s %s\n' table postgres sqlite "rows md5 (postgres)" match
for t in "${TABLES[@]}"; do
  src_n=$(od_psql shop -c "SELECT count(*) FROM $t")
  src_md5=$(od_psql shop -c "SELECT ${PG_COLS[$t]} FROM $t" | LC_ALL=C sort | md5sum | cut -c1-32)
  if snk_n=$(sqlite3 "$DEMO_DB" "SELECT count(*) FROM \"$t\"" 2>/dev/null); then
    snk_md5=$(sqlite3 "$DEMO_DB" "SELECT ${SQ_COLS[$t]} FROM \"$t\"" | LC_ALL=C sort | md5sum | cut -c1-32)
  else
    snk_n=missing snk_md5=-
  fi
  if [[ $src_n == "$snk_n" && $src_md5 == "$snk_md5" ]]; then m=yes; else m=NO; ALL_OK=0; fi
  printf '%-12s %10s %10s %-34s %s\n' "$t" "$src_n" "$snk_n" "$src_md5" "$m"
done
echo
if [[ -x $OD_COMPARE ]]; then
  say "od_compare (every column, every row):"
  if "$OD_COMPARE" --pg "$DSN" --sqlite "$DEMO_DB"; then
    say "od_compare: equal"
  else
    ALL_OK=0
    say "od_compare: DIFFERENCES (above)"
  fi
  echo
fi
if (( ALL_OK )); then
  say "source and sink match."
else
  say "source and sink DIFFER (see above)."
fi
echo
echo "Look at the copy:"
echo "  sqlite3 $(realpath --relative-to="$PWD" "$DEMO_DB" 2>/dev/null || echo "$DEMO_DB") 'select * from orders limit 5'"
echo "  sqlite3 -header -column $(realpath --relative-to="$PWD" "$DEMO_DB" 2>/dev/null || echo "$DEMO_DB") 'select * from _odsync_checkpoint'"
(( ALL_OK ))
