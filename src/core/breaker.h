/* core/breaker.h — a circuit breaker per sink.
 *
 * closed: attempts go through; `failures` consecutive failures, or an error rate of at least
 *   `error_rate` over the last `window_ms` once that window holds `min_attempts` attempts, open it.
 * open: no attempt until `cooldown_ms` have passed; then the next attempt is the probe (half-open).
 * half-open: the probe's success closes it (counts reset); its failure opens it again for another
 *   cool-down.
 * What an attempt is, is the caller's: the pipeline counts a sink's committed batches as successes
 * and a session that this sink's failure ended as a failure, and waits out an open breaker before
 * the next session (the pipeline's other sinks wait with it: they share the source stream).
 * Time is passed in (monotonic µs), so tests drive it with a fake clock. Thread-safe (a mutex).
 * Owns: its counters. Never touches: sinks, logging, sleeping.
 */
#ifndef ODSYNC_CORE_BREAKER_H
#define ODSYNC_CORE_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "odsync/config.h"

enum od_breaker_state { OD_BREAKER_CLOSED = 0, OD_BREAKER_OPEN = 1, OD_BREAKER_HALF_OPEN = 2 };

typedef struct od_breaker {
  od_breaker_config cfg;
  pthread_mutex_t lock;
  int state;
  int consecutive;         /* failures in a row */
  int64_t window_start;    /* µs; the error-rate window: [window_start, window_start + window) */
  uint32_t win_ok, win_fail;
  int64_t opened_at;       /* µs, when it last opened */
  uint64_t transitions;
  _Atomic int *state_out;  /* mirrors (e.g. od_sink_stats), may be NULL */
  _Atomic uint64_t *transitions_out;
} od_breaker;

/* Defaults of od_breaker_config (docs/CONFIG.md). */
od_breaker_config od_breaker_defaults(void);
void od_breaker_init(od_breaker *b, const od_breaker_config *cfg);
void od_breaker_destroy(od_breaker *b);
void od_breaker_success(od_breaker *b, int64_t now_us);
void od_breaker_failure(od_breaker *b, int64_t now_us);
/* Whether an attempt may start now (an open breaker past its cool-down turns half-open: true). */
bool od_breaker_allow(od_breaker *b, int64_t now_us);
/* ms until an open breaker lets the probe through; 0 when it lets attempts through now. */
long od_breaker_wait_ms(od_breaker *b, int64_t now_us);
int od_breaker_state(od_breaker *b);
const char *od_breaker_state_name(int state);

#endif
