/* sqlbuf.c — see sqlbuf.h. */
#include "common/sqlbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool buf_reserve(od_sqlbuf *b, size_t extra) {
  if (b->oom) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

void od_sqlbuf_reset(od_sqlbuf *b) {
  b->len = 0;
  b->oom = false;
  if (b->p) b->p[0] = '\0';
}

void od_sqlbuf_add(od_sqlbuf *b, const char *str) {
  size_t n = strlen(str);
  if (!buf_reserve(b, n)) return;
  memcpy(b->p + b->len, str, n + 1);
  b->len += n;
}

void od_sqlbuf_addn(od_sqlbuf *b, const void *data, size_t n) {
  if (!buf_reserve(b, n)) return;
  if (n) memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void od_sqlbuf_addf(od_sqlbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !buf_reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void od_sqlbuf_ident(od_sqlbuf *b, const char *name) {
  size_t n = strlen(name), quotes = 0;
  for (size_t i = 0; i < n; i++) quotes += name[i] == '"';
  if (!buf_reserve(b, n + quotes + 2)) return;
  char *o = b->p + b->len;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    *o++ = name[i];
    if (name[i] == '"') *o++ = '"';
  }
  *o++ = '"';
  *o = '\0';
  b->len = (size_t)(o - b->p);
}

void od_sqlbuf_json_str(od_sqlbuf *b, const char *v, size_t n) {
  od_sqlbuf_add(b, "\"");
  for (size_t k = 0; k < n; k++) {
    unsigned char ch = (unsigned char)v[k];
    if (ch == '"' || ch == '\\') {
      char e[3] = {'\\', (char)ch, 0};
      od_sqlbuf_add(b, e);
    } else if (ch < 0x20) {
      od_sqlbuf_addf(b, "\\u%04x", ch);
    } else {
      od_sqlbuf_addn(b, &v[k], 1);
    }
  }
  od_sqlbuf_add(b, "\"");
}

void od_sqlbuf_free(od_sqlbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}
