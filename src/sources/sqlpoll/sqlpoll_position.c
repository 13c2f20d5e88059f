/* sources/sqlpoll/sqlpoll_position.c — see sqlpoll_position.h. */
#include "sources/sqlpoll/sqlpoll_position.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

od_pos od_sqlpoll_pos(int n, const int64_t *wm) {
  od_pos p = {0};
  p.kind = &od_sqlpoll_position;
  p.data[0] = (uint8_t)n;
  for (int i = 0; i < n; i++) {
    uint64_t v = (uint64_t)wm[i];
    for (int b = 0; b < 8; b++) p.data[1 + 8 * i + b] = (uint8_t)(v >> (56 - 8 * b));
  }
  p.len = (uint16_t)(1 + 8 * n);
  return p;
}

int od_sqlpoll_get(const od_pos *p, int64_t *wm, int max) {
  if (!p || p->kind != &od_sqlpoll_position || p->len < 1) return -1;
  int n = p->data[0];
  if (n > max || p->len != 1 + 8 * n) return -1;
  for (int i = 0; i < n; i++) {
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v = (v << 8) | p->data[1 + 8 * i + b];
    wm[i] = (int64_t)v;
  }
  return n;
}

static int sp_compare(const od_pos *a, const od_pos *b) {
  int64_t wa[SQLPOLL_MAX_TABLES], wb[SQLPOLL_MAX_TABLES];
  int na = od_sqlpoll_get(a, wa, SQLPOLL_MAX_TABLES), nb = od_sqlpoll_get(b, wb, SQLPOLL_MAX_TABLES);
  if (na != nb) return na < nb ? -1 : 1;
  __int128 sa = 0, sb = 0;
  for (int i = 0; i < na; i++) sa += wa[i], sb += wb[i];
  if (sa != sb) return sa < sb ? -1 : 1;
  for (int i = 0; i < na; i++)
    if (wa[i] != wb[i]) return wa[i] < wb[i] ? -1 : 1;
  return 0;
}

static int sp_format(const od_pos *p, char *buf, size_t size) {
  int64_t w[SQLPOLL_MAX_TABLES];
  int n = od_sqlpoll_get(p, w, SQLPOLL_MAX_TABLES);
  if (n < 1) return -1;
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    int k = snprintf(buf + o, o < size ? size - o : 0, "%s%" PRId64, i ? "," : "", w[i]);
    if (k < 0) return -1;
    o += (size_t)k;
  }
  return o >= size ? -1 : (int)o;
}

static int sp_parse(const char *body, od_pos *out) {
  int64_t w[SQLPOLL_MAX_TABLES];
  int n = 0;
  const char *p = body;
  for (;;) {
    if (n == SQLPOLL_MAX_TABLES || !*p) return OD_EINVAL;
    char *end = NULL;
    long long v = strtoll(p, &end, 10);
    if (end == p || (*end && *end != ',')) return OD_EINVAL;
    w[n++] = v;
    if (!*end) break;
    p = end + 1;
  }
  *out = od_sqlpoll_pos(n, w);
  return OD_OK;
}

const od_pos_kind od_sqlpoll_position = {
    .name = "sqlpoll", .compare = sp_compare, .format = sp_format, .parse = sp_parse, .version = NULL};
