/* sink_contract.c — see sink_contract.h. */
#include "sink_contract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct run {
  const od_contract_env *env;
  void (*report)(void *, bool, const char *, const char *);
  void *rctx;
  int failed;
  char detail[OD_ERROR_MSG_MAX + 128];
} run;

#define T(v) {.data = (v), .len = sizeof(v) - 1, .kind = OD_VALUE_TEXT}
#define NUL {.kind = OD_VALUE_NULL}
#define UNCH {.kind = OD_VALUE_UNCHANGED}

static od_column t_cols[] = {{.name = "id", .type_oid = 23, .typmod = -1, .key = true, .type_name = "integer", .attnum = 1},
                             {.name = "v", .type_oid = 25, .typmod = -1, .type_name = "text", .attnum = 2},
                             {.name = "big", .type_oid = 25, .typmod = -1, .type_name = "text", .attnum = 3}};
static od_relation t_rel = {.oid = 9001, .schema = "public", .name = "contract_t", .replica_identity = 'd',
                            .ncolumns = 3, .columns = t_cols, .version = 1, .has_primary_key = true};
static od_column t2_cols[] = {{.name = "id", .type_oid = 23, .typmod = -1, .key = true, .type_name = "integer", .attnum = 1},
                              {.name = "v", .type_oid = 25, .typmod = -1, .type_name = "text", .attnum = 2},
                              {.name = "big", .type_oid = 25, .typmod = -1, .type_name = "text", .attnum = 3},
                              {.name = "added", .type_oid = 20, .typmod = -1, .type_name = "bigint", .attnum = 4}};
static od_relation t2_rel = {.oid = 9001, .schema = "public", .name = "contract_t", .replica_identity = 'd',
                             .ncolumns = 4, .columns = t2_cols, .version = 2, .previous = &t_rel,
                             .has_primary_key = true};
static od_column k_cols[] = {{.name = "a", .type_oid = 25, .typmod = -1, .type_name = "text", .attnum = 1},
                             {.name = "n", .type_oid = 23, .typmod = -1, .type_name = "integer", .attnum = 2}};
static od_relation k_rel = {.oid = 9002, .schema = "public", .name = "contract_k", .replica_identity = 'f',
                            .ncolumns = 2, .columns = k_cols, .version = 1, .match_full_row = true};
static od_column y_cols[] = {
    {.name = "id", .type_oid = 20, .typmod = -1, .key = true, .type_name = "bigint", .attnum = 1},
    {.name = "b", .type_oid = 16, .typmod = -1, .type_name = "boolean", .attnum = 2},
    {.name = "i2", .type_oid = 21, .typmod = -1, .type_name = "smallint", .attnum = 3},
    {.name = "f8", .type_oid = 701, .typmod = -1, .type_name = "double precision", .attnum = 4},
    {.name = "num", .type_oid = 1700, .typmod = (12 << 16 | 2) + 4, .type_name = "numeric(12,2)", .attnum = 5},
    {.name = "ts", .type_oid = 1184, .typmod = -1, .type_name = "timestamp with time zone", .attnum = 6},
    {.name = "d", .type_oid = 1082, .typmod = -1, .type_name = "date", .attnum = 7},
    {.name = "j", .type_oid = 3802, .typmod = -1, .type_name = "jsonb", .attnum = 8},
    {.name = "u", .type_oid = 2950, .typmod = -1, .type_name = "uuid", .attnum = 9},
    {.name = "by", .type_oid = 17, .typmod = -1, .type_name = "bytea", .attnum = 10},
    {.name = "arr", .type_oid = 1007, .typmod = -1, .type_name = "integer[]", .attnum = 11},
    {.name = "vc", .type_oid = 1043, .typmod = 14, .type_name = "character varying(10)", .attnum = 12}};
static od_relation y_rel = {.oid = 9003, .schema = "public", .name = "contract_types", .replica_identity = 'd',
                            .ncolumns = 12, .columns = y_cols, .version = 1, .has_primary_key = true};

static void check(run *r, bool ok, const char *name) {
  if (!ok) r->failed++;
  r->report(r->rctx, ok, name, ok ? "" : r->detail);
  r->detail[0] = '\0';
}

static bool fail(run *r, const char *what, const od_error *err) {
  snprintf(r->detail, sizeof r->detail, "%s: %s", what, err ? err->msg : "");
  return false;
}

static od_sink *open_as(run *r, const char *name) {
  od_sink *s = NULL;
  od_error err = {0};
  if (r->env->open(r->env->ctx, name, &s, &err)) {
    fail(r, "open", &err);
    return NULL;
  }
  return s;
}

/* begin, apply n changes, then commit at pos (pos NULL: commit_data). The changes carry the
 * transaction's start position as the pipeline sets it (od_change.txn_start): just below pos, so a
 * replay of the same transaction carries the same one (sinks that version rows by position see it). */
