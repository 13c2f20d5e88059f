/* log.h — leveled logging to stderr, one line per event, safe from any thread.
 * Owns: the global level. Never prints secrets: callers pass redacted strings only. */
#ifndef ODSYNC_LOG_H
#define ODSYNC_LOG_H

enum od_log_level { OD_LOG_ERROR = 0, OD_LOG_WARN = 1, OD_LOG_INFO = 2, OD_LOG_DEBUG = 3 };

void od_log_set_level(int level);
int od_log_level(void);
/* Parse "error|warn|info|debug"; -1 when unknown. */
int od_log_parse_level(const char *name);
/* Before writing a log line, clear the terminal's live progress line (set by the CLI). */
void od_log_set_line_clearer(void (*clear)(void));
void od_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define od_error_log(...) od_log(OD_LOG_ERROR, __VA_ARGS__)
#define od_warn(...) od_log(OD_LOG_WARN, __VA_ARGS__)
#define od_info(...) od_log(OD_LOG_INFO, __VA_ARGS__)
#define od_debug(...) od_log(OD_LOG_DEBUG, __VA_ARGS__)

#endif
