/* test_lathist.c — the latency histogram (core/lathist.h): quantiles of known series are within
 * the bucket's relative error (16 µs below 2.048 ms, under 1.6 % above), the exact max for q = 1,
 * 0 for an empty histogram, negative values count as 0, values past the last octave land in the
 * last bucket without overflow, and bucket edges (2047/2048 µs, powers of two) map monotonically. */
#include <stdbool.h>
#include <stdlib.h>

#include "core/lathist.h"
#include "test.h"

static bool near(int64_t got, int64_t want) {
  int64_t tol = want < 2048 ? 16 : want / 60; /* one bucket: 16 µs, or 1/64 of the octave */
  return llabs(got - want) <= tol;
}

TEST(empty_is_zero) {
  static od_lathist h;
  CHECK_INT(od_lathist_quantile(&h, 0.5), 0);
  CHECK_INT(od_lathist_quantile(&h, 1.0), 0);
}

TEST(uniform_series_quantiles) {
  static od_lathist h;
  for (int64_t v = 1; v <= 100000; v++) od_lathist_add(&h, v); /* 1 µs .. 100 ms */
  CHECK_INT((int64_t)h.n, 100000);
  CHECK(near(od_lathist_quantile(&h, 0.50), 50000));
  CHECK(near(od_lathist_quantile(&h, 0.95), 95000));
  CHECK(near(od_lathist_quantile(&h, 0.99), 99000));
  CHECK(near(od_lathist_quantile(&h, 0.01), 1000));
  CHECK_INT(od_lathist_quantile(&h, 1.0), 100000);
}

TEST(small_values_and_edges) {
  static od_lathist h;
  od_lathist_add(&h, -5); /* a clock step: counted as 0 */
  od_lathist_add(&h, 0);
  od_lathist_add(&h, 2047);
  od_lathist_add(&h, 2048);
  CHECK(od_lathist_quantile(&h, 0.5) <= 16);
  CHECK(near(od_lathist_quantile(&h, 0.75), 2047));
  CHECK_INT(od_lathist_quantile(&h, 1.0), 2048);
  /* a quantile never exceeds the max */
  static od_lathist one;
  od_lathist_add(&one, 3000);
  CHECK(od_lathist_quantile(&one, 0.5) <= 3000 && near(od_lathist_quantile(&one, 0.5), 3000));
}

TEST(monotonic_over_octaves) {
  int64_t last = -1;
  for (int e = 4; e < 32; e++) {
    static od_lathist h;
    h = (od_lathist){0};
    od_lathist_add(&h, (int64_t)1 << e);
    od_lathist_add(&h, ((int64_t)1 << e) + 1);
    int64_t q = od_lathist_quantile(&h, 0.5);
    CHECK(q > last);
    if (e < 31) CHECK(near(q, (int64_t)1 << e));
    last = q;
  }
}

TEST(huge_values_stay_in_range) {
  static od_lathist h;
  od_lathist_add(&h, INT64_MAX / 2);
  od_lathist_add(&h, (int64_t)1 << 40);
  CHECK_INT((int64_t)h.n, 2);
  CHECK_INT(h.b[OD_LATHIST_BUCKETS - 1], 2);
  CHECK_INT(od_lathist_quantile(&h, 1.0), INT64_MAX / 2);
}
