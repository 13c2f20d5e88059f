/* sqlbuf.h — a growable buffer for building SQL text, shared by the SQL sinks.
 * Owns its bytes (freed by od_sqlbuf_free). Out of memory is sticky: later appends do nothing
 * and `oom` tells the caller once, at the end. Never touches a database. */
#ifndef ODSYNC_SQLBUF_H
#define ODSYNC_SQLBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct od_sqlbuf {
  char *p;
  size_t len, cap;
  bool oom;
} od_sqlbuf;

void od_sqlbuf_reset(od_sqlbuf *b);
void od_sqlbuf_add(od_sqlbuf *b, const char *str);
/* Append n bytes (may hold NULs; the buffer stays NUL-terminated after them). */
void od_sqlbuf_addn(od_sqlbuf *b, const void *data, size_t n);
void od_sqlbuf_addf(od_sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append an identifier in double quotes, with embedded quotes doubled. */
void od_sqlbuf_ident(od_sqlbuf *b, const char *name);
/* Append the n bytes of v as a JSON string: in double quotes, '"' and '\\' escaped, control
 * characters as \u00XX (bytes from 0x80 on are copied: v is UTF-8). */
void od_sqlbuf_json_str(od_sqlbuf *b, const char *v, size_t n);
void od_sqlbuf_free(od_sqlbuf *b);

#endif
