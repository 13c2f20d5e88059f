/* test_breaker.c — the sink circuit breaker's state machine (core/breaker.h) on a fake clock, and
 * the retry backoff's bounds with a seeded jitter (core/backoff.h). */
#include "core/backoff.h"
#include "core/breaker.h"
#include "test.h"

#define MS 1000LL

static od_breaker_config cfg(int failures, double rate, int min_attempts) {
  return (od_breaker_config){.failures = failures, .error_rate = rate, .min_attempts = min_attempts,
                             .window_ms = 10000, .cooldown_ms = 5000};
}

TEST(opens_after_n_consecutive_failures) {
  od_breaker b;
  od_breaker_config c = cfg(3, 0, 10);
  od_breaker_init(&b, &c);
  _Atomic int st = -1;
  _Atomic uint64_t tr = 0;
  b.state_out = &st;
  b.transitions_out = &tr;
  int64_t t = 1000 * MS;
  od_breaker_failure(&b, t);
  od_breaker_failure(&b, t);
  od_breaker_success(&b, t); /* breaks the run */
  od_breaker_failure(&b, t);
  od_breaker_failure(&b, t);
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_CLOSED);
  CHECK(od_breaker_allow(&b, t));
  od_breaker_failure(&b, t + 1 * MS);
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_OPEN);
  CHECK_INT(st, OD_BREAKER_OPEN);
  CHECK_INT((int)tr, 1);
  CHECK(!od_breaker_allow(&b, t + 2 * MS));
  CHECK_INT(od_breaker_wait_ms(&b, t + 2 * MS), 4999); /* opened at t + 1 ms, 5 s cool-down */
  od_breaker_destroy(&b);
}

TEST(half_open_probe_closes_or_reopens) {
  od_breaker b;
  od_breaker_config c = cfg(1, 0, 10);
  od_breaker_init(&b, &c);
  int64_t t = 50 * MS;
  od_breaker_failure(&b, t);
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_OPEN);
  CHECK(!od_breaker_allow(&b, t + 4999 * MS));
  CHECK(od_breaker_allow(&b, t + 5000 * MS)); /* cool-down over: the probe */
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_HALF_OPEN);
  CHECK_INT(od_breaker_wait_ms(&b, t + 5000 * MS), 0);
  od_breaker_failure(&b, t + 5100 * MS); /* the probe failed: open again, a new cool-down */
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_OPEN);
  CHECK(!od_breaker_allow(&b, t + 9000 * MS));
  CHECK_INT(od_breaker_wait_ms(&b, t + 9000 * MS), 1100);
  CHECK(od_breaker_allow(&b, t + 10100 * MS));
  od_breaker_success(&b, t + 10200 * MS); /* the probe went through */
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_CLOSED);
  CHECK_INT((int)b.transitions, 5); /* open, half, open, half, closed */
  od_breaker_destroy(&b);
}

TEST(error_rate_in_the_window_opens_it) {
  od_breaker b;
  od_breaker_config c = cfg(100, 0.5, 10);
  od_breaker_init(&b, &c);
  int64_t t = 0;
  /* alternate: never 100 in a row, but half of the attempts fail */
  for (int i = 0; i < 4; i++) {
    od_breaker_success(&b, t);
    od_breaker_failure(&b, t);
  }
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_CLOSED); /* 8 attempts: fewer than min_attempts */
  od_breaker_success(&b, t);
  od_breaker_failure(&b, t);
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_OPEN); /* 10 attempts, 5 failed */
  od_breaker_destroy(&b);
  /* a new window forgets the old attempts */
  od_breaker_init(&b, &c);
  for (int i = 0; i < 9; i++) od_breaker_failure(&b, t);
  od_breaker_success(&b, t);
  od_breaker_failure(&b, t + 10001 * MS); /* the window rolled over: 1 attempt */
  CHECK_INT(od_breaker_state(&b), OD_BREAKER_CLOSED);
  od_breaker_destroy(&b);
}

TEST(backoff_bounds_with_seeded_jitter) {
  od_backoff b;
  od_backoff_init(&b, 200, 30000, 12345);
  long expect[] = {200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000};
  long sum_late = 0;
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    CHECK_INT(od_backoff_ceiling(&b), expect[i]);
    long w = od_backoff_next(&b);
    CHECK(w >= 50 && w <= expect[i]);
    if (i >= 8) sum_late += w;
  }
  CHECK(sum_late > 0);
  /* full jitter: over many draws at the cap, waits spread over [0, cap] */
  long lo = 30000, hi = 0;
  for (int i = 0; i < 1000; i++) {
    long w = od_backoff_next(&b);
    CHECK(w >= 50 && w <= 30000);
    if (w < lo) lo = w;
    if (w > hi) hi = w;
  }
  CHECK(lo < 3000 && hi > 27000);
  /* the same seed, the same waits */
  od_backoff x, y;
  od_backoff_init(&x, 200, 5000, 7);
  od_backoff_init(&y, 200, 5000, 7);
  for (int i = 0; i < 20; i++) CHECK_INT(od_backoff_next(&x), od_backoff_next(&y));
  od_backoff_reset(&x);
  CHECK_INT(od_backoff_ceiling(&x), 200);
  /* a cap below the base: the cap */
  od_backoff_init(&x, 200, 100, 1);
  CHECK(od_backoff_next(&x) <= 200);
}
