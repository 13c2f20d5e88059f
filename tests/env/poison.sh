# shellcheck shell=bash
# tests/env/poison.sh — poison rows and dead letters, written once and run per sink (source it
# after common.sh and pg.sh). Used by tests/integration/dead_letters_*.sh and tests/chaos/poison.sh.
#
#   poison_setup sqlite|postgres   servers, SINK_YAML, SINK_KIND; sink_sql runs SQL on the sink
#   poison_constrain               the sink rejects some rows: accounts CHECK (v >= 0), history
#                                  CHECK (delta >= 0) (keyless), a trigger on events that raises
#                                  for kind = 'bad'. PostgreSQL: ALTER TABLE / CREATE TRIGGER;
#                                  SQLite: the table rebuilt with the CHECK, a RAISE(ABORT) trigger.
#   poison_fix                     drop all of those again
#   dl_list                        "table|op|key" of every dead letter in the sink, sorted
#   dl_count                       number of dead letters
#   sink_rows TABLE COLS WHERE     rows of the sink table as sorted text ("a|b|c")
#   src_rows  TABLE COLS WHERE     the same from the source

poison_setup() {
  SINK_KIND=$1
  case $SINK_KIND in
    sqlite)
      [[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
      pg_start shop
      SRC_DSN=$(pg_dsn)
      SINK_DB=$TEST_TMP/out.db
      SINK_YAML="sink: { type: sqlite, path: $SINK_DB }"
      ;;
    postgres)
      OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
      [[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
      pg_start_pair shop warehouse
      SINK_YAML="sink: { type: postgres, dsn: \"$DST_DSN\" }"
      ;;
    *) fail "poison_setup: unknown sink $SINK_KIND" ;;
  esac
}

sink_sql() {
  if [[ $SINK_KIND == sqlite ]]; then sqlite3 -batch -bail "$SINK_DB" "$@"; else dst_psql -c "$@"; fi
}

# The SQLite sink names public.t "t"; the PostgreSQL sink keeps public.t.
sink_table() { if [[ $SINK_KIND == sqlite ]]; then echo "$1"; else echo "public.$1"; fi; }

# sqlite: add (CHECK text) or remove ("") the CHECK constraint od_poison of TABLE by editing its
# CREATE statement (the documented writable_schema procedure: a CHECK changes nothing on disk).
sqlite_check() {
  local t=$1 check=$2 sql new ver
  sql=$(sqlite3 "$SINK_DB" "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '$t'")
  [[ -n "$sql" ]] || fail "sqlite sink has no table $t"
  new=${sql%%, CONSTRAINT od_poison CHECK*}
  [[ "$new" == "$sql" ]] && new=${sql%)}
  [[ -z "$check" ]] || new+=", CONSTRAINT od_poison CHECK ($check)"
  new+=")"
  local q="'"
  new=${new//$q/$q$q}
  ver=$(sqlite3 "$SINK_DB" "PRAGMA schema_version")
  sqlite3 -batch -bail "$SINK_DB" <<SQL
BEGIN;
PRAGMA writable_schema = ON;
UPDATE sqlite_master SET sql = '$new' WHERE type = 'table' AND name = '$t';
PRAGMA schema_version = $((ver + 1));
PRAGMA writable_schema = OFF;
COMMIT;
SQL
  sqlite3 "$SINK_DB" "PRAGMA integrity_check" | grep_q -x ok || fail "sqlite sink damaged by the schema edit of $t"
}

poison_constrain() {
  if [[ $SINK_KIND == sqlite ]]; then
    sqlite_check accounts "v >= 0"
    sqlite_check history "delta >= 0"
    sqlite3 -batch -bail "$SINK_DB" <<'SQL'
CREATE TRIGGER events_no_bad BEFORE INSERT ON events WHEN NEW.kind = 'bad'
BEGIN SELECT RAISE(ABORT, 'events: kind bad is refused by a trigger'); END;
SQL
  else
    dst_psql <<SQL
ALTER TABLE public.accounts ADD CONSTRAINT v_not_negative CHECK (v >= 0) NOT VALID;
ALTER TABLE public.history ADD CONSTRAINT delta_not_negative CHECK (delta >= 0) NOT VALID;
CREATE FUNCTION no_bad() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN IF NEW.kind = 'bad' THEN RAISE EXCEPTION 'events: kind bad is refused by a trigger'; END IF; RETURN NEW; END \$\$;
CREATE TRIGGER events_no_bad BEFORE INSERT OR UPDATE ON public.events FOR EACH ROW EXECUTE FUNCTION no_bad();
SQL
  fi
}

poison_fix() {
  if [[ $SINK_KIND == sqlite ]]; then
    sqlite_check accounts ""
    sqlite_check history ""
    sqlite3 -batch -bail "$SINK_DB" "DROP TRIGGER events_no_bad"
  else
    dst_psql <<'SQL'
ALTER TABLE public.accounts DROP CONSTRAINT v_not_negative;
ALTER TABLE public.history DROP CONSTRAINT delta_not_negative;
DROP TRIGGER events_no_bad ON public.events;
DROP FUNCTION no_bad();
SQL
  fi
}

# A dead letter's key: the key columns' values, "aid=..,delta=.." for the keyless history.
dl_list() {
  if [[ $SINK_KIND == sqlite ]]; then
    sqlite3 "$SINK_DB" "SELECT source_table || '|' || op || '|' || (SELECT group_concat(key || '=' || value, ',') FROM json_each(change, '\$.key')) FROM _odsync_dead_letters" 2>/dev/null | sort
  else
    dst_psql -c "SELECT d.source_table || '|' || d.op || '|' || (SELECT string_agg(k || '=' || v, ',' ORDER BY k) FROM jsonb_each_text(d.change->'key') AS e(k, v)) FROM public._odsync_dead_letters d" 2>/dev/null | sort
  fi
}

dl_count() {
  local n
  n=$(sink_sql "SELECT count(*) FROM _odsync_dead_letters" 2>/dev/null) || n=0
  echo "${n:-0}"
}

sink_rows() {
  local t=$1 cols=$2 where=${3:-true}
  sink_sql "SELECT $cols FROM $(sink_table "$t") WHERE $where" | sort
}
src_rows() {
  local t=$1 cols=$2 where=${3:-true}
  pg_psql -c "SELECT $cols FROM public.$t WHERE $where" | sort
}

# The whole-table comparison (types too): od_compare / od_compare_pg.
poison_compare() {
  if [[ $SINK_KIND == sqlite ]]; then
    compare "$@"
  else
    local t args=()
    for t in "$@"; do [[ $t == --table ]] || args+=(--table "$t"); done
    "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${args[@]}"
  fi
}

# ---- the scenario of tests/integration/dead_letters_*.sh ----------------------------------------

# poison_txns FROM TO: source transactions FROM..TO. In transaction t: 10 account inserts
# (id 1000+10t+k, the one with k=3 negative when t%4==0), an update of account t (to -7 when
# t%5==0), an event (kind 'bad' when t%6==0), a history row (delta -1 when t%7==0), a delete of
# account 100+t. Each rejected change is appended to $POISON_EXPECT as "table|op|key".
poison_txns() {
  local from=$1 to=$2 t k v sql
  for ((t = from; t <= to; t++)); do
    sql="BEGIN;"
    for ((k = 0; k < 10; k++)); do
      v=$k
      if ((k == 3 && t % 4 == 0)); then v=-1; echo "public.accounts|insert|id=$((1000 + 10 * t + k))" >>"$POISON_EXPECT"; fi
      sql+="INSERT INTO accounts VALUES ($((1000 + 10 * t + k)), $v, 'txn $t');"
    done
    if ((t % 5 == 0)); then
      sql+="UPDATE accounts SET v = -7, note = 'poisoned' WHERE id = $t;"
      echo "public.accounts|update|id=$t" >>"$POISON_EXPECT"
    else
      sql+="UPDATE accounts SET v = v + 100, note = 'updated' WHERE id = $t;"
    fi
    if ((t % 6 == 0)); then
      sql+="INSERT INTO events VALUES ($t, 'bad');"
      echo "public.events|insert|id=$t" >>"$POISON_EXPECT"
    else
      sql+="INSERT INTO events VALUES ($t, 'ok');"
    fi
    if ((t % 7 == 0)); then
      sql+="INSERT INTO history VALUES ($t, -1);"
      echo "public.history|insert|aid=$t,delta=-1" >>"$POISON_EXPECT"
    else
      sql+="INSERT INTO history VALUES ($t, $t);"
    fi
    sql+="DELETE FROM accounts WHERE id = $((100 + t));COMMIT;"
    pg_psql -c "$sql" >/dev/null
    [[ -z "${POISON_PACE:-}" ]] || sleep "$POISON_PACE"
  done
}

# The keys the dead letters hold back: compare everything else row for row.
poison_compare_rest() {
  local bad_acc bad_ev a b
  bad_acc=$(awk -F'|' '$1 == "public.accounts" {sub("id=", "", $3); printf "%s%s", sep, $3; sep=","}' "$POISON_EXPECT")
  bad_ev=$(awk -F'|' '$1 == "public.events" {sub("id=", "", $3); printf "%s%s", sep, $3; sep=","}' "$POISON_EXPECT")
  a=$(src_rows accounts "id || '|' || v || '|' || coalesce(note, '')" "id NOT IN (${bad_acc:-0})")
  b=$(sink_rows accounts "id || '|' || v || '|' || coalesce(note, '')" "id NOT IN (${bad_acc:-0})")
  [[ "$a" == "$b" ]] || { diff <(echo "$a") <(echo "$b") | head -20 >&2; fail "accounts differ outside the dead-lettered keys"; }
  a=$(src_rows events "id || '|' || kind" "id NOT IN (${bad_ev:-0})")
  b=$(sink_rows events "id || '|' || kind" "id NOT IN (${bad_ev:-0})")
  [[ "$a" == "$b" ]] || { diff <(echo "$a") <(echo "$b") | head -20 >&2; fail "events differ outside the dead-lettered keys"; }
  a=$(src_rows history "aid || '|' || delta" "delta >= 0")
  b=$(sink_rows history "aid || '|' || delta")
  [[ "$a" == "$b" ]] || { diff <(echo "$a") <(echo "$b") | head -20 >&2; fail "history differs (keyless: exact multiset of the accepted rows)"; }
  # the rejected updates left the sink's row as it was; the rejected inserts are not there
  local id
  for id in $(awk -F'|' '$1 == "public.accounts" && $2 == "update" {sub("id=", "", $3); print $3}' "$POISON_EXPECT"); do
    [[ $(sink_sql "SELECT v FROM $(sink_table accounts) WHERE id = $id") == "$id" ]] ||
      fail "account $id: the sink does not hold its value from before the rejected update"
  done
}

poison_expect_sorted() { sort "$POISON_EXPECT"; }

# Wait until the sink holds every accepted change: the dead letters are all there and the rest
# compares equal.
poison_wait_settled() {
  local timeout=$1 deadline want
  want=$(wc -l <"$POISON_EXPECT")
  deadline=$(($(date +%s) + timeout))
  while true; do
    if [[ $(dl_count) -ge $want ]] && (poison_compare_rest) >/dev/null 2>&1; then return 0; fi
    (($(date +%s) < deadline)) || { poison_compare_rest; fail "not settled after ${timeout}s: $(dl_count) dead letters of $want expected"; }
    odsync_running || fail "odsync exited while the sink catches up"
    sleep 1
  done
}

poison_schema() {
  pg_psql <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, v int NOT NULL, note text);
CREATE TABLE events (id int PRIMARY KEY, kind text);
CREATE TABLE history (aid int, delta int);
INSERT INTO accounts SELECT g, g, 'initial' FROM generate_series(1, 200) g;
INSERT INTO events VALUES (0, 'seed');
INSERT INTO history VALUES (0, 0);
SQL
}