static bool txn(run *r, od_sink *s, const od_change *c, size_t n, const od_pos *pos) {
  od_error err = {0};
  od_change copy[8];
  od_pos start = pos ? od_pos_legacy_lsn(od_pos_to_u64(pos) - 1) : od_pos_none();
  if (n > 8) return fail(r, "the contract's transactions hold at most 8 changes", NULL);
  for (size_t i = 0; i < n; i++) {
    copy[i] = c[i];
    copy[i].index = (uint32_t)i;
    copy[i].txn_start = pos ? &start : NULL;
  }
  c = copy;
  if (s->ops->begin(s, &err)) return fail(r, "begin", &err);
  if (n && s->ops->apply(s, c, n, &err)) {
    s->ops->rollback(s);
    return fail(r, "apply", &err);
  }
  int rc = pos ? s->ops->commit(s, pos, &err) : s->ops->commit_data(s, &err);
  if (rc) {
    s->ops->rollback(s);
    return fail(r, "commit", &err);
  }
  return true;
}

static bool position_is(run *r, od_sink *s, const od_pos *want) {
  od_pos got;
  od_error err = {0};
  if (s->ops->read_position(s, &got, &err)) return fail(r, "read_position", &err);
  if (!od_pos_eq(&got, want)) {
    char a[OD_POS_TEXT_MAX], b[OD_POS_TEXT_MAX];
    snprintf(r->detail, sizeof r->detail, "position is '%s', expected '%s'", od_pos_to_text(&got, a, sizeof a),
             od_pos_to_text(want, b, sizeof b));
    return false;
  }
  return true;
}

static bool rows_are(run *r, const char *table, long want) {
  if (!r->env->count_rows) return true;
  long got = r->env->count_rows(r->env->ctx, table);
  if (got == -1 || got == want) return true;
  if (got < -1) {
    snprintf(r->detail, sizeof r->detail, "table %s could not be read back", table);
    return false;
  }
  snprintf(r->detail, sizeof r->detail, "table %s holds %ld rows, expected %ld", table, got, want);
  return false;
}

static od_change ins(const od_relation *rel, od_value *v) {
  return (od_change){.op = OD_OP_INSERT, .rel = rel, .newtup = {rel->ncolumns, v}};
}

