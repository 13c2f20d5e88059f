/* Unit tests for src/common/tblowner.c: source names as PostgreSQL prints them, and the messages
 * of table ownership (what they name, the command they give). */
#include <string.h>

#include "common/tblowner.h"
#include "test.h"

TEST(source_names_quote_only_what_needs_it) {
  char b[200];
  od_owner_source_name(b, sizeof b, "public", "orders");
  CHECK_STR(b, "public.orders");
  od_owner_source_name(b, sizeof b, "public", "x.y");
  CHECK_STR(b, "public.\"x.y\"");
  od_owner_source_name(b, sizeof b, "x", "y");
  CHECK_STR(b, "x.y");
  od_owner_source_name(b, sizeof b, "Sales Dept", "Orders \"2024\"");
  CHECK_STR(b, "\"Sales Dept\".\"Orders \"\"2024\"\"\"");
  od_owner_source_name(b, sizeof b, "public", "Users");
  CHECK_STR(b, "public.\"Users\"");
  od_owner_source_name(b, 8, "public", "orders");
  CHECK_STR(b, "public.");
}

TEST(dropped_table_message_names_the_table_and_the_command) {
  od_error err;
  od_error_clear(&err);
  CHECK_INT(od_owner_fail_dropped(&err, "sqlite sink /x.db", "a", "p", "public", "a", true, "run X"), OD_ESCHEMA);
  CHECK(!err.retriable);
  CHECK_CONTAINS(err.msg, "sqlite sink /x.db: table a (source table public.a, pipeline p) is gone from the sink");
  CHECK_CONTAINS(err.msg, "`odsync snapshot -c CONFIG -p p --table public.a`");
  CHECK_CONTAINS(err.msg, "or, to accept a table that starts empty, run X");
  /* a name with a space is quoted for the shell, an apostrophe closed and escaped */
  CHECK_INT(od_owner_fail_dropped(&err, "s", "t", "p", "Sales Dept", "it's", true, "run X"), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "--table 'Sales Dept.it'\\''s'`");
  CHECK_INT(od_owner_fail_dropped(&err, "s", "k", "p", "public", "k", false, "run Y"), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "has no key, so it cannot be re-copied by itself");
  CHECK(strstr(err.msg, "odsync snapshot") == NULL);
}

TEST(taken_table_message_names_both_owners) {
  od_error err;
  od_error_clear(&err);
  CHECK_INT(od_owner_fail_taken(&err, "sink", "t", "p1", "public.t", "p2", "public.t", "Fix it."), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "source table public.t of pipeline p2 would be written to table t, which already holds "
                          "source table public.t of pipeline p1");
  CHECK_CONTAINS(err.msg, "Fix it.");
  CHECK_INT(od_owner_fail_taken(&err, "sink", "x.y", "p", "public.\"x.y\"", "p", "x.y", "Fix."), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "holds source table public.\"x.y\" of the same pipeline");
}