poison_config() {
  local file=$1 policy=$2
  [[ -n "${POISON_APORT:-}" ]] || POISON_APORT=$(pg_free_port)
  cat >"$file" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$POISON_APORT" }
audit: { enabled: true, fsync_ms: 0 }
pipelines:
  - name: shop
    on_poison: $policy
    poison_attempts: 2
    consistency: ${POISON_CONSISTENCY:-strong}
    apply_parallel_min_rows: 0
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.accounts, public.events, public.history] }
    $SINK_YAML
YAML
}

# The whole scenario for one sink (tests/integration/dead_letters_*.sh).
poison_scenario() {
  poison_setup "$1"
  local CONFIG=$TEST_TMP/odsync.yaml LOG=$TEST_TMP/odsync.log out rc kills=0 want got
  POISON_EXPECT=$TEST_TMP/expected_dead_letters
  : >"$POISON_EXPECT"
  poison_schema
  poison_config "$CONFIG" dead_letter
  odsync_start "$CONFIG" "$LOG"
  wait_slot_active odsync_shop 60
  wait_for "grep -q 'consistency ${POISON_CONSISTENCY:-strong}' '$LOG'" 60 ||
    fail "the pipeline does not run with consistency ${POISON_CONSISTENCY:-strong}"
  log "$(grep -o "consistency ${POISON_CONSISTENCY:-strong}, [0-9]* sink writers*" "$LOG" | head -1)"
  wait_for "poison_compare --table public.accounts --table public.events --table public.history" 120 ||
    fail "initial snapshot not in the sink"
  odsync_stop
  log "the sink now rejects: accounts v < 0, history delta < 0 (CHECK), events kind 'bad' (trigger)"
  poison_constrain

  odsync_start "$CONFIG" "$LOG"
  poison_txns 1 24
  # One transaction of 600 new rows, one of them poison: the PostgreSQL sink sends such a run by
  # COPY (postgres_bulk.c), which fails as a whole; isolating the batch finds the one row.
  pg_psql -c "INSERT INTO accounts SELECT g, CASE WHEN g = 9300 THEN -1 ELSE g END, 'big' FROM generate_series(9000, 9599) g" >/dev/null
  echo "public.accounts|insert|id=9300" >>"$POISON_EXPECT"
  log "injected $(wc -l <"$POISON_EXPECT") poison changes in 25 transactions"
  poison_wait_settled 180
  [[ "$(dl_list)" == "$(poison_expect_sorted)" ]] ||
    { diff <(poison_expect_sorted) <(dl_list) >&2; fail "the dead letters are not exactly the rejected changes"; }
  log "verified: exactly those $(dl_count) changes are dead letters; every other row equal"
  local metrics status
  metrics=$(curl -s --max-time 5 "http://127.0.0.1:$POISON_APORT/metrics") || fail "no /metrics"
  want=$(wc -l <"$POISON_EXPECT")
  grep -qE "^odsync_dead_letters_total\\{pipeline=\"shop\",sink=\"default\"\\} $want\$" <<<"$metrics" &&
    grep -qE "^odsync_dead_letters\\{pipeline=\"shop\",sink=\"default\"\\} $want\$" <<<"$metrics" ||
    fail "odsync_dead_letters(_total) do not count the $want committed dead letters: $(grep dead_letters <<<"$metrics")"
  grep -q '^odsync_sink_circuit_state{pipeline="shop",sink="default"} 0' <<<"$metrics" ||
    fail "odsync_sink_circuit_state missing or not closed"
  status=$(curl -s --max-time 5 "http://127.0.0.1:$POISON_APORT/status") || fail "no /status"
  grep -q '"circuit":"closed"' <<<"$status" || fail "/status lacks the sink's circuit state: $status"
  out=$("$ODSYNC_BIN" status -c "$CONFIG") || fail "odsync status failed: $out"
  local audited
  audited=$(cat "$TEST_TMP"/state/audit/shop* 2>/dev/null | grep '"kind":"dead_letters"' | grep -o '"count":[0-9]*' |
    awk -F: '{n += $2} END {print n + 0}')
  [[ $audited -eq $want ]] || fail "the audit log records $audited dead letters, not $want"
  log "metrics: $(grep -E '^odsync_(dead_letters|sink_circuit)' <<<"$metrics" | tr '\n' ' ')"

  log "SIGKILL while poison rows stream"
  POISON_PACE=0.05 workload_start poison_txns 25 60
  while kill -0 "$WORKLOAD_PID" 2>/dev/null && ((kills < 4)); do
    sleep "0.$((RANDOM % 9 + 1))"
    odsync_kill9
    kills=$((kills + 1))
    odsync_start "$CONFIG" "$LOG"
    sleep 1
  done
  workload_wait >/dev/null
  ((kills >= 2)) || fail "only $kills kills happened during the workload"
  poison_wait_settled 240
  want=$(poison_expect_sorted)
  got=$(dl_list)
  [[ "$got" == "$want" ]] || { diff <(echo "$want") <(echo "$got") >&2; fail "after $kills SIGKILLs the dead letters are not exactly the rejected changes (duplicates or missing)"; }
  log "verified after $kills SIGKILLs: $(dl_count) dead letters, none twice, the rest equal row for row"

  # What a dead letter says: the error and its code, the position, the change with names and types.
  out=$("$ODSYNC_BIN" dlq list -c "$CONFIG") || fail "odsync dlq list failed: $out"
  [[ $(grep -c 'public.accounts' <<<"$out") -eq $(grep -c '^public.accounts' "$POISON_EXPECT") ]] ||
    fail "dlq list does not show every accounts dead letter: $out"
  local first
  first=$(awk 'NR == 2 {print $1}' <<<"$out")
  out=$("$ODSYNC_BIN" dlq show "$first" -c "$CONFIG") || fail "odsync dlq show $first failed"
  grep -qE '^position: *(pg:)?[0-9A-F]+/[0-9A-F]+#[0-9]' <<<"$out" || fail "dlq show: no source position: $out"
  grep -q '"type": *"integer"' <<<"$out" || fail "dlq show: the change lacks column types: $out"
  if [[ $SINK_KIND == postgres ]]; then grep -qE '^code: *(23514|P0001)' <<<"$out" || fail "dlq show: no SQLSTATE: $out"
  else grep -qE '^code: *sqlite:' <<<"$out" || fail "dlq show: no SQLite code: $out"; fi
  out=$("$ODSYNC_BIN" dlq replay --all -c "$CONFIG" 2>&1) && fail "replay before the fix should be rejected again: $out"
  [[ $(dl_count) -eq $(wc -l <"$POISON_EXPECT") ]] || fail "a rejected replay lost dead letters"
  [[ $(sink_sql "SELECT min(attempts) FROM _odsync_dead_letters") -ge 3 ]] || fail "a rejected replay did not count its attempt"
  log "verified: dlq list/show name table, key, position, code and types; a replay before the fix leaves them all"

  odsync_stop
  poison_fix
  out=$("$ODSYNC_BIN" dlq replay --all -c "$CONFIG" 2>&1) || fail "dlq replay --all failed: $out"
  log "$(tail -1 <<<"$out")"
  [[ $(dl_count) -eq 0 ]] || fail "dead letters left after replay: $(dl_count)"
  poison_compare --table public.accounts --table public.events --table public.history ||
    fail "after replay the sink is not equal to the source"
  log "verified: after the fix and replay --all the sink equals the source row for row"

  log "on_poison: stop"
  # the rows replayed above hold -7 and -1
  if [[ $SINK_KIND == sqlite ]]; then sqlite_check accounts "v > -8"
  else dst_psql -c "ALTER TABLE public.accounts ADD CONSTRAINT v_above CHECK (v > -8)"; fi
  poison_config "$CONFIG" stop
  odsync_start "$CONFIG" "$LOG"
  pg_psql -c "BEGIN; INSERT INTO accounts VALUES (5001, 1, 'good'); INSERT INTO accounts VALUES (5000, -9, 'bad'); COMMIT;"
  wait_for "! kill -0 $ODSYNC_PID" 120 || fail "on_poison: stop did not stop the pipeline"
  rc=0
  wait "$ODSYNC_PID" || rc=$?
  ODSYNC_PID=
  [[ $rc -ne 0 ]] || fail "odsync exited 0 although its pipeline stopped on a poison row"
  grep -qE 'poison row: .*table public.accounts, key id=5000, at source position (pg:)?[0-9A-F]+/[0-9A-F]+#1.*on_poison is stop' "$LOG" ||
    fail "the stop error does not name table, key and position"
  [[ $(sink_sql "SELECT count(*) FROM $(sink_table accounts) WHERE id IN (5000, 5001)") -eq 0 ]] ||
    fail "part of the stopped transaction reached the sink"
  log "verified: on_poison: stop ends the pipeline naming table, key and position; nothing of that transaction applied"
}
