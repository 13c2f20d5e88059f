/* Unit tests of each transform called directly (relation, then change) on hand-made relations and
 * changes: rename, mask (every style), hash and pseudonymize (HMAC-SHA-256 checked against OpenSSL's
 * one-shot HMAC, key rules, secrets never in errors), truncate_date, null, the key-column rules, the
 * type change to text, rewritten defaults, and the filter's rules for inserts, snapshot rows, deletes
 * and updates that move a row into or out of the filter. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/pg_types.h"
#include "fakes/fakes.h"
#include "odsync/registry.h"
#include "test.h"

#define KEY "0123456789abcdef-test-key"

static od_config *cfg;

/* Open transform `yaml` (one flow mapping) from a config; the config stays alive in `cfg`. */
static int open_t(const char *yaml, od_transform **out, od_error *err) {
  setenv("TX_TEST_KEY", KEY, 1);
  setenv("TX_SHORT_KEY", "short", 1);
  char text[2048];
  snprintf(text, sizeof text,
           "pipelines:\n  - name: p\n    source: { type: fake }\n    sink: { type: fakesink, store: x }\n"
           "    transforms:\n      - %s\n", yaml);
  if (cfg) od_config_free(cfg);
  cfg = NULL;
  if (od_config_parse(text, strlen(text), "t.yaml", &cfg, err)) return err->code;
  const od_config_section *sec = &cfg->pipelines[0].transforms.items[0];
  const od_transform_ops *ops = od_transform_find(sec->type);
  if (!ops) OD_TEST_FAIL("no transform %s", sec->type);
  return ops->open(sec, out, err);
}

static od_transform *must_open(const char *yaml) {
  od_transform *t = NULL;
  od_error err = {0};
  if (open_t(yaml, &t, &err)) OD_TEST_FAIL("open %s: %s", yaml, err.msg);
  return t;
}

/* ---- a relation and its rows ---- */

static od_column cols[] = {
    {.name = "id", .type_oid = OD_PGT_INT4, .typmod = -1, .key = true, .type_name = "integer", .attnum = 1},
    {.name = "email", .type_oid = OD_PGT_TEXT, .typmod = -1, .type_name = "text", .attnum = 2},
    {.name = "card", .type_oid = OD_PGT_VARCHAR, .typmod = 24, .type_name = "character varying(20)", .attnum = 3},
    {.name = "born", .type_oid = OD_PGT_DATE, .typmod = -1, .type_name = "date", .attnum = 4},
    {.name = "at", .type_oid = OD_PGT_TIMESTAMPTZ, .typmod = -1, .type_name = "timestamp with time zone", .attnum = 5},
    {.name = "n", .type_oid = OD_PGT_INT8, .typmod = -1, .type_name = "bigint", .attnum = 6, .missing_value = "42"},
};
static od_relation rel = {.oid = 1, .schema = "public", .name = "people", .ncolumns = 6, .columns = cols, .version = 1,
                          .has_primary_key = true};

static char arena[1 << 16];
static size_t used;
static void *bump(od_scratch *s, size_t n) {
  (void)s;
  n = (n + 15) & ~(size_t)15;
  if (used + n > sizeof arena) return NULL;
  void *p = arena + used;
  used += n;
  return p;
}
static od_scratch scratch = {.alloc = bump};

static od_value T(const char *s) { return (od_value){.data = s, .len = (uint32_t)strlen(s), .kind = OD_VALUE_TEXT}; }
static const od_value NUL = {.kind = OD_VALUE_NULL}, UNCH = {.kind = OD_VALUE_UNCHANGED};

static od_value R1[6], R2[6];
static void rows(void) {
  R1[0] = T("1"), R1[1] = T("jane.doe@example.com"), R1[2] = T("4111 1111 1111 1234"), R1[3] = T("1984-07-12"),
  R1[4] = T("2024-03-15 13:45:12.123456+01"), R1[5] = T("77");
  R2[0] = T("2"), R2[1] = NUL, R2[2] = UNCH, R2[3] = T("0044-03-15 BC"), R2[4] = T("infinity"), R2[5] = T("-5");
}

