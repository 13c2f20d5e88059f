/* error.c — the status table and od_error helpers. Owns nothing but message formatting. */
#include "odsync/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *od_status_name(int code) {
  switch (code) {
#define OD_STATUS_NAME(name, value, msg) case value: return #name;
    OD_STATUS_MAP(OD_STATUS_NAME)
#undef OD_STATUS_NAME
  }
  return "EUNKNOWN";
}

const char *od_status_message(int code) {
  switch (code) {
#define OD_STATUS_MSG(name, value, msg) case value: return msg;
    OD_STATUS_MAP(OD_STATUS_MSG)
#undef OD_STATUS_MSG
  }
  return "unknown error";
}

int od_error_set(od_error *err, int code, bool retriable, const char *file, int line,
                 const char *fmt, ...) {
  if (!err) return code;
  err->code = code;
  err->retriable = retriable;
  err->file = file;
  err->line = line;
  err->sqlstate[0] = '\0';
  err->sqlite_code = 0;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  } else {
    snprintf(err->msg, sizeof err->msg, "%s", od_status_message(code));
  }
  return code;
}

int od_error_prefix(od_error *err, const char *fmt, ...) {
  if (!err) return OD_EINVAL;
  char prefix[OD_ERROR_MSG_MAX];
  char old[OD_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  size_t n = strnlen(prefix, sizeof prefix - 1);
  memcpy(err->msg, prefix, n);
  size_t rest = sizeof err->msg - 1 - n;
  size_t m = strnlen(old, rest);
  memcpy(err->msg + n, old, m);
  err->msg[n + m] = '\0';
  return err->code;
}

void od_error_clear(od_error *err) {
  if (!err) return;
  memset(err, 0, sizeof *err);
}
