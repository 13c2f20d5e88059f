/* backoff.c — see core/backoff.h. */
#include "core/backoff.h"

void od_backoff_init(od_backoff *b, long base_ms, long cap_ms, uint64_t seed) {
  b->base_ms = base_ms > 0 ? base_ms : 200;
  b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
  b->min_ms = b->base_ms < 50 ? b->base_ms : 50;
  b->attempt = 0;
  b->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
}

long od_backoff_ceiling(const od_backoff *b) {
  long c = b->base_ms;
  for (int i = 0; i < b->attempt && c < b->cap_ms; i++) c = c > b->cap_ms / 2 ? b->cap_ms : c * 2;
  return c < b->cap_ms ? c : b->cap_ms;
}

static uint64_t next_rand(od_backoff *b) {
  uint64_t x = b->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  b->rng = x;
  return x;
}

long od_backoff_next(od_backoff *b) {
  long ceiling = od_backoff_ceiling(b);
  long wait = (long)(next_rand(b) % (uint64_t)(ceiling + 1));
  if (wait < b->min_ms) wait = b->min_ms;
  if (b->attempt < 62) b->attempt++;
  return wait;
}

void od_backoff_reset(od_backoff *b) { b->attempt = 0; }
