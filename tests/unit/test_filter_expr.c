/* Unit tests of the filter's expression language (src/transforms/filter_expr.c): a corpus of good
 * expressions with the rows they pass and fail, a corpus of bad ones with the character their error
 * points at, SQL's three-valued logic, numbers compared as numbers (exactly for decimals), LIKE,
 * IN, IS NULL, booleans, quoted names, a missing column at bind time, unchanged TOAST values. */
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "test.h"
#include "transforms/filter_expr.h"

/* A relation: id int4 key, name text, amount numeric, active bool, "Mixed Case" text, f float8. */
static od_column cols[] = {
    {.name = "id", .type_oid = OD_PGT_INT4, .key = true},
    {.name = "name", .type_oid = OD_PGT_TEXT},
    {.name = "amount", .type_oid = OD_PGT_NUMERIC},
    {.name = "active", .type_oid = OD_PGT_BOOL},
    {.name = "Mixed Case", .type_oid = OD_PGT_TEXT},
    {.name = "f", .type_oid = OD_PGT_FLOAT8},
};
static od_relation rel = {.schema = "public", .name = "t", .ncolumns = 6, .columns = cols};

/* A row from "id|name|amount|active|mixed|f" with \N for NULL and ~ for unchanged. */
static od_tuple row(const char *spec, od_value *v, char *buf) {
  strcpy(buf, spec);
  char *save, *tok = strtok_r(buf, "|", &save);
  uint16_t n = 0;
  for (; tok && n < 6; tok = strtok_r(NULL, "|", &save), n++) {
    if (!strcmp(tok, "\\N")) v[n] = (od_value){.kind = OD_VALUE_NULL};
    else if (!strcmp(tok, "~")) v[n] = (od_value){.kind = OD_VALUE_UNCHANGED};
    else v[n] = (od_value){.data = tok, .len = (uint32_t)strlen(tok), .kind = OD_VALUE_TEXT};
  }
  return (od_tuple){n, v};
}

static enum fx_result eval(const char *expr, const char *spec) {
  fx_expr *e = NULL;
  fx_bound *b = NULL;
  od_error err = {0};
  if (fx_parse(expr, &e, &err)) OD_TEST_FAIL("parse '%s': %s", expr, err.msg);
  if (fx_bind(e, &rel, &b, &err)) OD_TEST_FAIL("bind '%s': %s", expr, err.msg);
  od_value v[6];
  char buf[256];
  od_tuple t = row(spec, v, buf);
  enum fx_result r = fx_eval(e, b, &t, NULL);
  fx_bound_free(b);
  fx_free(e);
  return r;
}

static const char *R1 = "7|Alice|100.50|t|Hello World|1.5e3";
static const char *R2 = "12|bob|-3|f|x_y%z|-0.0";
static const char *RN = "3|\\N|\\N|\\N|\\N|\\N";

