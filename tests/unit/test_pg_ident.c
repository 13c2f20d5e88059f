/* Unit tests for od_pg_parse_qname (src/sources/pg/pg_ident.c): source.tables entries read the way
 * PostgreSQL reads a table name.
 * Asserts: unquoted names fold to lower case (LOWER_T -> public.lower_t); quoted parts keep case,
 * blanks, dots and "" quotes; blanks around the dot; schema defaults to public; bad entries fail
 * with a reason and the offset: blanks in an unquoted name, an unclosed quote, an empty quoted
 * name, a missing part, three parts, a name longer than 63 bytes. */
#include <string.h>

#include "sources/pg/pg_ident.h"
#include "test.h"

static od_pg_qname q;
static char why[300];
static size_t at;

static int parse(const char *s) {
  memset(&q, 0, sizeof q);
  why[0] = '\0';
  return od_pg_parse_qname(s, &q, why, sizeof why, &at);
}

TEST(names_as_postgres_reads_them) {
  CHECK_INT(parse("LOWER_T"), 0);
  CHECK_STR(q.schema, "public");
  CHECK_STR(q.name, "lower_t");
  CHECK_INT(parse("\"Sales Dept\".\"Orders\""), 0);
  CHECK_STR(q.schema, "Sales Dept");
  CHECK_STR(q.name, "Orders");
  CHECK_INT(parse("Shop . \"a.\"\"b\""), 0);
  CHECK_STR(q.schema, "shop");
  CHECK_STR(q.name, "a.\"b");
  CHECK_INT(parse("  s1.t$2  "), 0);
  CHECK_STR(q.schema, "s1");
  CHECK_STR(q.name, "t$2");
  CHECK_INT(parse("\"MiXed\""), 0);
  CHECK_STR(q.name, "MiXed");
}

TEST(bad_names_fail_with_a_reason_and_an_offset) {
  CHECK_INT(parse("Sales Dept.Orders"), -1);
  CHECK_INT((int)at, 6);
  CHECK_CONTAINS(why, "unexpected 'D' after the name");
  CHECK_INT(parse("\"open"), -1);
  CHECK_CONTAINS(why, "not closed");
  CHECK_INT(parse("\"\".t"), -1);
  CHECK_CONTAINS(why, "empty quoted identifier");
  CHECK_INT(parse("s."), -1);
  CHECK_CONTAINS(why, "a name is missing");
  CHECK_INT(parse("a.b.c"), -1);
  CHECK_CONTAINS(why, "unexpected '.'");
  CHECK_INT(parse("1abc"), -1);
  CHECK_CONTAINS(why, "unexpected '1'");
  char longname[80];
  memset(longname, 'x', 64);
  longname[64] = '\0';
  CHECK_INT(parse(longname), -1);
  CHECK_CONTAINS(why, "longer than 63 bytes");
}