/* Run one change through t; returns keep. */
static bool run(od_transform *t, const od_relation **out_rel, const od_change *in, od_change *out) {
  od_error err = {0};
  if (t->ops->relation(t, in->rel, out_rel, &err)) OD_TEST_FAIL("relation: %s", err.msg);
  bool keep = true;
  if (*out_rel == in->rel) {
    *out = *in;
    return true;
  }
  if (t->ops->change(t, *out_rel, in, out, &scratch, &keep, &err)) OD_TEST_FAIL("change: %s", err.msg);
  CHECK(out->rel == *out_rel);
  return keep;
}

static const char *txt(const od_tuple *t, int i) {
  static char buf[4][128];
  static int k;
  const od_value *v = &t->values[i];
  char *b = buf[k++ % 4];
  if (v->kind == OD_VALUE_NULL) return "NULL";
  if (v->kind == OD_VALUE_UNCHANGED) return "UNCHANGED";
  snprintf(b, 128, "%.*s", (int)v->len, v->data);
  CHECK_INT(strlen(b), v->len);
  return b;
}

static void done(od_transform *t) {
  t->ops->close(t);
  od_config_free(cfg);
  cfg = NULL;
  used = 0;
}

/* ---- rename ---- */

TEST(rename_changes_names_only_and_keeps_the_previous_chain) {
  fake_register();
  rows();
  od_transform *t = must_open("{ type: rename, columns: [email=contact, id=person_id], tables: [people] }");
  CHECK(t->ops->keeps_values);
  od_change in = {.op = OD_OP_INSERT, .rel = &rel, .newtup = {6, R1}}, out;
  const od_relation *o;
  CHECK(run(t, &o, &in, &out));
  CHECK_STR(o->columns[0].name, "person_id");
  CHECK(o->columns[0].key);
  CHECK_STR(o->columns[1].name, "contact");
  CHECK_STR(o->columns[2].name, "card");
  CHECK(out.newtup.values == R1);
  CHECK_STR(rel.columns[1].name, "email"); /* the input is untouched */
  /* a second version: its previous is the first output */
  od_relation v2 = rel;
  v2.version = 2;
  v2.previous = &rel;
  const od_relation *o2;
  od_error err = {0};
  CHECK_INT(t->ops->relation(t, &v2, &o2, &err), OD_OK);
  CHECK(o2->previous == o);
  /* a table not listed is left alone */
  od_relation other = rel;
  other.name = "orders";
  CHECK_INT(t->ops->relation(t, &other, &o2, &err), OD_OK);
  CHECK(o2 == &other);
  done(t);
}

TEST(rename_errors_name_file_line_and_the_columns) {
  fake_register();
  od_transform *t = NULL;
  od_error err = {0};
  CHECK_INT(open_t("{ type: rename, columns: [email] }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "t.yaml:6:");
  CHECK_CONTAINS(err.msg, "pipelines[0].transforms[0].columns[0]: 'email' is not OLD=NEW");
  CHECK_INT(open_t("{ type: rename, columns: [a=b, a=c] }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "column a is renamed twice");
  CHECK_INT(open_t("{ type: rename }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "rename needs 'columns: [old=new, ...]'");
  t = must_open("{ type: rename, columns: [email=card] }");
  const od_relation *o;
  CHECK_INT(t->ops->relation(t, &rel, &o, &err), OD_ECONFIG);
  CHECK_STR(err.msg, "rename gives columns email and card of public.people the same name card");
  done(t);
}

/* ---- mask ---- */

static const char *mask1(const char *yaml, int col, const char *value) {
  od_transform *t = must_open(yaml);
  od_value v[6];
  memcpy(v, R1, sizeof v);
  v[col] = T(value);
  od_change in = {.op = OD_OP_INSERT, .rel = &rel, .newtup = {6, v}}, out;
  const od_relation *o;
  CHECK(run(t, &o, &in, &out));
  static char res[128];
  snprintf(res, sizeof res, "%s", txt(&out.newtup, col));
  done(t);
  return res;
}

TEST(mask_styles) {
  fake_register();
  rows();
  CHECK_STR(mask1("{ type: mask, columns: [email] }", 1, "secret"), "****");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: fixed, with: REDACTED }", 1, "x"), "REDACTED");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: keep_last }", 1, "DE89370400440532013000"),
            "******************3000");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: keep_last, keep: 2, char: '#' }", 1, "abc"), "#bc");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: keep_last, keep: 9 }", 1, "abc"), "abc");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: keep_last, keep: 2 }", 1, "Zoë Müller"), "********er");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: keep_last, keep: 3 }", 1, "Zoë Mü"), "*** Mü");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: email }", 1, "jane.doe@example.com"),
            "j*******@example.com");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: email }", 1, "émile@x.fr"), "é****@x.fr");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: email }", 1, "not-an-email"), "************");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: phone }", 1, "+1 (555) 123-4567"), "+* (***) ***-4567");
  CHECK_STR(mask1("{ type: mask, columns: [email], style: phone, keep: 2 }", 1, "0171 2345678"), "**** *****78");
  CHECK_STR(mask1("{ type: mask, columns: [card], style: card }", 2, "4111 1111 1111 1234"), "**** **** **** 1234");
  CHECK_STR(mask1("{ type: mask, columns: [card], style: card }", 2, "4111-1111-1111-1234"), "****-****-****-1234");
  CHECK_STR(mask1("{ type: mask, columns: [card], style: card }", 2, "12"), "12");
}

