/* clock.h — the one clock of odsync: wall time for timestamps people read, the monotonic clock for
 * every interval and timed wait (so a wall-clock step never stretches or cuts a timeout).
 * Owns nothing. Condition variables that are waited on with od_deadline_ms must be made with
 * od_cond_init (their clock is CLOCK_MONOTONIC). */
#ifndef ODSYNC_CLOCK_H
#define ODSYNC_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

int64_t od_now_us(void);  /* wall clock, µs since the Unix epoch */
int64_t od_mono_us(void); /* monotonic clock, µs */
/* The CLOCK_MONOTONIC instant `ms` milliseconds from now, for pthread_cond_timedwait on a
 * condition variable made by od_cond_init. */
struct timespec od_deadline_ms(long ms);
/* For a poller with a monotonic due time: true when due_us has come (poll now); else sleeps until
 * it, at most timeout_ms, and returns false (the caller returns to its loop). */
bool od_sleep_until_due(int64_t due_us, int timeout_ms);
/* pthread_cond_init with CLOCK_MONOTONIC. */
int od_cond_init(pthread_cond_t *cv);

#endif