TEST(good_expressions_pass_and_fail_the_right_rows) {
  struct { const char *expr, *row; int want; } c[] = {
      {"id = 7", "R1", FX_TRUE},
      {"id = 7.0", "R1", FX_TRUE},
      {"id <> 7", "R1", FX_FALSE},
      {"id != 7", "R2", FX_TRUE},
      {"id > 10", "R2", FX_TRUE},
      {"id >= 12 AND id <= 12", "R2", FX_TRUE},
      {"id < 10", "R2", FX_FALSE},
      {"amount > 100.5", "R1", FX_FALSE},
      {"amount >= 100.5", "R1", FX_TRUE},
      {"amount > 100.499999999999999999999", "R1", FX_TRUE}, /* exact, not double */
      {"amount < 0", "R2", FX_TRUE},
      {"amount = -3.000", "R2", FX_TRUE},
      {"f = 1500", "R1", FX_TRUE},
      {"f > 1e3", "R1", FX_TRUE},
      {"f = 0", "R2", FX_TRUE}, /* -0.0 = 0 */
      {"name = 'Alice'", "R1", FX_TRUE},
      {"name = 'alice'", "R1", FX_FALSE}, /* byte comparison */
      {"name < 'B'", "R1", FX_TRUE},
      {"name > 'a'", "R2", FX_TRUE},
      {"name IN ('x', 'bob', 'y')", "R2", FX_TRUE},
      {"name NOT IN ('x', 'bob')", "R2", FX_FALSE},
      {"id IN (1, 2, 7)", "R1", FX_TRUE},
      {"id IN (1, 2)", "R1", FX_FALSE},
      {"name LIKE 'A%'", "R1", FX_TRUE},
      {"name LIKE '_lice'", "R1", FX_TRUE},
      {"name LIKE '%c_'", "R1", FX_TRUE},
      {"name LIKE 'A'", "R1", FX_FALSE},
      {"name NOT LIKE '%o%'", "R1", FX_TRUE},
      {"\"Mixed Case\" LIKE 'Hello%World'", "R1", FX_TRUE},
      {"\"Mixed Case\" LIKE 'x\\_y\\%z'", "R2", FX_TRUE},
      {"\"Mixed Case\" LIKE 'x\\_y\\%'", "R2", FX_FALSE},
      {"active = TRUE", "R1", FX_TRUE},
      {"active = false", "R2", FX_TRUE},
      {"active = 't'", "R1", FX_TRUE},
      {"NOT active = true", "R2", FX_TRUE},
      {"ID = 7 and NAME = 'Alice'", "R1", FX_TRUE}, /* unquoted names fold to lower case */
      {"id = 1 OR id = 7 AND name = 'nobody'", "R1", FX_FALSE}, /* AND binds tighter */
      {"(id = 1 OR id = 7) AND name = 'Alice'", "R1", FX_TRUE},
      {"NOT (id = 1 OR name = 'bob')", "R1", FX_TRUE},
      {"name = 'it''s'", "R1", FX_FALSE},
      {"7 = id", "R1", FX_TRUE},
      {"amount > id", "R1", FX_TRUE},
      {"name IS NULL", "RN", FX_TRUE},
      {"name IS NOT NULL", "RN", FX_FALSE},
      {"name IS NOT NULL", "R1", FX_TRUE},
      {"name = 'x'", "RN", FX_UNKNOWN},
      {"NOT name = 'x'", "RN", FX_UNKNOWN},
      {"name = 'x' OR id = 3", "RN", FX_TRUE},
      {"name = 'x' AND id = 3", "RN", FX_UNKNOWN},
      {"name = 'x' AND id = 4", "RN", FX_FALSE},
      {"id IN (1, NULL)", "RN", FX_UNKNOWN},
      {"id IN (3, NULL)", "RN", FX_TRUE},
      {"id NOT IN (1, NULL)", "RN", FX_UNKNOWN},
      {"name = NULL", "R1", FX_UNKNOWN},
      {"name LIKE '%'", "RN", FX_UNKNOWN},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    const char *r = !strcmp(c[i].row, "R1") ? R1 : !strcmp(c[i].row, "R2") ? R2 : RN;
    enum fx_result got = eval(c[i].expr, r);
    if ((int)got != c[i].want) OD_TEST_FAIL("'%s' on %s: %d, want %d", c[i].expr, c[i].row, got, c[i].want);
    CHECK(1);
  }
}

