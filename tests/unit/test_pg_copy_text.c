/* Unit tests for src/sources/pg/pg_copy_text.c: rows of PostgreSQL's COPY text format. The rows
 * below are what `COPY (SELECT ...) TO STDOUT` prints for the values named in each test. */
#include <stdlib.h>
#include <string.h>

#include "sources/pg/pg_copy_text.h"
#include "test.h"

/* Split a copy of `row` (a heap buffer with a NUL after it, as libpq hands rows out). */
static char *buf;
static od_value vals[8];
static int split(const char *row, int max) {
  free(buf);
  size_t len = strlen(row);
  buf = malloc(len + 1);
  memcpy(buf, row, len + 1);
  return od_pg_copy_split(buf, len, vals, max);
}

static int is_text(int i, const char *want, size_t len) {
  return vals[i].kind == OD_VALUE_TEXT && vals[i].len == len && memcmp(vals[i].data, want, len) == 0 &&
         vals[i].data[len] == '\0';
}
#define CHECK_TEXT(i, lit) CHECK(is_text((i), (lit), sizeof(lit) - 1))
#define CHECK_NULL(i) CHECK_INT(vals[i].kind, OD_VALUE_NULL)

TEST(plain_fields_and_the_newline) {
  CHECK_INT(split("1\tabc\t2026-01-01 00:00:01+00\t0.01\n", 8), 4);
  CHECK_TEXT(0, "1");
  CHECK_TEXT(1, "abc");
  CHECK_TEXT(2, "2026-01-01 00:00:01+00");
  CHECK_TEXT(3, "0.01");
  CHECK_INT(split("x\r\n", 8), 1); /* a CRLF row end */
  CHECK_TEXT(0, "x");
  CHECK_INT(split("no newline", 8), 1);
  CHECK_TEXT(0, "no newline");
}

TEST(null_empty_and_the_text_backslash_n) {
  /* NULL, '', E'\\N' (two characters), 'N', NULL */
  CHECK_INT(split("\\N\t\t\\\\N\tN\t\\N\n", 8), 5);
  CHECK_NULL(0);
  CHECK_TEXT(1, "");
  CHECK_TEXT(2, "\\N");
  CHECK_TEXT(3, "N");
  CHECK_NULL(4);
  /* empty fields at both ends; one empty field; '\N' only as a whole field */
  CHECK_INT(split("\ta\t\n", 8), 3);
  CHECK_TEXT(0, "");
  CHECK_TEXT(1, "a");
  CHECK_TEXT(2, "");
  CHECK_INT(split("\n", 8), 1);
  CHECK_TEXT(0, "");
  CHECK_INT(split("\\Nx\tx\\N\n", 8), 2);
  CHECK_TEXT(0, "Nx");
  CHECK_TEXT(1, "xN");
}

TEST(escapes_copy_to_writes) {
  /* E'tab\there', E'nl\nx', E'cr\r', E'\b\f\v', E'back\\slash' */
  CHECK_INT(split("tab\\there\tnl\\nx\tcr\\r\t\\b\\f\\v\tback\\\\slash\n", 8), 5);
  CHECK_TEXT(0, "tab\there");
  CHECK_TEXT(1, "nl\nx");
  CHECK_TEXT(2, "cr\r");
  CHECK_TEXT(3, "\b\f\v");
  CHECK_TEXT(4, "back\\slash");
  /* bytea '\x00ff' prints as \x00ff: its backslash doubled by COPY */
  CHECK_INT(split("\\\\x00ff\n", 8), 1);
  CHECK_TEXT(0, "\\x00ff");
  /* other control characters and non-ASCII bytes are written as they are */
  CHECK_INT(split("\x01\x1f\x7f \xc3\xa9\xf0\x9f\x8e\x89\n", 8), 1);
  CHECK_TEXT(0, "\x01\x1f\x7f \xc3\xa9\xf0\x9f\x8e\x89");
}

TEST(escapes_copy_from_accepts) {
  /* octal (1-3 digits), hex (1-2 digits), \x without digits, any other escaped character */
  CHECK_INT(split("\\101\\0612\\7\t\\x41\\x4g\\x\t\\q\\.\\\t\n", 8), 3);
  CHECK(is_text(0, "A12\a", 4)); /* \101 = 'A', \061 then '2', \7 */
  CHECK(is_text(1, "A\x04gx", 4)); /* \x41, \x4 then 'g', \x without digits is 'x' */
  CHECK_TEXT(2, "q.\t");           /* \q, \., and an escaped (literal) tab */
}

TEST(field_counts_and_malformed_rows) {
  CHECK_INT(split("a\tb\tc\n", 2), 3); /* more fields than wanted: max + 1 */
  CHECK_INT(split("a\tb\n", 3), 2);
  CHECK_INT(split("abc\\", 3), -1);    /* ends inside an escape */
  CHECK_INT(split("abc\\\n", 3), -1);
  CHECK_INT(split("\n", 0), 0);        /* a relation without columns */
  CHECK_INT(split("x\n", 0), 1);
  free(buf);
  buf = NULL;
}
