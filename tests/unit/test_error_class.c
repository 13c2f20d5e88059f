/* test_error_class.c — the one classification table (core/error_class.h): SQLSTATE classes and
 * codes, SQLite result codes (primary and extended), the longest-match rule, and that an error
 * without a known cause keeps what its raiser said (od_error.retriable). */
#include "core/error_class.h"
#include "test.h"

static od_error with_state(const char *st, bool retriable) {
  od_error e;
  OD_FAIL(&e, OD_ESINK, "x");
  e.retriable = retriable;
  snprintf(e.sqlstate, sizeof e.sqlstate, "%s", st);
  return e;
}

TEST(sqlstates_retriable) {
  const char *r[] = {"08006", "08001", "40001", "40P01", "55P03", "57014", "57P01", "57P03", "53100", "53300", "58030"};
  for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
    od_error e = with_state(r[i], false);
    CHECK_STR(od_error_class_name(od_error_classify(&e)), "retry");
  }
}

TEST(sqlstates_fatal) {
  const char *f[] = {"28P01", "28000", "3D000", "42704", "42P01", "55000", "0A000", "42501", "XX001"};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    od_error e = with_state(f[i], true); /* the table wins over the raiser's flag */
    CHECK_STR(od_error_class_name(od_error_classify(&e)), "fatal");
  }
}

TEST(sqlstates_row_level) {
  const char *w[] = {"23514", "23505", "23502", "23503", "22003", "22P02", "22021", "22001", "P0001"};
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    od_error e = with_state(w[i], false);
    CHECK_STR(od_error_class_name(od_error_classify(&e)), "row");
  }
  /* P0001 is a code, not the class P0: other PL/pgSQL errors are not row rejections */
  CHECK(od_error_class_of_sqlstate("P0002") == 0);
}

TEST(unknown_cause_keeps_the_raisers_word) {
  od_error e = with_state("", true);
  CHECK(od_error_classify(&e) == OD_ERRCLASS_RETRY);
  e.retriable = false;
  CHECK(od_error_classify(&e) == OD_ERRCLASS_FATAL);
  e = with_state("XX000", true); /* internal_error: not in the table */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_RETRY);
  CHECK(od_error_class_of_sqlstate("2") == 0);
  CHECK(od_error_class_of_sqlstate(NULL) == 0);
}

TEST(sqlite_codes) {
  od_error e;
  OD_FAIL(&e, OD_ESINK, "x");
  e.sqlite_code = 5; /* SQLITE_BUSY */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_RETRY);
  e.sqlite_code = 6 | (1 << 8); /* SQLITE_LOCKED_SHAREDCACHE */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_RETRY);
  e.sqlite_code = 13; /* SQLITE_FULL */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_RETRY);
  e.sqlite_code = 19 | (1 << 8); /* SQLITE_CONSTRAINT_CHECK */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_ROW);
  e.sqlite_code = 19 | (6 << 8); /* SQLITE_CONSTRAINT_PRIMARYKEY */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_ROW);
  e.sqlite_code = 20; /* SQLITE_MISMATCH */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_ROW);
  e.sqlite_code = 18; /* SQLITE_TOOBIG */
  CHECK(od_error_classify(&e) == OD_ERRCLASS_ROW);
  e.sqlite_code = 26; /* SQLITE_NOTADB */
  e.retriable = true;
  CHECK(od_error_classify(&e) == OD_ERRCLASS_FATAL);
}

TEST(od_fail_clears_the_cause) {
  od_error e = with_state("23514", false);
  e.sqlite_code = 19;
  OD_FAIL(&e, OD_ESINK, "a new error");
  CHECK(e.sqlstate[0] == '\0' && e.sqlite_code == 0);
  CHECK(od_error_classify(&e) == OD_ERRCLASS_FATAL);
  CHECK(strcmp(od_error_class_name(OD_ERRCLASS_ROW), "row") == 0);
}