TEST(mask_makes_text_refuses_keys_and_keeps_null_and_unchanged) {
  fake_register();
  rows();
  od_transform *t = must_open("{ type: mask, columns: [card, n, email], style: keep_last, keep: 1 }");
  CHECK(!t->ops->keeps_values);
  od_change in = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, R2}, .old_kind = 'O', .oldtup = {6, R1}}, out;
  const od_relation *o;
  CHECK(run(t, &o, &in, &out));
  CHECK_INT(o->columns[2].type_oid, OD_PGT_TEXT);
  CHECK_STR(o->columns[2].type_name, "text");
  CHECK_INT(o->columns[2].typmod, -1);
  CHECK_INT(o->columns[5].type_oid, OD_PGT_TEXT);
  CHECK_STR(o->columns[5].missing_value, "*2"); /* the default of older rows is masked too */
  CHECK_INT(o->columns[3].type_oid, OD_PGT_DATE); /* untouched columns keep their type */
  CHECK_STR(txt(&out.newtup, 1), "NULL");
  CHECK_STR(txt(&out.newtup, 2), "UNCHANGED");
  CHECK_STR(txt(&out.newtup, 5), "*5");
  CHECK_STR(txt(&out.newtup, 0), "2");
  CHECK_STR(txt(&out.oldtup, 1), "*******************m"); /* the old row too */
  CHECK_STR(R1[1].data, "jane.doe@example.com"); /* the input is untouched */
  done(t);
  od_error err = {0};
  const char *refused[] = {"{ type: mask, columns: [id] }", "{ type: null, columns: [id] }",
                           "{ type: truncate_date, columns: [id] }"};
  const char *names[] = {"mask", "null", "truncate_date"};
  for (int i = 0; i < 3; i++) {
    t = must_open(refused[i]);
    CHECK_INT(t->ops->relation(t, &rel, &o, &err), OD_ECONFIG);
    CHECK_CONTAINS(err.msg, "column id is part of the key of public.people");
    CHECK_CONTAINS(err.msg, names[i]);
    done(t);
  }
  CHECK_INT(open_t("{ type: mask, columns: [email], style: blur }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "style: 'blur' is not a mask style (fixed, keep_last, email, phone, card)");
  CHECK_INT(open_t("{ type: mask, columns: [email], colums: [x] }", &t, &err), OD_ECONFIG);
  CHECK_INT(open_t("{ type: mask }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "mask needs 'columns: [name, ...]'");
  od_config_free(cfg);
  cfg = NULL;
}

/* ---- hash, pseudonymize ---- */

static void hmac_hex(const char *v, char out[65]) {
  unsigned char d[32];
  unsigned int n = 32;
  HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)v, strlen(v), d, &n);
  for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

TEST(hash_and_pseudonymize_are_keyed_hmac_sha256_and_allowed_on_keys) {
  fake_register();
  rows();
  od_transform *t = must_open("{ type: hash, columns: [id, email], key: \"${env:TX_TEST_KEY}\" }");
  od_change in = {.op = OD_OP_DELETE, .rel = &rel, .old_kind = 'O', .oldtup = {6, R1}}, out;
  const od_relation *o;
  CHECK(run(t, &o, &in, &out));
  char want[65];
  hmac_hex("jane.doe@example.com", want);
  CHECK_STR(txt(&out.oldtup, 1), want);
  hmac_hex("1", want);
  CHECK_STR(txt(&out.oldtup, 0), want);
  CHECK(o->columns[0].key);
  CHECK_INT(o->columns[0].type_oid, OD_PGT_TEXT);
  /* equal inputs, equal outputs: an insert of the same key gives the same token */
  od_change ins = {.op = OD_OP_INSERT, .rel = &rel, .newtup = {6, R1}}, out2;
  CHECK(run(t, &o, &ins, &out2));
  CHECK_STR(txt(&out2.newtup, 0), want);
  done(t);

  t = must_open("{ type: pseudonymize, columns: [email], prefix: u_, key: \"${env:TX_TEST_KEY}\" }");
  CHECK(run(t, &o, &ins, &out));
  hmac_hex("jane.doe@example.com", want);
  char tok[32];
  snprintf(tok, sizeof tok, "u_%.16s", want);
  CHECK_STR(txt(&out.newtup, 1), tok);
  done(t);
  t = must_open("{ type: pseudonymize, columns: [email], length: 40, key: \"${env:TX_TEST_KEY}\" }");
  CHECK(run(t, &o, &ins, &out));
  CHECK_INT(out.newtup.values[1].len, 40);
  CHECK(!strncmp(out.newtup.values[1].data, want, 40));
  done(t);
}

TEST(hmac_keys_come_from_references_and_never_appear_in_errors) {
  fake_register();
  od_transform *t = NULL;
  od_error err = {0};
  CHECK_INT(open_t("{ type: hash, columns: [email], key: literal-key-in-the-file }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "key: the key must come from ${env:NAME} or ${file:PATH}");
  CHECK(!strstr(err.msg, "literal-key-in-the-file"));
  CHECK_INT(open_t("{ type: pseudonymize, columns: [email], key: \"${env:TX_SHORT_KEY}\" }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "the key is 5 bytes; at least 16 are needed");
  CHECK(!strstr(err.msg, "short"));
  CHECK_INT(open_t("{ type: hash, columns: [email] }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "hash needs 'key: ${env:NAME}' or 'key: ${file:PATH}'");
  CHECK_INT(open_t("{ type: pseudonymize, columns: [email], length: 4, key: \"${env:TX_TEST_KEY}\" }", &t, &err),
            OD_ECONFIG);
  od_config_free(cfg);
  cfg = NULL;
}

/* ---- truncate_date, null ---- */

TEST(truncate_date_units_and_types) {
  fake_register();
  rows();
  struct { const char *unit; int col; const char *in, *want; } c[] = {
      {"year", 3, "1984-07-12", "1984-01-01"},
      {"month", 3, "1984-07-12", "1984-07-01"},
      {"day", 3, "1984-07-12", "1984-07-12"},
      {"year", 3, "0044-03-15 BC", "0044-01-01 BC"},
      {"year", 3, "12345-06-07", "12345-01-01"},
      {"day", 4, "2024-03-15 13:45:12.123456+01", "2024-03-15 00:00:00+01"},
      {"hour", 4, "2024-03-15 13:45:12.5-05:30", "2024-03-15 13:00:00-05:30"},
      {"minute", 4, "2024-03-15 13:45:12+00", "2024-03-15 13:45:00+00"},
      {"month", 4, "2024-03-15 13:45:12+00", "2024-03-01 00:00:00+00"},
      {"year", 4, "infinity", "infinity"},
      {"year", 4, "-infinity", "-infinity"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    char yaml[128];
    snprintf(yaml, sizeof yaml, "{ type: truncate_date, columns: [born, at], unit: %s }", c[i].unit);
    const char *got = mask1(yaml, c[i].col, c[i].in);
    if (strcmp(got, c[i].want)) OD_TEST_FAIL("%s of %s: '%s', want '%s'", c[i].unit, c[i].in, got, c[i].want);
    CHECK(1);
  }
  od_transform *t = must_open("{ type: truncate_date, columns: [born] }");
  od_change in = {.op = OD_OP_INSERT, .rel = &rel, .newtup = {6, R1}}, out;
  const od_relation *o;
  CHECK(run(t, &o, &in, &out));
  CHECK_INT(o->columns[3].type_oid, OD_PGT_DATE); /* keeps its type */
  od_value bad[6];
  memcpy(bad, R1, sizeof bad);
  bad[3] = T("07/12/1984");
  in.newtup.values = bad;
  bool keep;
  od_error err = {0};
  CHECK_INT(t->ops->change(t, o, &in, &out, &scratch, &keep, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "column born: truncate_date: the value is not an ISO date/time");
  CHECK(!strstr(err.msg, "1984"));
  done(t);
  t = must_open("{ type: truncate_date, columns: [email] }");
  CHECK_INT(t->ops->relation(t, &rel, &o, &err), OD_ECONFIG);
  CHECK_STR(err.msg, "column email of public.people is of type text; truncate_date takes date, timestamp or "
                     "timestamptz columns");
  done(t);
}

TEST(null_empties_columns_and_keeps_their_type) {
  fake_register();
  rows();
  od_transform *t = must_open("{ type: null, columns: [email, n] }");
  od_change in = {.op = OD_OP_INSERT, .rel = &rel, .newtup = {6, R1}}, out;
  const od_relation *o;
  CHECK(run(t, &o, &in, &out));
  CHECK_STR(txt(&out.newtup, 1), "NULL");
  CHECK_STR(txt(&out.newtup, 5), "NULL");
  CHECK_STR(txt(&out.newtup, 2), "4111 1111 1111 1234");
  CHECK_INT(o->columns[5].type_oid, OD_PGT_INT8);
  CHECK(o->columns[5].missing_value == NULL);
  done(t);
}

/* ---- filter ---- */

static od_transform *F;
static const od_relation *FO;

static bool filt(od_change *in, od_change *out) {
  od_error err = {0};
  bool keep = true;
  if (F->ops->change(F, FO, in, out, &scratch, &keep, &err)) OD_TEST_FAIL("change: %s", err.msg);
  return keep;
}

TEST(filter_inserts_snapshot_rows_and_deletes) {
  fake_register();
  rows();
  F = must_open("{ type: filter, where: \"email LIKE '%@example.com' AND n > 10\" }");
  od_error err = {0};
  CHECK_INT(F->ops->relation(F, &rel, &FO, &err), OD_OK);
  CHECK(FO != &rel);
  od_change out;
  od_change a = {.op = OD_OP_INSERT, .rel = &rel, .newtup = {6, R1}};
  CHECK(filt(&a, &out));
  CHECK_INT(out.op, OD_OP_INSERT);
  od_change b = {.op = OD_OP_READ, .rel = &rel, .newtup = {6, R2}};
  CHECK(!filt(&b, &out)); /* email NULL: unknown, not passed */
  b.op = OD_OP_READ, b.newtup.values = R1;
  CHECK(filt(&b, &out));
  od_change d = {.op = OD_OP_DELETE, .rel = &rel, .old_kind = 'O', .oldtup = {6, R2}};
  CHECK(!filt(&d, &out)); /* the full old row was never sent */
  d.oldtup.values = R1;
  CHECK(filt(&d, &out));
  od_value k[6] = {T("9"), NUL, NUL, NUL, NUL, NUL};
  od_change dk = {.op = OD_OP_DELETE, .rel = &rel, .old_kind = 'K', .oldtup = {6, k}};
  CHECK(filt(&dk, &out)); /* only the key known: cannot tell, the delete goes */
  od_change tr = {.op = OD_OP_TRUNCATE, .rel = &rel};
  CHECK(filt(&tr, &out));
  done(F);
  /* a filter on key columns judges key-only deletes */
  F = must_open("{ type: filter, where: \"id < 5\" }");
  CHECK_INT(F->ops->relation(F, &rel, &FO, &err), OD_OK);
  CHECK(!filt(&dk, &out));
  k[0] = T("4");
  CHECK(filt(&dk, &out));
  done(F);
  /* parse errors carry FILE:LINE:COL and the character */
  od_transform *t;
  CHECK_INT(open_t("{ type: filter, where: \"id IN (1, 2\" }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "t.yaml:6:");
  CHECK_CONTAINS(err.msg, "pipelines[0].transforms[0].where: at character 12: expected ',' or ')' in the IN list");
  CHECK_INT(open_t("{ type: filter }", &t, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "filter needs 'where: \"<expression>\"'");
  F = must_open("{ type: filter, where: \"region = 'eu'\", tables: [public.people] }");
  CHECK_INT(F->ops->relation(F, &rel, &FO, &err), OD_ECONFIG);
  CHECK_STR(err.msg, "column region (at character 1 of the filter) is not a column of public.people");
  done(F);
}

TEST(filter_updates_moving_rows_in_and_out) {
  fake_register();
  rows();
  F = must_open("{ type: filter, where: \"n > 10\" }");
  od_error err = {0};
  CHECK_INT(F->ops->relation(F, &rel, &FO, &err), OD_OK);
  od_value in_row[6], out_row[6];
  memcpy(in_row, R1, sizeof in_row);     /* n = 77 */
  memcpy(out_row, R1, sizeof out_row);
  out_row[5] = T("3");
  out_row[2] = UNCH;                      /* card unchanged (TOAST) in the new row */
  od_change out;
  /* in -> in: the update */
  od_change u = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, in_row}, .old_kind = 'O', .oldtup = {6, R1}};
  CHECK(filt(&u, &out));
  CHECK_INT(out.op, OD_OP_UPDATE);
  /* in -> out: a delete of the old row (its full old tuple) */
  u.newtup.values = out_row;
  CHECK(filt(&u, &out));
  CHECK_INT(out.op, OD_OP_DELETE);
  CHECK_INT(out.old_kind, 'O');
  CHECK_STR(txt(&out.oldtup, 0), "1");
  CHECK_INT(out.newtup.ncolumns, 0);
  /* out -> in: an insert, the unchanged card taken from the old row */
  od_value old_out[6];
  memcpy(old_out, R1, sizeof old_out);
  old_out[5] = T("3");
  od_value new_in[6];
  memcpy(new_in, R1, sizeof new_in);
  new_in[2] = UNCH;
  od_change m = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, new_in}, .old_kind = 'O', .oldtup = {6, old_out}};
  CHECK(filt(&m, &out));
  CHECK_INT(out.op, OD_OP_INSERT);
  CHECK_INT(out.old_kind, 0);
  CHECK_STR(txt(&out.newtup, 2), "4111 1111 1111 1234");
  CHECK_STR(txt(&out.newtup, 5), "77");
  CHECK(new_in[2].kind == OD_VALUE_UNCHANGED); /* the input is untouched */
  /* out -> out: dropped */
  m.newtup.values = old_out;
  CHECK(!filt(&m, &out));
  /* no old tuple (default replica identity, key unchanged): new in -> the update (a sink writes a
   * missing row it has all values of); new out -> a delete of the new row's key */
  od_change n = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, in_row}};
  CHECK(filt(&n, &out));
  CHECK_INT(out.op, OD_OP_UPDATE);
  n.newtup.values = out_row;
  CHECK(filt(&n, &out));
  CHECK_INT(out.op, OD_OP_DELETE);
  CHECK_INT(out.old_kind, 'K');
  CHECK_STR(txt(&out.oldtup, 0), "1");
  CHECK_STR(txt(&out.oldtup, 1), "NULL");
  CHECK_INT(out.oldtup.ncolumns, 6);
  /* key change with an old key: the delete carries the old key */
  od_value oldkey[6] = {T("99"), NUL, NUL, NUL, NUL, NUL};
  od_change kc = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, out_row}, .old_kind = 'K', .oldtup = {6, oldkey}};
  CHECK(filt(&kc, &out));
  CHECK_INT(out.op, OD_OP_DELETE);
  CHECK_STR(txt(&out.oldtup, 0), "99");
  /* the new row cannot be judged (the value read is unchanged, no old row): the update as it is */
  od_value unk[6];
  memcpy(unk, R1, sizeof unk);
  unk[5] = UNCH;
  od_change c = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, unk}};
  CHECK(filt(&c, &out));
  CHECK_INT(out.op, OD_OP_UPDATE);
  done(F);
  /* a key-only filter and no old tuple: old judged on the (unchanged) key */
  F = must_open("{ type: filter, where: \"id = 1\" }");
  CHECK_INT(F->ops->relation(F, &rel, &FO, &err), OD_OK);
  od_value other[6];
  memcpy(other, R1, sizeof other);
  other[0] = T("2");
  od_change o2 = {.op = OD_OP_UPDATE, .rel = &rel, .newtup = {6, other}};
  CHECK(!filt(&o2, &out)); /* out -> out */
  done(F);
}
