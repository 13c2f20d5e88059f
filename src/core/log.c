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
static atomic_int log_format = OD_LOG_TEXT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*line_clearer)(void);
static FILE *log_out;
static _Thread_local const char *thread_pipeline;

void od_log_set_level(int level) { atomic_store(&log_level, level); }
int od_log_level(void) { return atomic_load(&log_level); }
void od_log_set_format(int format) { atomic_store(&log_format, format); }
void od_log_set_thread_pipeline(const char *name) { thread_pipeline = name; }
void od_log_set_line_clearer(void (*clear)(void)) { line_clearer = clear; }
void od_log_set_output(FILE *out) {
  pthread_mutex_lock(&log_lock);
  log_out = out;
  pthread_mutex_unlock(&log_lock);
}

int od_log_parse_level(const char *name) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, names[i]) == 0) return i;
  return -1;
}

int od_log_parse_format(const char *name) {
  if (name && strcmp(name, "text") == 0) return OD_LOG_TEXT;
  if (name && strcmp(name, "json") == 0) return OD_LOG_JSON;
  return -1;
}

/* The pipeline a line is about: the thread's, else "pipeline NAME" at the start of the message. */
static const char *pipeline_of(const char *msg, char *buf, size_t size) {
  if (thread_pipeline) return thread_pipeline;
  if (strncmp(msg, "pipeline ", 9) != 0) return NULL;
  size_t n = strcspn(msg + 9, ": ,;");
  if (n == 0 || n >= size) return NULL;
  memcpy(buf, msg + 9, n);
  buf[n] = '\0';
  return buf;
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
    else if (*c == '\n') fputs("\\n", f);
    else if (*c == '\t') fputs("\\t", f);
    else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
    else fputc(*c, f);
  }
  fputc('"', f);
}

void od_log(int level, const char *fmt, ...) {
  if (level > atomic_load(&log_level)) return;
  static const char *const tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
  static const char *const names[] = {"error", "warn", "info", "debug"};
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
  char pbuf[128];
  const char *pipeline = pipeline_of(msg, pbuf, sizeof pbuf);
  pthread_mutex_lock(&log_lock);
  FILE *f = log_out ? log_out : stderr;
  if (line_clearer && f == stderr) line_clearer();
  if (atomic_load(&log_format) == OD_LOG_JSON) {
    fprintf(f, "{\"ts\":\"%s.%03dZ\",\"level\":\"%s\"", stamp, (int)(tv.tv_usec / 1000), names[level]);
    if (pipeline) {
      fputs(",\"pipeline\":", f);
      json_string(f, pipeline);
    }
    fputs(",\"msg\":", f);
    json_string(f, msg);
    fputs("}\n", f);
  } else {
    fprintf(f, "%s.%03dZ %s %s\n", stamp, (int)(tv.tv_usec / 1000), tags[level], msg);
  }
  fflush(f);
  pthread_mutex_unlock(&log_lock);
}

const char *od_fmt_bytes(int64_t v, char *buf, size_t size) {
  if (v < 0) snprintf(buf, size, "unknown");
  else if (v >= 1LL << 30) snprintf(buf, size, "%.1f GiB", (double)v / (double)(1LL << 30));
  else if (v >= 1LL << 20) snprintf(buf, size, "%.1f MiB", (double)v / (double)(1LL << 20));
  else if (v >= 1LL << 10 && v % 1024 == 0) snprintf(buf, size, "%lld kB", (long long)(v / 1024));
  else if (v >= 1LL << 10) snprintf(buf, size, "%.1f kB", (double)v / 1024.0);
  else snprintf(buf, size, "%lld bytes", (long long)v);
  return buf;
}
