/* ewma.h — statistical process control for one signal: an exponentially weighted moving mean and
 * variance, and a band of k standard deviations around the mean (3-sigma by default). A value
 * outside the band is an anomaly: the signal left its own baseline.
 *
 * Owns nothing but its numbers (a plain value; no allocation, no locking: one thread feeds it).
 * Never touches: time, I/O, metrics (the caller decides what an anomaly means).
 */
#ifndef ODSYNC_EWMA_H
#define ODSYNC_EWMA_H

#include <stdint.h>

typedef struct od_ewma {
  double alpha;     /* weight of a new value, 0 < alpha <= 1 (0.1: about the last 10-20 samples) */
  double k;         /* band half-width in standard deviations (3) */
  double min_sigma; /* the band is never narrower than this (a flat signal is not infinitely strict) */
  uint32_t warmup;  /* samples seen before anything is judged */
  double mean, var;
  uint64_t n;
} od_ewma;

void od_ewma_init(od_ewma *e, double alpha, double k, double min_sigma, uint32_t warmup);
/* Judge x against the band of the values before it, then learn x (an x outside the band is learnt
 * as the band's edge). Returns +1 above the band, -1 below, 0 inside (or while warming up). */
int od_ewma_update(od_ewma *e, double x);
/* Current standard deviation. */
double od_ewma_sigma(const od_ewma *e);

#endif
