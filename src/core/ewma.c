/* ewma.c — see ewma.h. Mean and variance follow the incremental EWMA recurrences
 * (delta = x - mean; mean += alpha * delta; var = (1 - alpha) * (var + alpha * delta^2)). */
#include "core/ewma.h"

#include <math.h>

void od_ewma_init(od_ewma *e, double alpha, double k, double min_sigma, uint32_t warmup) {
  *e = (od_ewma){.alpha = alpha > 0 && alpha <= 1 ? alpha : 0.1, .k = k > 0 ? k : 3, .min_sigma = min_sigma,
                 .warmup = warmup};
}

double od_ewma_sigma(const od_ewma *e) { return sqrt(e->var > 0 ? e->var : 0); }

int od_ewma_update(od_ewma *e, double x) {
  if (!isfinite(x)) return 0;
  int verdict = 0;
  if (e->n == 0) {
    e->mean = x;
    e->var = 0;
  } else {
    double sigma = od_ewma_sigma(e);
    if (sigma < e->min_sigma) sigma = e->min_sigma;
    if (e->n >= e->warmup) {
      /* An outlier is learnt clamped to the band's edge: one spike cannot blow the band open (so a
       * lasting shift stays flagged for a while), yet a lasting shift still becomes the baseline. */
      if (x > e->mean + e->k * sigma) {
        verdict = 1;
        x = e->mean + e->k * sigma;
      } else if (x < e->mean - e->k * sigma) {
        verdict = -1;
        x = e->mean - e->k * sigma;
      }
    }
    double delta = x - e->mean;
    e->mean += e->alpha * delta;
    e->var = (1 - e->alpha) * (e->var + e->alpha * delta * delta);
  }
  e->n++;
  return verdict;
}
