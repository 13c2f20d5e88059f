/* Unit tests for src/sources/pg/pg_burst_rule.c: when a stream that falls behind is a burst of
 * transactions (switch to batch decoding) and when it is not.
 * Asserts: no decision before the third read; a burst whose stream delivers slowly (the reads of
 * CI's run of 2026-12-05 16:19, 11 to 17 transactions per three reads) decides at a later read of
 * the same window; one large transaction (nothing delivered) never decides, however far behind;
 * neither does a backlog the stream reduces; a read below the threshold empties the window; a window
 * without a burst starts again after ten reads, from the distance and count of that read. */
#include "sources/pg/pg_burst_rule.h"
#include "test.h"

#define MB (1024LL * 1024)
#define THRESHOLD (4 * MB)

TEST(no_decision_before_the_third_read) {
  pg_burst_window w = {0};
  CHECK(!pg_burst_window_read(&w, 5 * MB, 0, THRESHOLD));
  CHECK(!pg_burst_window_read(&w, 9 * MB, 100, THRESHOLD)); /* growing, many delivered: still read 2 */
  CHECK(pg_burst_window_read(&w, 12 * MB, 200, THRESHOLD));
  CHECK_INT(w.reads, 0); /* decided: a new window */
}

TEST(a_slow_burst_decides_at_a_later_read) {
  /* behind (tenths of MB) and transactions delivered, read by read, as the log of that CI run shows */
  const int tenths[] = {53, 42, 41, 55, 70, 79};
  const unsigned commits[] = {0, 36, 46, 52, 58, 63};
  pg_burst_window w = {0};
  int decided_at = 0;
  for (int i = 0; i < 6 && !decided_at; i++)
    if (pg_burst_window_read(&w, tenths[i] * MB / 10, commits[i], THRESHOLD)) decided_at = i + 1;
  CHECK_INT(decided_at, 4); /* 5.5 MB > 5.3 MB at the first read, 52 delivered since */
}

TEST(few_transactions_per_read_still_add_up) {
  pg_burst_window w = {0};
  int decided_at = 0;
  /* 6 transactions per read, further behind at every read: 20 by the fifth read */
  for (int i = 0; i < 10 && !decided_at; i++)
    if (pg_burst_window_read(&w, (5 + i) * MB, 6u * (unsigned)i, THRESHOLD)) decided_at = i + 1;
  CHECK_INT(decided_at, 5);
}

TEST(one_large_transaction_never_decides) {
  pg_burst_window w = {0};
  for (int i = 0; i < 40; i++) CHECK(!pg_burst_window_read(&w, (10 + 5 * i) * MB, 7, THRESHOLD));
}

TEST(a_shrinking_backlog_never_decides) {
  pg_burst_window w = {0};
  for (int i = 0; i < 40; i++) CHECK(!pg_burst_window_read(&w, (200 - 4 * i) * MB, 100u * (unsigned)i, THRESHOLD));
}

TEST(a_read_below_the_threshold_empties_the_window) {
  pg_burst_window w = {0};
  CHECK(!pg_burst_window_read(&w, 5 * MB, 0, THRESHOLD));
  CHECK(!pg_burst_window_read(&w, 6 * MB, 50, THRESHOLD));
  CHECK(!pg_burst_window_read(&w, 3 * MB, 60, THRESHOLD));
  CHECK_INT(w.reads, 0);
  CHECK(!pg_burst_window_read(&w, 7 * MB, 70, THRESHOLD)); /* read 1 of a new window */
  CHECK(!pg_burst_window_read(&w, 8 * MB, 80, THRESHOLD));
  CHECK(!pg_burst_window_read(&w, 9 * MB, 89, THRESHOLD)); /* 19 since its first read */
  CHECK(pg_burst_window_read(&w, 10 * MB, 90, THRESHOLD));
}

TEST(a_window_starts_again_after_ten_reads) {
  pg_burst_window w = {0};
  /* ten reads of one large transaction, 40 MB behind at the first */
  for (int i = 0; i < 10; i++) CHECK(!pg_burst_window_read(&w, (40 + i) * MB, 3, THRESHOLD));
  CHECK_INT(w.reads, 0);
  /* then the distance falls while transactions flow: measured from the new window's first read
   * (30 MB), not from 40 MB */
  CHECK(!pg_burst_window_read(&w, 30 * MB, 10, THRESHOLD));
  CHECK(!pg_burst_window_read(&w, 31 * MB, 20, THRESHOLD));
  CHECK(pg_burst_window_read(&w, 32 * MB, 30, THRESHOLD));
}
