#!/usr/bin/env bash
# config_errors.sh — configuration and connection errors are reported well, secrets never shown.
#
# Asserts:
#   - `odsync check -c` and `odsync run -c` on malformed configs (YAML syntax error, unknown
#     top-level key, unknown source key, missing dsn, ${env:UNSET}, a bad source.partitions, a
#     filter expression that does not parse, a pseudonymize key written in the file) exit
#     non-zero, promptly, and print CONFIG_PATH:LINE:COL (the exact line where the fault has one
#     unambiguous line) and name the offending key / variable;
#   - `odsync check` against a port where nothing listens exits non-zero and names host and port;
#   - with the password in ${env:PW}: a correct password passes `check` and `run` (slot active,
#     SIGTERM exit 0); a wrong password fails `check`; and the password string never appears in
#     any output of any of these runs (nor in the error cases above).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init config_errors
[[ -x "$ODSYNC_BIN" ]] || fail "odsync binary not found at $ODSYNC_BIN"
SINK_DB=$TEST_TMP/out.db
SECRET='Zq7pW-s3cr3t-XyzzY-4711'
export PW=$SECRET
unset ODSYNC_TEST_UNSET_VAR
OUT_DIR=$TEST_TMP/out
mkdir -p "$OUT_DIR"
n=0

# run_odsync SUBCOMMAND CONFIG -> sets RC and OUT (stdout+stderr), saved under $OUT_DIR.
run_odsync() {
  n=$((n + 1))
  local f=$OUT_DIR/$n-$1.out
  RC=0
  timeout 60 "$ODSYNC_BIN" "$1" -c "$2" >"$f" 2>&1 </dev/null || RC=$?
  OUT=$(cat "$f")
  [[ $RC -ne 124 ]] || fail "odsync $1 -c $2 did not finish within 60 s: $OUT"
}

# expect_config_error NAME CONFIG LINE WORD: check and run both fail with CONFIG:LINE:COL and WORD.
# LINE may be a regex ([0-9]+ when the line is not unambiguous).
expect_config_error() {
  local name=$1 cfg=$2 line=$3 word=$4 sub
  for sub in check run; do
    run_odsync "$sub" "$cfg"
    [[ $RC -ne 0 ]] || fail "$name: odsync $sub exited 0 on a bad config; output: $OUT"
    grep -qE "$(printf '%s' "$cfg" | sed 's/[.[\*^$/]/\\&/g'):$line:[0-9]+" <<<"$OUT" ||
      fail "$name: odsync $sub did not print $cfg:$line:COL; output: $OUT"
    grep -qF -- "$word" <<<"$OUT" || fail "$name: odsync $sub did not name '$word'; output: $OUT"
    log "$name: odsync $sub rc=$RC: $(head -1 <<<"$OUT")"
  done
}

GOOD_SOURCE='source: { type: postgres, dsn: "host=127.0.0.1 port=1 dbname=shop user=postgres password=${env:PW}", tables: [public.a] }'
GOOD_SINK="sink: { type: sqlite, path: $SINK_DB }"

# 1. YAML syntax error: an unclosed flow sequence (libyaml reports it where it notices).
cat >"$TEST_TMP/syntax.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "host=127.0.0.1 port=1 dbname=shop user=postgres password=\${env:PW}", tables: [public.a, public.b }
    $GOOD_SINK
EOF
expect_config_error "yaml syntax" "$TEST_TMP/syntax.yaml" '[0-9]+' ""

# 2. Unknown top-level key on line 2.
cat >"$TEST_TMP/unknown_top.yaml" <<EOF
state_dir: $TEST_TMP/state
frobnicate: yes
pipelines:
  - name: shop
    $GOOD_SOURCE
    $GOOD_SINK
EOF
expect_config_error "unknown top-level key" "$TEST_TMP/unknown_top.yaml" 2 frobnicate

# 3. Unknown key inside the source section, on line 6.
cat >"$TEST_TMP/unknown_source.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source:
      type: postgres
      bogus_option: 1
      dsn: "host=127.0.0.1 port=1 dbname=shop user=postgres password=\${env:PW}"
      tables: [public.a]
    $GOOD_SINK
EOF
expect_config_error "unknown source key" "$TEST_TMP/unknown_source.yaml" 6 bogus_option

# 4. Missing dsn (the position of the source section is reported; its line is 4 or 5).
cat >"$TEST_TMP/missing_dsn.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source:
      type: postgres
      tables: [public.a]
    $GOOD_SINK
EOF
expect_config_error "missing dsn" "$TEST_TMP/missing_dsn.yaml" '[0-9]+' dsn

# 5. ${env:NAME} of an unset variable, on line 4.
cat >"$TEST_TMP/unset_env.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "host=127.0.0.1 port=1 user=postgres password=\${env:ODSYNC_TEST_UNSET_VAR}", tables: [public.a] }
    $GOOD_SINK
EOF
expect_config_error "unset env" "$TEST_TMP/unset_env.yaml" 4 ODSYNC_TEST_UNSET_VAR

# 5b. source.partitions other than root or leaves, on line 7.
cat >"$TEST_TMP/bad_partitions.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source:
      type: postgres
      dsn: "host=127.0.0.1 port=1 dbname=shop user=postgres password=\${env:PW}"
      partitions: both
    $GOOD_SINK
EOF
expect_config_error "bad partitions" "$TEST_TMP/bad_partitions.yaml" 7 "partitions 'both' must be root"

# 5c. postgres sink maintenance_work_mem that is not a PostgreSQL size, on line 6.
cat >"$TEST_TMP/bad_mwm.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    $GOOD_SOURCE
    sink: { type: postgres, dsn: "host=127.0.0.1 port=1 dbname=w user=postgres",
            maintenance_work_mem: 512M }
