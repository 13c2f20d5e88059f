/* test_ewma.c — EWMA 3-sigma bands (core/ewma.h) on synthetic series: steady noise stays inside
 * (bar rare single samples),
 * a step up or down leaves the band and the band then adapts, nothing is judged while warming
 * up, and a flat series is judged against the minimum sigma, not against zero. */
#include <math.h>

#include "core/ewma.h"
#include "test.h"

/* Deterministic noise in [-1, 1). */
static double noise(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return ((*s >> 8) / (double)(1u << 24)) * 2 - 1;
}

TEST(steady_noise_stays_inside_the_band) {
  od_ewma e;
  od_ewma_init(&e, 0.1, 3, 0.01, 20);
  uint32_t s = 42;
  int out = 0;
  for (int i = 0; i < 2000; i++) out += od_ewma_update(&e, 1000 + 10 * noise(&s)) != 0;
  CHECK(fabs(e.mean - 1000) < 5);
  CHECK(od_ewma_sigma(&e) > 3 && od_ewma_sigma(&e) < 10);
  /* uniform noise of +-10 stays within 3 sigma (sigma ~ 5.8) but the EWMA's estimate of sigma
   * wobbles: at most 1 sample in 500 is flagged (the alerts module waits for 3 in a row) */
  CHECK(out <= 4);
}

TEST(step_change_is_flagged_then_absorbed) {
  od_ewma e;
  od_ewma_init(&e, 0.1, 3, 0.01, 20);
  uint32_t s = 7;
  for (int i = 0; i < 200; i++) CHECK_INT(od_ewma_update(&e, 1000 + 10 * noise(&s)), 0);
  CHECK_INT(od_ewma_update(&e, 1500), 1); /* throughput jumps */
  int flagged = 1, i;
  for (i = 0; i < 200; i++) {
    if (od_ewma_update(&e, 1500 + 10 * noise(&s)) == 0) break;
    flagged++;
  }
  CHECK(flagged >= 1 && i < 200); /* flagged for a while, then the new level is the baseline */
  for (int j = 0; j < 300; j++) od_ewma_update(&e, 1500 + 10 * noise(&s));
  CHECK(fabs(e.mean - 1500) < 5);
  CHECK_INT(od_ewma_update(&e, 200), -1); /* and a drop is flagged below */
}

TEST(warmup_judges_nothing) {
  od_ewma e;
  od_ewma_init(&e, 0.2, 3, 0.01, 10);
  CHECK_INT(od_ewma_update(&e, 1), 0);
  for (int i = 0; i < 8; i++) CHECK_INT(od_ewma_update(&e, i % 2 ? 1000 : 1), 0);
  CHECK_INT((long long)e.n, 9);
}

TEST(flat_series_uses_the_minimum_sigma) {
  od_ewma e;
  od_ewma_init(&e, 0.1, 3, 0.5, 5);
  for (int i = 0; i < 50; i++) CHECK_INT(od_ewma_update(&e, 0), 0);
  CHECK_INT(od_ewma_update(&e, 1.4), 0); /* inside 3 * 0.5 */
  CHECK_INT(od_ewma_update(&e, 5), 1);
  CHECK_INT(od_ewma_update(&e, NAN), 0); /* not a number: ignored */
  CHECK(isfinite(e.mean));
}

TEST(one_spike_does_not_blow_the_band_open) {
  od_ewma e;
  od_ewma_init(&e, 0.1, 3, 0.01, 20);
  uint32_t s = 3;
  for (int i = 0; i < 200; i++) od_ewma_update(&e, 100 + noise(&s));
  double sigma = od_ewma_sigma(&e);
  CHECK_INT(od_ewma_update(&e, 10000), 1);
  CHECK(od_ewma_sigma(&e) < 3 * sigma); /* learnt as the band's edge, not as 10000 */
  CHECK(fabs(e.mean - 100) < 2);
  CHECK_INT(od_ewma_update(&e, 10000), 1); /* a second spike is still an anomaly */
}
