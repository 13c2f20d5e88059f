/* odsync/error.h — status codes and the error object.
 *
 * Owns: the one table of status codes (OD_STATUS_MAP) and the od_error record that a failing
 * function fills. Every fallible function returns an int status (OD_OK, or a negative code) and,
 * when it fails, fills the caller's od_error with a message naming the thing that failed and
 * what to do. OD_AGAIN and OD_EOF are flow signals, not failures.
 * Never touches: logging, retries, process exit — the pipeline decides what an error means.
 */
#ifndef ODSYNC_ERROR_H
#define ODSYNC_ERROR_H

#include <stdbool.h>

/* X(name, value, default message) */
#define OD_STATUS_MAP(X)                                                         \
  X(OK, 0, "success")                                                            \
  X(AGAIN, -1, "no data yet, try again")                                         \
  X(EOF, -2, "end of stream")                                                    \
  X(ENOMEM, -3, "out of memory")                                                 \
  X(ECONFIG, -4, "invalid configuration")                                        \
  X(ECONNECT, -5, "connection failed")                                           \
  X(EPROTOCOL, -6, "protocol error")                                             \
  X(EIO, -7, "input/output error")                                               \
  X(ESINK, -8, "sink error")                                                     \
  X(ESOURCE, -9, "source error")                                                 \
  X(EINVAL, -10, "invalid argument")                                             \
  X(EUNSUPPORTED, -11, "unsupported")                                            \
  X(EBUSY, -12, "resource in use")                                               \
  X(ECANCELLED, -13, "cancelled")                                                \
  X(EGAP, -14, "positions do not line up (changes would be lost)")               \
  X(ESCHEMA, -15, "schema error")                                                \
  X(EDUPLICATE, -16, "key already present")

enum od_status {
#define OD_STATUS_ENUM(name, value, msg) OD_##name = value,
  OD_STATUS_MAP(OD_STATUS_ENUM)
#undef OD_STATUS_ENUM
};

#define OD_ERROR_MSG_MAX 1024

typedef struct od_error {
  int code;          /* one of enum od_status, negative */
  bool retriable;    /* true: the same call may succeed later (network, server restart) */
  const char *file;  /* where it was raised (static string) */
  int line;
  /* The cause as the server named it, so the core classifies an error once (core/error_class.h):
   * a sink or source that knows it fills one of these after OD_FAIL (which clears both). */
  char sqlstate[6];  /* PostgreSQL SQLSTATE ("23514"), "" when none */
  int sqlite_code;   /* SQLite extended result code, 0 when none */
  char msg[OD_ERROR_MSG_MAX];
} od_error;

/* Name ("ECONNECT") and default message of a status code. Never NULL. */
const char *od_status_name(int code);
const char *od_status_message(int code);

/* Fill err (may be NULL) and return code. Use through OD_FAIL / OD_FAIL_RETRY. */
int od_error_set(od_error *err, int code, bool retriable, const char *file, int line,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Prefix the existing message with context ("pipeline shop: " + old message). Returns err->code. */
int od_error_prefix(od_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void od_error_clear(od_error *err);

#define OD_FAIL(err, code, ...) od_error_set((err), (code), false, __FILE__, __LINE__, __VA_ARGS__)
#define OD_FAIL_RETRY(err, code, ...) od_error_set((err), (code), true, __FILE__, __LINE__, __VA_ARGS__)

#endif
