/* lathist.h — a latency histogram with bounded relative error, for percentiles of one signal
 * (microseconds): 16 µs buckets below 2.048 ms, then 64 buckets per power of two (under 1.6 %
 * apart) up to 2^31 µs; larger values land in the last bucket. 5.6 KiB, no allocation.
 *
 * Owns nothing but its counts (a plain value; no locking: one thread feeds it, others may read it
 * only after that thread is done). Never touches: time, I/O, metrics, logging.
 */
#ifndef ODSYNC_LATHIST_H
#define ODSYNC_LATHIST_H

#include <stdint.h>

#define OD_LATHIST_BUCKETS (128 + 20 * 64)

typedef struct od_lathist {
  uint32_t b[OD_LATHIST_BUCKETS];
  uint64_t n;
  int64_t max; /* the largest value added, exactly */
} od_lathist;

/* Count one value (negative values count as 0). */
void od_lathist_add(od_lathist *h, int64_t us);
/* The value at quantile q (0 < q <= 1): the middle of its bucket (the exact max for q = 1);
 * 0 when the histogram is empty. */
int64_t od_lathist_quantile(const od_lathist *h, double q);

#endif