TEST(bad_expressions_name_the_character_and_what_was_expected) {
  struct { const char *expr, *want; } c[] = {
      {"", "at character 1: expected an expression, found the end of the expression"},
      {"id =", "at character 5: expected a column name, a 'string', a number, TRUE, FALSE or NULL, found the end"},
      {"id = 1 AND", "at character 11: expected a column name"},
      {"id", "at character 3: expected a comparison (= != <> < <= > >=), IN, IS [NOT] NULL or LIKE"},
      {"(id = 1", "at character 8: expected ')' to close the parenthesis"},
      {"id = 1)", "at character 7: expected AND, OR or the end of the expression, found ')'"},
      {"name = 'abc", "at character 8: expected a column name, a 'string', a number, TRUE, FALSE or NULL, found an unterminated string"},
      {"\"name = 1", "at character 1: expected a column name, a 'string', a number, TRUE, FALSE or NULL, found an unterminated quoted name"},
      {"id IN 1, 2", "at character 7: expected '(' after IN, found '1'"},
      {"id IN (1 2)", "at character 10: expected ',' or ')' in the IN list, found '2'"},
      {"id IN ()", "at character 8: expected a column name"},
      {"name LIKE id", "at character 11: expected a 'pattern' string after LIKE, found 'id'"},
      {"id IS 1", "at character 7: expected NULL or NOT NULL after IS, found '1'"},
      {"id IS NOT 1", "at character 11: expected NULL after IS NOT"},
      {"id NOT = 1", "at character 8: expected LIKE or IN after NOT, found '='"},
      {"id == 1", "at character 5: expected a column name"},
      {"id = 1 && id = 2", "at character 8: expected AND, OR or the end of the expression, found '&'"},
      {"id ! 1", "at character 4: expected a comparison"},
      {"id = 12abc", "at character 6: expected a column name, a 'string', a number, TRUE, FALSE or NULL, found '12abc'"},
      {"and = 1", "at character 1: expected a column name"},
      {"\"\" = 1", "at character 1: expected a column name (\"\" is empty)"},
      {"id = 1 OR OR id = 2", "at character 11: expected a column name"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    fx_expr *e = NULL;
    od_error err = {0};
    int rc = fx_parse(c[i].expr, &e, &err);
    if (rc != OD_ECONFIG) OD_TEST_FAIL("'%s' parsed (rc %d)", c[i].expr, rc);
    CHECK(e == NULL);
    if (strncmp(err.msg, c[i].want, strlen(c[i].want)))
      OD_TEST_FAIL("'%s': error \"%s\", want it to start with \"%s\"", c[i].expr, err.msg, c[i].want);
  }
  /* deep nesting is refused, not a stack overflow */
  char deep[400] = "";
  for (int i = 0; i < 100; i++) strcat(deep, "(");
  strcat(deep, "id = 1");
  for (int i = 0; i < 100; i++) strcat(deep, ")");
  fx_expr *e = NULL;
  od_error err = {0};
  CHECK_INT(fx_parse(deep, &e, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "nested more than 64 deep");
}

TEST(a_missing_column_is_named_with_the_table_at_bind_time) {
  fx_expr *e = NULL;
  fx_bound *b = NULL;
  od_error err = {0};
  CHECK_INT(fx_parse("id = 1 AND region = 'eu'", &e, &err), OD_OK);
  CHECK_INT(fx_bind(e, &rel, &b, &err), OD_ECONFIG);
  CHECK_STR(err.msg, "column region (at character 12 of the filter) is not a column of public.t");
  fx_free(e);
}

TEST(key_only_and_unchanged_values) {
  fx_expr *e = NULL;
  fx_bound *b = NULL;
  od_error err = {0};
  CHECK_INT(fx_parse("id > 5", &e, &err), OD_OK);
  CHECK_INT(fx_bind(e, &rel, &b, &err), OD_OK);
  CHECK(fx_bound_key_only(b));
  fx_bound_free(b);
  fx_free(e);
  CHECK_INT(fx_parse("id > 5 AND name LIKE 'A%'", &e, &err), OD_OK);
  CHECK_INT(fx_bind(e, &rel, &b, &err), OD_OK);
  CHECK(!fx_bound_key_only(b));
  od_value nv[6], ov[6];
  char nb[128], ob[128];
  od_tuple nt = row("7|~|1|t|x|1", nv, nb), ot = row("7|Anna|1|t|x|1", ov, ob);
  CHECK_INT(fx_eval(e, b, &nt, NULL), FX_CANT);  /* name unchanged, nothing to take it from */
  CHECK_INT(fx_eval(e, b, &nt, &ot), FX_TRUE);   /* taken from the old row */
  fx_bound_free(b);
  fx_free(e);
}
