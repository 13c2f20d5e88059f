/* lathist.c — see lathist.h. Owns only the counts of the histogram it is given. */
#include "core/lathist.h"

static int bucket_of(int64_t v) {
  if (v < 0) v = 0;
  if (v < 2048) return (int)(v >> 4);
  int e = 63 - __builtin_clzll((unsigned long long)v); /* 2^e <= v < 2^(e+1), e >= 11 */
  if (e > 30) return OD_LATHIST_BUCKETS - 1;
  return 128 + (e - 11) * 64 + (int)((v >> (e - 6)) & 63);
}

/* The middle of bucket i. */
static int64_t middle_of(int i) {
  if (i < 128) return (int64_t)i * 16 + 8;
  int e = 11 + (i - 128) / 64, sub = (i - 128) % 64;
  int64_t width = (int64_t)1 << (e - 6);
  return (int64_t)(64 + sub) * width + width / 2;
}

void od_lathist_add(od_lathist *h, int64_t us) {
  h->b[bucket_of(us)]++;
  h->n++;
  if (us > h->max) h->max = us;
}

int64_t od_lathist_quantile(const od_lathist *h, double q) {
  if (!h->n) return 0;
  if (q >= 1.0) return h->max;
  uint64_t rank = (uint64_t)(q * (double)h->n);
  if ((double)rank < q * (double)h->n) rank++; /* ceil: the smallest value with at least q below it */
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < OD_LATHIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= rank) {
      int64_t m = middle_of(i);
      return m > h->max ? h->max : m;
    }
  }
  return h->max;
}
