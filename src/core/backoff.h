/* core/backoff.h — exponential backoff with full jitter between retries of a pipeline session.
 *
 * The n-th retry (n from 0) waits a uniformly random time in [0, min(cap, base * 2^n)] ("full
 * jitter": many pipelines or processes retrying against one server spread out instead of
 * hammering it in step), and at least min_ms so a retry never spins. The random source is a
 * seeded xorshift, so tests are deterministic.
 * Owns: its counters. Never touches: clocks, sleeping, logging.
 */
#ifndef ODSYNC_CORE_BACKOFF_H
#define ODSYNC_CORE_BACKOFF_H

#include <stdint.h>

typedef struct od_backoff {
  long base_ms; /* the first ceiling (default 200) */
  long cap_ms;  /* the longest wait (the pipeline's reconnect_max_ms) */
  long min_ms;  /* the shortest wait (default 50) */
  int attempt;  /* retries since the last reset */
  uint64_t rng; /* xorshift64 state, never 0 */
} od_backoff;

void od_backoff_init(od_backoff *b, long base_ms, long cap_ms, uint64_t seed);
/* The ceiling of the next wait (without jitter): min(cap, base * 2^attempt). */
long od_backoff_ceiling(const od_backoff *b);
/* The next wait in ms, then attempt++. */
long od_backoff_next(od_backoff *b);
/* After a healthy stretch: start from base again. */
void od_backoff_reset(od_backoff *b);

#endif