int od_sink_contract(const od_contract_env *env, void (*report)(void *, bool, const char *, const char *),
                     void *rctx) {
  run R = {.env = env, .report = report, .rctx = rctx}, *r = &R;
  od_error err = {0};
  od_sink *s = open_as(r, "contract");
  if (!s) {
    check(r, false, "open");
    return r->failed;
  }
  od_pos none = od_pos_none(), p100 = od_pos_legacy_lsn(0x100), p200 = od_pos_legacy_lsn(0x200),
         pbig = od_pos_legacy_lsn(((uint64_t)0xFFFFFFFF << 32) | 0x12345678);
  check(r, position_is(r, s, &none), "an empty sink holds no position");

  od_value r1[] = {T("1"), T("one"), T("x")}, r2[] = {T("2"), T("two"), NUL}, r3[] = {T("3"), T("three"), T("y")};
  od_change c3[] = {ins(&t_rel, r1), ins(&t_rel, r2), ins(&t_rel, r3)};
  check(r, txn(r, s, c3, 3, &p100) && position_is(r, s, &p100) && rows_are(r, "contract_t", 3),
        "commit stores data and the position together");

  od_value r4[] = {T("4"), T("four"), NUL};
  od_change c4 = ins(&t_rel, r4);
  bool ok = !s->ops->begin(s, &err) && !s->ops->apply(s, &c4, 1, &err);
  s->ops->rollback(s);
  check(r, ok && position_is(r, s, &p100) && rows_are(r, "contract_t", 3), "rollback keeps the old position and drops the data");

  check(r, txn(r, s, &c4, 1, NULL) && position_is(r, s, &p100) && rows_are(r, "contract_t", 4),
        "commit_data commits the data and leaves the checkpoint");

  /* A replay after a crash between the data and its checkpoint: the same changes again. */
  od_change again[] = {ins(&t_rel, r1), ins(&t_rel, r2), ins(&t_rel, r3), c4};
  check(r, txn(r, s, again, 4, &p200) && position_is(r, s, &p200) && rows_are(r, "contract_t", 4),
        "replayed inserts are idempotent");

  od_value u_new[] = {T("1"), T("uno"), UNCH}, kc_old[] = {T("2"), NUL, NUL}, kc_new[] = {T("20"), T("moved"), NUL},
           d_old[] = {T("3"), NUL, NUL};
  od_change uc[] = {{.op = OD_OP_UPDATE, .rel = &t_rel, .newtup = {3, u_new}},
                    {.op = OD_OP_UPDATE, .rel = &t_rel, .old_kind = 'K', .oldtup = {3, kc_old}, .newtup = {3, kc_new}},
                    {.op = OD_OP_DELETE, .rel = &t_rel, .old_kind = 'K', .oldtup = {3, d_old}}};
  check(r, txn(r, s, uc, 3, &p200) && rows_are(r, "contract_t", 3),
        "keyed update (unchanged TOAST value), key change and delete");

  od_value a1[] = {T("5"), T("five"), NUL, T("55")};
  od_change sc = ins(&t2_rel, a1);
  check(r, txn(r, s, &sc, 1, &p200) && rows_are(r, "contract_t", 4), "a column added at the source (schema change)");

  od_value k1[] = {T("dup"), T("1")}, k2[] = {T("dup"), T("1")}, k3[] = {T("other"), NUL};
  od_change kc[] = {ins(&k_rel, k1), ins(&k_rel, k2), ins(&k_rel, k3),
                    {.op = OD_OP_DELETE, .rel = &k_rel, .old_kind = 'O', .oldtup = {2, k1}}};
  check(r, txn(r, s, kc, 4, &p200) && rows_are(r, "contract_k", 2), "keyless rows: duplicates kept, one deleted by full row");

  od_change tr = {.op = OD_OP_TRUNCATE, .rel = &k_rel};
  check(r, txn(r, s, &tr, 1, &p200) && rows_are(r, "contract_k", 0), "truncate");

  od_value y1[] = {T("9007199254740993"), T("t"), T("-32768"), T("-0.5"), T("12345.67"), T("2024-02-29 12:00:00.123456+00"),
                   T("2024-02-29"), T("{\"k\": [1, \"é\"]}"), T("0f8fad5b-d9cb-469f-a165-70867728950e"), T("\\x00ff"),
                   T("{1,2,NULL}"), T("unicode ☃")};
  od_value y1u[] = {T("9007199254740993"), T("f"), NUL, T("Infinity"), NUL, UNCH, NUL, T("null"), NUL, T("\\x"), T("{}"), T("")};
  od_change yc[] = {ins(&y_rel, y1), {.op = OD_OP_UPDATE, .rel = &y_rel, .newtup = {12, y1u}}};
  check(r, txn(r, s, yc, 2, &p200) && rows_are(r, "contract_types", 1), "values of many types, inserted and updated");

  check(r, txn(r, s, NULL, 0, &pbig) && position_is(r, s, &pbig), "a 64-bit position survives its text form");

  if (od_sink_can(s, OD_SINK_MARKS)) {
    uint64_t v = 1;
    ok = !s->ops->begin(s, &err) && !od_sink_set_mark(s, "contract/m", 42, &err) && !s->ops->commit_data(s, &err) &&
         !od_sink_get_mark(s, "contract/m", &v, &err) && v == 42;
    if (ok && !s->ops->begin(s, &err) && !od_sink_set_mark(s, "contract/m", 7, &err)) s->ops->rollback(s);
    ok = ok && !od_sink_get_mark(s, "contract/m", &v, &err) && v == 42;
    ok = ok && !s->ops->begin(s, &err) && !od_sink_set_mark(s, "contract/m", 0, &err) && !s->ops->commit_data(s, &err) &&
         !od_sink_get_mark(s, "contract/m", &v, &err) && v == 0;
    if (!ok) fail(r, "marks", &err);
    check(r, ok && position_is(r, s, &pbig), "marks commit with their transaction, roll back with it, 0 removes");
  }
  if (od_sink_can(s, OD_SINK_TEXT_MARKS)) {
    char *text = NULL;
    od_pos back;
    ok = !s->ops->begin(s, &err) && !od_sink_set_mark(s, "contract/t", 5, &err) &&
         !od_sink_set_pos_mark(s, "contract/t", &p200, &err) && !s->ops->commit_data(s, &err) &&
         !od_sink_get_pos_mark(s, "contract/t", &back, &err) && od_pos_eq(&back, &p200) &&
         !od_sink_get_text_mark(s, "contract/t", &text, &err) && text && !strcmp(text, "pg:0/200");
    free(text);
    uint64_t v = 1;
    ok = ok && !od_sink_get_mark(s, "contract/t", &v, &err) && v == 0;
    ok = ok && !s->ops->begin(s, &err) && !od_sink_set_text_mark(s, "contract/t", NULL, &err) &&
         !s->ops->commit_data(s, &err) && !od_sink_get_pos_mark(s, "contract/t", &back, &err) && od_pos_is_none(&back);
    if (!ok) fail(r, "text marks", &err);
    check(r, ok, "text and position marks replace integer marks; NULL removes");
  }

  od_sink *other = open_as(r, "contract.other");
  ok = other && position_is(r, other, &none) && txn(r, other, NULL, 0, &p100) && position_is(r, other, &p100) &&
       position_is(r, s, &pbig);
  check(r, ok, "checkpoints under different names are separate");
  if (other) other->ops->close(other);
  s->ops->close(s);

  od_sink *re = open_as(r, "contract");
  check(r, re && position_is(r, re, &pbig), "the position is durable across close and open");
  if (re) re->ops->close(re);
  return r->failed;
}
