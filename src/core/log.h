/* log.h — leveled logging to stderr, one line per event, safe from any thread.
 * Owns: the global level and format, the byte counts messages print (od_fmt_bytes), and each
 * thread's pipeline name (set by the pipeline's own threads, so every line can name its pipeline). Never prints secrets: callers pass redacted
 * strings only. Formats: text ("2026-01-02T03:04:05.678Z INFO  message") or json (one object per
 * line: {"ts":...,"level":...,"pipeline":...,"msg":...}; "pipeline" is the thread's pipeline, or
 * the NAME of a message that starts "pipeline NAME", or absent). */
#ifndef ODSYNC_LOG_H
#define ODSYNC_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum od_log_level { OD_LOG_ERROR = 0, OD_LOG_WARN = 1, OD_LOG_INFO = 2, OD_LOG_DEBUG = 3 };
enum od_log_format { OD_LOG_TEXT = 0, OD_LOG_JSON = 1 };

void od_log_set_level(int level);
int od_log_level(void);
/* Parse "error|warn|info|debug"; -1 when unknown. */
int od_log_parse_level(const char *name);
void od_log_set_format(int format);
/* Parse "text|json"; -1 when unknown. */
int od_log_parse_format(const char *name);
/* The pipeline the calling thread works for (NULL: none). The string is borrowed: it must outlive
 * the thread's logging (config strings do). */
void od_log_set_thread_pipeline(const char *name);
/* Where lines go (default stderr; tests capture them). */
void od_log_set_output(FILE *out);
/* Before writing a log line, clear the terminal's live progress line (set by the CLI). */
void od_log_set_line_clearer(void (*clear)(void));
void od_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A byte count for a message into buf and returns buf: "1.5 GiB", "12.0 MiB", "64 kB" (whole
 * kB of 1024 bytes, PostgreSQL's unit), "1.5 kB", "900 bytes", "unknown" (v < 0). */
const char *od_fmt_bytes(int64_t v, char *buf, size_t size);

#define od_error_log(...) od_log(OD_LOG_ERROR, __VA_ARGS__)
#define od_warn(...) od_log(OD_LOG_WARN, __VA_ARGS__)
#define od_info(...) od_log(OD_LOG_INFO, __VA_ARGS__)
#define od_debug(...) od_log(OD_LOG_DEBUG, __VA_ARGS__)

#endif
