#!/usr/bin/env bash
# pii_scan.sh — `odsync scan` and `pii: { detect: enforce }` against a real PostgreSQL (docs/PII.md).
#
# people: 5000 rows of realistic fake data (tests/fixtures/pii_people.py) with 10 PII columns and 10
# decoy columns; products: 30 rows (a bare `name` column, prices, skus). Asserts:
# - scan samples people with TABLESAMPLE (after ANALYZE) and products with a plain LIMIT (small);
#   it prints no sampled value; precision and recall over the 24 columns are computed against the
#   known truth and printed; recall must be 1.0 and precision >= 0.85 at confidence >= 0.5 (the
#   columns the printed block protects);
# - enforce without transforms: odsync refuses (exits 1) naming a people column, and the sink holds
#   no people row;
# - enforce with the printed transforms block pasted as it is (ODSYNC_PII_KEY set): the pipeline
#   runs, the sink holds every row, masked; then a new column filled with e-mail addresses
#   (ALTER TABLE ADD COLUMN + UPDATE) stops the pipeline with an error naming public.people.alt_email,
#   and the audit log holds the pii_refused record.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pii_scan
pg_start pii
SINK_DB=$TEST_TMP/sink.db
LOG=$TEST_TMP/odsync.log
export ODSYNC_PII_KEY="pii-key-$RANDOM-0123456789abcdef"
FIXTURE=$(dirname "${BASH_SOURCE[0]}")/../fixtures/pii_people.py

pg_psql <<'SQL'
CREATE TABLE people (id int PRIMARY KEY, first_name text, last_name text, email text, phone text, card_number text,
  iban text, ssn text, last_ip text, street_address text, order_ref text, sku text, amount numeric(10,2),
  created_on text, tracking_no text, notes text, app_version text, account_number text, shift_start text,
  ni_number text);
CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(8,2), sku text);
INSERT INTO products SELECT g, (ARRAY['Desk lamp', 'Office chair', 'Notebook A5', 'USB-C cable', 'Monitor arm'])[g % 5 + 1]
  || ' ' || g, g * 4.5, 'SK-' || (1000 + g) FROM generate_series(1, 30) g;
SQL
python3 "$FIXTURE" 5000 >"$TEST_TMP/people.csv"
pg_psql -c "\\copy people FROM '$TEST_TMP/people.csv' WITH (FORMAT csv)"
pg_psql -c "ANALYZE people; ANALYZE products"

config() { # FILE DETECT [TRANSFORMS-FILE]
  {
    cat <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: pii
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.people, public.products] }
    pii: { detect: $2 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
    [[ -z "${3:-}" ]] || cat "$3"
  } >"$1"
}
config "$TEST_TMP/scan.yaml" off

# ---- scan
"$ODSYNC_BIN" scan -c "$TEST_TMP/scan.yaml" --rows 500 >"$TEST_TMP/scan.txt" 2>"$TEST_TMP/scan.err" ||
  { cat "$TEST_TMP/scan.txt" "$TEST_TMP/scan.err"; fail "odsync scan failed"; }
cat "$TEST_TMP/scan.txt"
grep -q "public.people: [0-9]* rows sampled (TABLESAMPLE BERNOULLI" "$TEST_TMP/scan.txt" || fail "people was not sampled with TABLESAMPLE"
grep -q "public.products: 30 rows sampled (LIMIT (small table))" "$TEST_TMP/scan.txt" || fail "products was not read whole with LIMIT"
n=$(grep -o "public.people: [0-9]*" "$TEST_TMP/scan.txt" | grep -o "[0-9]*$")
((n >= 250 && n <= 500)) || fail "people: $n rows sampled; expected between half the budget and the budget (500)"
# no sampled value is printed: check a few that are certainly in the table
for v in $(cut -d, -f4 "$TEST_TMP/people.csv" | head -200) ; do grep -qF "$v" "$TEST_TMP/scan.txt" && fail "scan printed a sampled value ($v)"; done

python3 - "$TEST_TMP/scan.txt" <<'PY' | tee "$TEST_TMP/precision.txt" || fail "precision/recall below the bar (see above)"
import re, sys
truth = {f"public.people.{c}" for c in
         "first_name last_name email phone card_number iban ssn last_ip street_address ni_number".split()}
columns = {f"public.people.{c}" for c in ("id first_name last_name email phone card_number iban ssn last_ip street_address "
           "order_ref sku amount created_on tracking_no notes app_version account_number shift_start ni_number").split()}
columns |= {f"public.products.{c}" for c in "id name price sku".split()}
table, found = None, {}
for line in open(sys.argv[1]):
    m = re.match(r"  (\S+): \d+ rows? sampled", line)
    if m:
        table = m.group(1)
        continue
    m = re.match(r"    (\S+)\s+(\S+)\s+confidence (\d\.\d\d)", line)
    if m and table:
        found[f"{table}.{m.group(1)}"] = (m.group(2), float(m.group(3)))
