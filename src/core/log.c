/* log.c — see log.h. */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static atomic_int log_level = OD_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*line_clearer)(void);

void od_log_set_level(int level) { atomic_store(&log_level, level); }
int od_log_level(void) { return atomic_load(&log_level); }
void od_log_set_line_clearer(void (*clear)(void)) { line_clearer = clear; }

int od_log_parse_level(const char *name) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, names[i]) == 0) return i;
  return -1;
}

void od_log(int level, const char *fmt, ...) {
  if (level > atomic_load(&log_level)) return;
  static const char *const tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&log_lock);
  if (line_clearer) line_clearer();
  fprintf(stderr, "%s.%03dZ %s %s\n", stamp, (int)(tv.tv_usec / 1000), tags[level], msg);
  pthread_mutex_unlock(&log_lock);
}
