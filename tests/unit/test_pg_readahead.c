/* Unit tests for src/sources/pg/pg_readahead.c: catch-up's read-ahead buffer and the sizing of the
 * next batch call.
 * Asserts: rows come back in order and byte for byte (empty rows too); a row that would pass the
 * limit is refused and leaves the buffer as it was, the allocation never exceeds the limit; the
 * end LSN of the last Commit message is kept (a short 'C' row or other messages do not change it)
 * and reset clears it; so is a Stream Commit's end LSN, and the last row's type byte ('E': the
 * call ended inside a streamed transaction); the next call's limit doubles while the WAL decoded again exceeds twice the
 * last span, stops at `most`, holds in between, returns to the configured value once restart_lsn
 * follows, and never goes below it. */
#include <string.h>

#include "sources/pg/pg_readahead.h"
#include "test.h"

/* A pgoutput Commit message: 'C', flags, commit LSN, end LSN, timestamp (26 bytes). */
static void commit_msg(char out[26], od_lsn end) {
  memset(out, 0, 26);
  out[0] = 'C';
  for (int i = 0; i < 8; i++) out[10 + i] = (char)(end >> (56 - 8 * i));
}

TEST(rows_come_back_in_order) {
  pg_readahead b = {0};
  const char *rows[] = {"Bxxxxxxxxxxxxxxxxxxxx", "", "I\0\1\2binary", "U"};
  size_t lens[] = {21, 0, 11, 1};
  for (int i = 0; i < 4; i++) CHECK(pg_readahead_push(&b, rows[i], lens[i], 1 << 20));
  size_t off = 0, n;
  const char *row;
  for (int i = 0; i < 4; i++) {
    CHECK(pg_readahead_next(&b, &off, &row, &n));
    CHECK_INT((long)n, (long)lens[i]);
    CHECK(memcmp(row, rows[i], n) == 0);
  }
  CHECK(!pg_readahead_next(&b, &off, &row, &n));
  CHECK_INT((long)off, (long)b.len);
  pg_readahead_free(&b);
  CHECK(b.data == NULL && b.len == 0);
}

TEST(a_row_past_the_limit_is_refused) {
  pg_readahead b = {0};
  char row[100];
  memset(row, 'I', sizeof row);
  size_t limit = 3 * (4 + sizeof row) + 50;
  for (int i = 0; i < 3; i++) CHECK(pg_readahead_push(&b, row, sizeof row, limit));
  size_t len = b.len;
  CHECK(!pg_readahead_push(&b, row, sizeof row, limit));
  CHECK_INT((long)b.len, (long)len);
  CHECK(b.cap <= limit);
  CHECK(pg_readahead_push(&b, row, 46, limit)); /* exactly up to the limit */
  CHECK_INT((long)b.len, (long)limit);
  pg_readahead_reset(&b);
  CHECK_INT((long)b.len, 0);
  CHECK(pg_readahead_push(&b, row, sizeof row, limit)); /* memory kept and reused */
  pg_readahead_free(&b);
}

