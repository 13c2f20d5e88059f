/* Unit tests for src/sources/pg/pg_copy_binary.c: messages of PostgreSQL's COPY binary format, as
 * `COPY (SELECT ...) TO STDOUT (FORMAT binary)` sends them (header with the first row, a row per
 * message, the trailer alone). */
#include <string.h>

#include "sources/pg/pg_copy_binary.h"
#include "test.h"

static unsigned char msg[256];
static size_t mlen;
static od_value vals[8];

static void put(const void *p, size_t n) {
  memcpy(msg + mlen, p, n);
  mlen += n;
}
static void put16(int v) {
  unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
  put(b, 2);
}
static void put32(long v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  put(b, 4);
}
static void header(long flags, long ext) {
  put("PGCOPY\n\377\r\n\0", 11);
  put32(flags);
  put32(ext);
  for (long i = 0; i < ext; i++) put("e", 1);
}
static int split(bool *hdr, int max) { return od_pg_copy_split_binary((const char *)msg, mlen, hdr, vals, max); }

TEST(header_with_the_first_row_then_rows_then_the_trailer) {
  bool hdr = true;
  mlen = 0;
  header(0, 0);
  put16(3);
  put32(8);
  put("\0\0\0\0\0\0\0\x2a", 8); /* int8 42 */
  put32(-1);                    /* NULL */
  put32(0);                     /* '' */
  CHECK_INT(split(&hdr, 8), 3);
  CHECK(!hdr);
  CHECK_INT(vals[0].kind, OD_VALUE_BINARY);
  CHECK_INT(vals[0].len, 8);
  CHECK(memcmp(vals[0].data, "\0\0\0\0\0\0\0\x2a", 8) == 0);
  CHECK(vals[0].data == (const char *)msg + 19 + 2 + 4); /* points into the message */
  CHECK_INT(vals[1].kind, OD_VALUE_NULL);
  CHECK_INT(vals[2].kind, OD_VALUE_BINARY);
  CHECK_INT(vals[2].len, 0);
  mlen = 0;
  put16(1);
  put32(3);
  put("a\tb", 3);
  CHECK_INT(split(&hdr, 8), 1);
  CHECK(vals[0].len == 3 && memcmp(vals[0].data, "a\tb", 3) == 0);
  mlen = 0;
  put16(-1);
  CHECK_INT(split(&hdr, 8), 0);
}

TEST(empty_result_header_extension_and_trailer_together) {
  bool hdr = true;
  mlen = 0;
  header(0, 5); /* a header extension is skipped */
  put16(-1);
  CHECK_INT(split(&hdr, 8), 0);
  CHECK(!hdr);
}

TEST(malformed_messages) {
  bool hdr = true;
  mlen = 0;
  put("PGCOPY\n\377\r\n\1", 11); /* bad signature */
  put32(0);
  put32(0);
  put16(0);
  CHECK_INT(split(&hdr, 8), -1);
  hdr = true;
  mlen = 0;
  header(1L << 16, 0); /* OIDs included */
  put16(0);
  CHECK_INT(split(&hdr, 8), -1);
  hdr = false;
  mlen = 0;
  put16(1);
  put32(10); /* longer than what follows */
  put("abc", 3);
  CHECK_INT(split(&hdr, 8), -1);
  mlen = 0;
  put16(1);
  put32(1);
  put("ab", 2); /* a byte left over */
  CHECK_INT(split(&hdr, 8), -1);
  mlen = 0;
  put16(-1);
  put("x", 1); /* after the trailer */
  CHECK_INT(split(&hdr, 8), -1);
  mlen = 0;
  put16(5);
  CHECK_INT(split(&hdr, 2), 3); /* more fields than wanted: max + 1 */
  mlen = 1;
  CHECK_INT(split(&hdr, 8), -1); /* not even a field count */
}
