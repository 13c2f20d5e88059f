/* clockshift.c — an LD_PRELOAD library for tests: the wall clock of the process (and its children)
 * reads OD_CLOCK_SHIFT_US microseconds off (negative: behind). The multi-master clock-skew test
 * (tests/integration/mesh_hlc_skew.sh) starts one PostgreSQL node under it, so that node's commit
 * timestamps really come from a skewed clock. Only CLOCK_REALTIME-like clocks, gettimeofday and
 * time move; monotonic clocks are left alone. Built by the test script itself (never installed, no
 * sanitizer: it is loaded into PostgreSQL's processes).
 * Owns nothing; never touches anything but the values it returns.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift_us(void) {
  static long long v;
  static int done;
  if (!done) {
    const char *e = getenv("OD_CLOCK_SHIFT_US");
    v = e ? atoll(e) : 0;
    done = 1;
  }
  return v;
}

static void shift_ts(struct timespec *ts) {
  long long ns = (long long)ts->tv_nsec + (shift_us() % 1000000) * 1000;
  long long s = (long long)ts->tv_sec + shift_us() / 1000000;
  while (ns < 0) { ns += 1000000000; s--; }
  while (ns >= 1000000000) { ns -= 1000000000; s++; }
  ts->tv_sec = (time_t)s;
  ts->tv_nsec = (long)ns;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  static int (*real)(clockid_t, struct timespec *);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "clock_gettime");
  int rc = real(id, ts);
  if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift_ts(ts);
  return rc;
}

int gettimeofday(struct timeval *__restrict tv, void *__restrict tz) {
  static int (*real)(struct timeval *__restrict, void *__restrict);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "gettimeofday");
  int rc = real(tv, tz);
  if (rc == 0) {
    struct timespec t = {tv->tv_sec, tv->tv_usec * 1000};
    shift_ts(&t);
    tv->tv_sec = t.tv_sec;
    tv->tv_usec = t.tv_nsec / 1000;
  }
  return rc;
}

time_t time(time_t *out) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  if (out) *out = t.tv_sec;
  return t.tv_sec;
}