def score(threshold):
    flagged = {c for c, (k, conf) in found.items() if conf >= threshold}
    tp, fp, fn = flagged & truth, flagged - truth, truth - flagged
    p = len(tp) / len(flagged) if flagged else 0.0
    r = len(tp) / len(truth)
    print(f"confidence >= {threshold}: {len(flagged)} flagged of {len(columns)} columns; precision {p:.2f} "
          f"({len(tp)}/{len(flagged)}), recall {r:.2f} ({len(tp)}/{len(truth)}); false positives {sorted(fp)}; "
          f"missed {sorted(fn)}")
    return p, r
score(0.0)
p, r = score(0.5)
kinds = {c.split(".")[-1]: k for c, (k, _) in found.items()}
want = {"email": "email", "phone": "phone", "card_number": "card", "iban": "iban", "ssn": "ssn", "last_ip": "ip",
        "first_name": "name", "last_name": "name", "street_address": "address", "ni_number": "nino"}
wrong = {c: (kinds.get(c), k) for c, k in want.items() if kinds.get(c) != k}
assert not wrong, f"columns reported with the wrong kind (got, want): {wrong}"
assert r == 1.0 and p >= 0.85, (p, r)
PY

# the ready-to-paste block
sed -n '/^    transforms:$/,$p' "$TEST_TMP/scan.txt" >"$TEST_TMP/block.yaml"
grep -q "type: mask, style: email, tables: \[public.people\], columns: \[email\]" "$TEST_TMP/block.yaml" || fail "the block does not mask people.email"
grep -q "pseudonymize.*columns: \[.*first_name" "$TEST_TMP/block.yaml" || fail "the block does not pseudonymize first_name"

# ---- enforce, nothing masked: refused
config "$TEST_TMP/enforce.yaml" enforce
odsync_start "$TEST_TMP/enforce.yaml" "$LOG"
wait_for "! odsync_running" 120 || fail "odsync did not stop on an unmasked PII column"
rc=0
wait "$ODSYNC_PID" 2>/dev/null || rc=$?
ODSYNC_PID=
grep -q "pii.detect is enforce and column public.people.[a-z_]* looks like [a-z]* .*refusing to send it unmasked to sink default of pipeline pii" "$LOG" ||
  { tail -20 "$LOG"; fail "no refusal naming a people column in the log"; }
log "refused: $(grep -o 'column public.people.[a-z_]* looks like [a-z]*' "$LOG" | head -1)"
rows=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM people" 2>/dev/null || echo 0)
[[ "$rows" == 0 ]] || fail "the sink received $rows people rows although the pipeline refused"

# ---- enforce with the printed block: accepted, masked
rm -rf "$TEST_TMP/state" "$SINK_DB"
pg_psql -c "SELECT pg_drop_replication_slot('odsync_pii')" >/dev/null 2>&1 || true
config "$TEST_TMP/masked.yaml" enforce "$TEST_TMP/block.yaml"
cat "$TEST_TMP/masked.yaml"
odsync_start "$TEST_TMP/masked.yaml" "$LOG"
wait_slot_active odsync_pii 120
wait_for "[[ \$(sqlite3 $SINK_DB 'SELECT count(*) FROM people' 2>/dev/null) == 5000 ]]" 120 || fail "people not copied under enforce with the block"
raw=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM people WHERE instr(email, '*') = 0 OR ssn LIKE '___-__-____' OR first_name IN ('Anna', 'Ben', 'Carla') OR instr(card_number, '*') = 0")
[[ "$raw" == 0 ]] || fail "$raw people rows arrived unmasked"
odsync_running || fail "odsync stopped although every PII column is protected: $(tail -5 "$LOG")"
log "enforce with the scan's block: 5000 rows, masked"

# ---- a new PII column while streaming: refused
pg_psql -c "ALTER TABLE people ADD COLUMN alt_email text"
pg_psql -c "UPDATE people SET alt_email = 'alt' || id || '@mail.example.net' WHERE id <= 20"
wait_for "! odsync_running" 120 || fail "odsync did not stop on the new unmasked column alt_email"
wait "$ODSYNC_PID" 2>/dev/null || true
ODSYNC_PID=
grep -q "column public.people.alt_email looks like email (confidence [0-9.]*, [0-9]* of [0-9]* checked values): refusing" "$LOG" ||
  { tail -20 "$LOG"; fail "no refusal naming public.people.alt_email"; }
grep -q '"kind":"pii_refused".*"column":"alt_email"' "$TEST_TMP/state/audit/pii.jsonl" || fail "no pii_refused audit record"
[[ "$(sqlite3 "$SINK_DB" "SELECT count(*) FROM pragma_table_info('people') WHERE name = 'alt_email'")" == 0 ]] ||
  [[ "$(sqlite3 "$SINK_DB" "SELECT count(*) FROM people WHERE alt_email LIKE '%@%'")" == 0 ]] || fail "alt_email values reached the sink"
! grep -qF "$ODSYNC_PII_KEY" "$LOG" "$TEST_TMP/state/audit/pii.jsonl" || fail "the key appears in the log or the audit log"
log "all assertions passed"