EOF
expect_config_error "bad maintenance_work_mem" "$TEST_TMP/bad_mwm.yaml" 6 "maintenance_work_mem '512M' must be a size"

# 5c1. postgres sink synchronous_commit that is not a boolean, on line 6.
cat >"$TEST_TMP/bad_sync_commit.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    $GOOD_SOURCE
    sink: { type: postgres, dsn: "host=127.0.0.1 port=1 dbname=w user=postgres",
            synchronous_commit: later }
EOF
expect_config_error "bad synchronous_commit" "$TEST_TMP/bad_sync_commit.yaml" 6 "synchronous_commit: 'later' is not a boolean"

# 5c2. postgres sink copy_min_rows out of its range, on line 6.
cat >"$TEST_TMP/bad_copy_min.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    $GOOD_SOURCE
    sink: { type: postgres, dsn: "host=127.0.0.1 port=1 dbname=w user=postgres",
            copy_min_rows: -5 }
EOF
expect_config_error "bad copy_min_rows" "$TEST_TMP/bad_copy_min.yaml" 6 "copy_min_rows"

# 5d. A filter expression that does not parse, on line 6: the character is named.
cat >"$TEST_TMP/bad_filter.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    $GOOD_SOURCE
    transforms:
      - { type: filter, where: "status IN ('a', 'b' AND amount > 1" }
    $GOOD_SINK
EOF
expect_config_error "bad filter" "$TEST_TMP/bad_filter.yaml" 6 "where: at character 21: expected ',' or ')' in the IN list, found 'AND'"

# 5e. A pseudonymize key written into the file, on line 8: refused, and never echoed.
cat >"$TEST_TMP/literal_key.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    $GOOD_SOURCE
    sink:
      type: sqlite
      path: $SINK_DB
      transforms: [{ type: pseudonymize, columns: [email], key: Literal-Key-In-File-0123456789 }]
EOF
expect_config_error "literal key" "$TEST_TMP/literal_key.yaml" 8 'key: the key must come from ${env:NAME} or ${file:PATH}'
! grep -rqF "Literal-Key-In-File" "$OUT_DIR" || fail "literal key: the key appears in odsync's output"

# 6. Unreachable server: a loopback port with nothing listening.
dead_port=$(pg_free_port)
cat >"$TEST_TMP/unreachable.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "host=127.0.0.1 port=$dead_port dbname=shop user=postgres password=\${env:PW}", tables: [public.a] }
    $GOOD_SINK
EOF
run_odsync check "$TEST_TMP/unreachable.yaml"
[[ $RC -ne 0 ]] || fail "unreachable: odsync check exited 0; output: $OUT"
grep -qF "127.0.0.1" <<<"$OUT" || fail "unreachable: output does not name host 127.0.0.1: $OUT"
grep -qF "$dead_port" <<<"$OUT" || fail "unreachable: output does not name port $dead_port: $OUT"
log "unreachable: odsync check rc=$RC: $(head -1 <<<"$OUT")"

# 7. Password from ${env:PW} against a server that requires it (scram-sha-256).
pg_start shop
pg_psql -c "SET password_encryption = 'scram-sha-256'; CREATE ROLE odsync_pw LOGIN SUPERUSER REPLICATION PASSWORD '$SECRET'"
pg_psql -c "CREATE TABLE public.a (id int PRIMARY KEY, v text)"
pg_hba_prepend "host replication odsync_pw 127.0.0.1/32 scram-sha-256"
pg_hba_prepend "host all odsync_pw 127.0.0.1/32 scram-sha-256"
PGPASSWORD=wrong psql -X -h 127.0.0.1 -p "$PGPORT" -U odsync_pw -d shop -c 'SELECT 1' >/dev/null 2>&1 &&
  fail "test setup: the server accepted a wrong password for odsync_pw"
cat >"$TEST_TMP/password.yaml" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "host=127.0.0.1 port=$PGPORT dbname=shop user=odsync_pw password=\${env:PW}", tables: [public.a] }
    $GOOD_SINK
EOF
run_odsync check "$TEST_TMP/password.yaml"
[[ $RC -eq 0 ]] || fail "password: odsync check with the right password exited $RC: $OUT"
log "password: odsync check ok"

odsync_start "$TEST_TMP/password.yaml" "$OUT_DIR/run-password.log"
wait_slot_active odsync_shop 60
pg_psql -c "INSERT INTO public.a VALUES (1, 'x')"
wait_for "sqlite3 '$SINK_DB' 'SELECT v FROM a WHERE id = 1' | grep_q -x x" 60 ||
  fail "password: the row never reached the sink"
odsync_stop
log "password: odsync run streamed with the password from \${env:PW}, stopped with exit 0"

PW='Wr0ng-pa55word-QqQ-0815'
WRONG=$PW
run_odsync check "$TEST_TMP/password.yaml"
[[ $RC -ne 0 ]] || fail "password: odsync check with a wrong password exited 0: $OUT"
grep -qiE "password|authentication" <<<"$OUT" || fail "password: the failure does not say it is about authentication: $OUT"
log "wrong password: odsync check rc=$RC: $(head -1 <<<"$OUT")"
PW=$SECRET

# 8. No output of any run above contains a password.
if grep -rlF -e "$SECRET" -e "$WRONG" "$OUT_DIR"; then
  grep -rnF -e "$SECRET" -e "$WRONG" "$OUT_DIR" | head -5 >&2
  fail "a password appeared in odsync output (files listed above)"
fi
log "no password in $(ls "$OUT_DIR" | wc -l) outputs"