TEST(last_commit_end_is_kept) {
  pg_readahead b = {0};
  char c1[26], c2[26];
  commit_msg(c1, 0x1A2B3C4DULL);
  commit_msg(c2, ((od_lsn)0x5 << 32) | 0xFFFFFF01ULL);
  CHECK_INT((long)b.last_end, 0);
  CHECK(pg_readahead_push(&b, "Bxxxxxxxxxxxxxxxxxxxx", 21, 1 << 20));
  CHECK(pg_readahead_push(&b, c1, 26, 1 << 20));
  CHECK(b.last_end == 0x1A2B3C4DULL);
  CHECK(pg_readahead_push(&b, "C-short", 7, 1 << 20)); /* not a Commit message */
  CHECK(pg_readahead_push(&b, "Ixxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 30, 1 << 20));
  CHECK(b.last_end == 0x1A2B3C4DULL);
  CHECK(pg_readahead_push(&b, c2, 26, 1 << 20));
  CHECK(b.last_end == (((od_lsn)0x5 << 32) | 0xFFFFFF01ULL));
  pg_readahead_reset(&b);
  CHECK(b.last_end == 0);
  pg_readahead_free(&b);
}

/* A Stream Commit (protocol 2): 'c', xid, flags, commit LSN, end LSN, timestamp (30 bytes). */
static void stream_commit_msg(char out[30], od_lsn end) {
  memset(out, 0, 30);
  out[0] = 'c';
  out[4] = 7; /* xid */
  for (int i = 0; i < 8; i++) out[14 + i] = (char)(end >> (56 - 8 * i));
}

TEST(stream_commit_end_and_last_type) {
  pg_readahead b = {0};
  char c[26], sc[30];
  commit_msg(c, 0x100);
  stream_commit_msg(sc, ((od_lsn)0x2 << 32) | 0x300ULL);
  CHECK_INT(b.last_type, 0);
  CHECK(pg_readahead_push(&b, c, 26, 1 << 20));
  CHECK(pg_readahead_push(&b, "S\0\0\0\7\1", 6, 1 << 20)); /* Stream Start of xid 7, first segment */
  CHECK_INT(b.last_type, 'S');
  CHECK(pg_readahead_push(&b, "E", 1, 1 << 20)); /* Stream Stop: the call ends inside xid 7 */
  CHECK_INT(b.last_type, 'E');
  CHECK(b.last_end == 0x100);
  CHECK(pg_readahead_push(&b, "c-short", 7, 1 << 20)); /* not a Stream Commit */
  CHECK(b.last_end == 0x100);
  CHECK(pg_readahead_push(&b, sc, 30, 1 << 20));
  CHECK(b.last_end == (((od_lsn)0x2 << 32) | 0x300ULL));
  CHECK_INT(b.last_type, 'c');
  CHECK(pg_readahead_push(&b, "", 0, 1 << 20));
  CHECK_INT(b.last_type, 0);
  pg_readahead_reset(&b);
  CHECK(b.last_end == 0 && b.last_type == 0);
  pg_readahead_free(&b);
}

TEST(next_limit_doubles_while_restart_lags) {
  /* a burst: restart_lsn stays at the start, so each call decodes everything before it again; a
   * call covers 200 bytes of WAL per change (as the bench's rows do) */
  long limit = 100000, seen[7];
  int64_t end = 0;
  for (int i = 0; i < 7; i++) {
    int64_t span = (int64_t)limit * 200;
    end += span;
    limit = pg_readahead_next_limit(limit, 100000, 600000, span, end);
    seen[i] = limit;
  }
  CHECK_INT(seen[0], 100000); /* decoded again == span: not lagging */
  CHECK_INT(seen[1], 100000); /* twice the span: hold */
  CHECK_INT(seen[2], 200000); /* three times: double */
  CHECK_INT(seen[3], 400000);
  CHECK_INT(seen[4], 600000); /* capped by `most` */
  CHECK_INT(seen[5], 600000);
  CHECK_INT(seen[6], 600000);
}

TEST(next_limit_holds_then_returns) {
  CHECK_INT(pg_readahead_next_limit(400000, 100000, 10000000, 100, 150), 400000); /* between: hold */
  CHECK_INT(pg_readahead_next_limit(400000, 100000, 10000000, 100, 100), 100000); /* restart follows */
  CHECK_INT(pg_readahead_next_limit(400000, 100000, 10000000, 100, 0), 100000);
  CHECK_INT(pg_readahead_next_limit(100000, 100000, 10000000, 0, 1 << 30), 100000); /* no span: no growth */
  CHECK_INT(pg_readahead_next_limit(100000, 100000, 5000, 10, 1000), 100000);   /* most below configured */
  CHECK_INT(pg_readahead_next_limit(50, 100000, 10000000, 100, 150), 100000);   /* never below configured */
}
