/* sources/mysql/mysql_gtidset.c — MySQL GTID sets (mysql_gtidset.h).
 *
 * Owns: parsing, canonical form, set operations, the binary form of PREVIOUS_GTIDS.
 * Never touches: connections, the binlog stream, MariaDB's GTID lists (my_position.c), the position
 * kind (mysql_gtidpos.c).
 */
#include "sources/mysql/mysql_gtidset.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/binlog_bytes.h"

#define GNO_MAX ((uint64_t)INT64_MAX)

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 8-4-4-4-12 hex digits at p; returns the characters read, 0 when it is not a uuid. */
static size_t parse_uuid(const char *p, uint8_t out[16]) {
  static const int dash_at[] = {8, 13, 18, 23};
  size_t i = 0;
  int nib = 0, d = 0;
  for (; i < 36; i++) {
    if (d < 4 && (int)i == dash_at[d]) {
      if (p[i] != '-') return 0;
      d++;
      continue;
    }
    int v = hexval((unsigned char)p[i]);
    if (v < 0) return 0;
    if (nib % 2 == 0) out[nib / 2] = (uint8_t)(v << 4);
    else out[nib / 2] |= (uint8_t)v;
    nib++;
  }
  return hexval((unsigned char)p[36]) >= 0 || p[36] == '-' ? 0 : 36;
}

static mysql_gtid_uuid *find_uuid(mysql_gtidset *s, const uint8_t uuid[16], bool create, od_error *err) {
  int i = 0;
  while (i < s->n && memcmp(s->u[i].uuid, uuid, 16) < 0) i++;
  if (i < s->n && memcmp(s->u[i].uuid, uuid, 16) == 0) return &s->u[i];
  if (!create) return NULL;
  if (s->n == MYSQL_GS_MAX_UUIDS) {
    OD_FAIL(err, OD_EINVAL, "GTID set: more than %d source uuids", MYSQL_GS_MAX_UUIDS);
    return NULL;
  }
  memmove(&s->u[i + 1], &s->u[i], (size_t)(s->n - i) * sizeof s->u[0]);
  s->n++;
  memset(&s->u[i], 0, sizeof s->u[i]);
  memcpy(s->u[i].uuid, uuid, 16);
  return &s->u[i];
}

/* Add [first, last] to u's intervals, merging overlapping and adjacent ones. */
static int add_interval(mysql_gtid_uuid *u, uint64_t first, uint64_t last, od_error *err) {
  int i = 0;
  while (i < u->n && u->iv[i].last + 1 < first) i++; /* intervals wholly before, not adjacent */
  int j = i;
  while (j < u->n && u->iv[j].first <= last + 1) { /* overlapping or adjacent: absorb */
    if (u->iv[j].first < first) first = u->iv[j].first;
    if (u->iv[j].last > last) last = u->iv[j].last;
    j++;
  }
  if (i == j) { /* nothing absorbed: insert at i */
    if (u->n == MYSQL_GS_MAX_INTERVALS)
      return OD_FAIL(err, OD_EINVAL, "GTID set: more than %d intervals for one uuid", MYSQL_GS_MAX_INTERVALS);
    memmove(&u->iv[i + 1], &u->iv[i], (size_t)(u->n - i) * sizeof u->iv[0]);
    u->n++;
  } else if (j > i + 1) {
    memmove(&u->iv[i + 1], &u->iv[j], (size_t)(u->n - j) * sizeof u->iv[0]);
    u->n -= j - i - 1;
  }
  u->iv[i] = (mysql_gtid_interval){first, last};
  return OD_OK;
}

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

static bool parse_gno(const char **pp, uint64_t *out) {
  const char *p = *pp;
  if (*p < '0' || *p > '9') return false;
  uint64_t v = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (GNO_MAX - (uint64_t)(*p - '0')) / 10) return false;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (v == 0) return false;
  *out = v;
  *pp = p;
  return true;
}

int mysql_gtidset_parse(const char *text, mysql_gtidset *out, od_error *err) {
  memset(out, 0, sizeof *out);
  const char *p = skip_ws(text);
  if (!*p) return OD_OK;
  for (;;) {
    uint8_t uuid[16];
    const char *elem = p;
    size_t n = parse_uuid(p, uuid);
    if (!n) return OD_FAIL(err, OD_EINVAL, "GTID set '%s': '%.40s' does not start with a uuid", text, elem);
    p = skip_ws(p + n);
    mysql_gtid_uuid *u = find_uuid(out, uuid, true, err);
    if (!u) return OD_EINVAL;
    bool any = false;
    while (*p == ':') {
      p = skip_ws(p + 1);
      uint64_t first, last;
      if (!parse_gno(&p, &first))
        return OD_FAIL(err, OD_EINVAL, "GTID set '%s': '%.40s': a transaction number 1..%llu expected", text, elem,
                       (unsigned long long)GNO_MAX);
      last = first;
      p = skip_ws(p);
      if (*p == '-') {
        p = skip_ws(p + 1);
        if (!parse_gno(&p, &last) || last < first)
          return OD_FAIL(err, OD_EINVAL, "GTID set '%s': '%.40s': a bad interval (first-last, first <= last)", text,
                         elem);
        p = skip_ws(p);
      }
      int rc = add_interval(u, first, last, err);
      if (rc) return rc;
      any = true;
    }
    if (!any) return OD_FAIL(err, OD_EINVAL, "GTID set '%s': '%.40s': a uuid without ':interval'", text, elem);
    if (!*p) return OD_OK;
    if (*p != ',') return OD_FAIL(err, OD_EINVAL, "GTID set '%s': unexpected '%.20s'", text, p);
    p = skip_ws(p + 1);
  }
}

int mysql_gtidset_format(const mysql_gtidset *s, char *buf, size_t size) {
  static const char hx[] = "0123456789abcdef";
  size_t n = 0;
  if (size == 0) return -1;
  buf[0] = '\0';
  for (int i = 0; i < s->n; i++) {
    const mysql_gtid_uuid *u = &s->u[i];
    if (n + 38 >= size) return -1;
    if (i) buf[n++] = ',';
    for (int b = 0; b < 16; b++) {
      if (b == 4 || b == 6 || b == 8 || b == 10) buf[n++] = '-';
      buf[n++] = hx[u->uuid[b] >> 4];
      buf[n++] = hx[u->uuid[b] & 15];
    }
    for (int k = 0; k < u->n; k++) {
      int w = u->iv[k].first == u->iv[k].last
                  ? snprintf(buf + n, size - n, ":%llu", (unsigned long long)u->iv[k].first)
                  : snprintf(buf + n, size - n, ":%llu-%llu", (unsigned long long)u->iv[k].first,
                             (unsigned long long)u->iv[k].last);
      if (w < 0 || (size_t)w >= size - n) return -1;
      n += (size_t)w;
    }
  }
  buf[n] = '\0';
  return (int)n;
}

int mysql_gtidset_add(mysql_gtidset *s, const uint8_t uuid[16], uint64_t gno, od_error *err) {
  if (gno == 0 || gno > GNO_MAX) return OD_FAIL(err, OD_EINVAL, "GTID transaction number %llu is out of range",
                                                (unsigned long long)gno);
  mysql_gtid_uuid *u = find_uuid(s, uuid, true, err);
  return u ? add_interval(u, gno, gno, err) : OD_EINVAL;
}

int mysql_gtidset_union(mysql_gtidset *a, const mysql_gtidset *b, od_error *err) {
  for (int i = 0; i < b->n; i++) {
    mysql_gtid_uuid *u = find_uuid(a, b->u[i].uuid, true, err);
    if (!u) return OD_EINVAL;
    for (int k = 0; k < b->u[i].n; k++) {
      int rc = add_interval(u, b->u[i].iv[k].first, b->u[i].iv[k].last, err);
      if (rc) return rc;
    }
  }
  return OD_OK;
}

bool mysql_gtidset_contains(const mysql_gtidset *a, const mysql_gtidset *b) {
  for (int i = 0; i < b->n; i++) {
    const mysql_gtid_uuid *u = find_uuid((mysql_gtidset *)a, b->u[i].uuid, false, NULL);
    if (!u) return b->u[i].n == 0;
    int k = 0;
    for (int j = 0; j < b->u[i].n; j++) {
      const mysql_gtid_interval *x = &b->u[i].iv[j];
      while (k < u->n && u->iv[k].last < x->first) k++;
      if (k == u->n || u->iv[k].first > x->first || u->iv[k].last < x->last) return false;
    }
  }
  return true;
}

bool mysql_gtidset_has(const mysql_gtidset *s, const uint8_t uuid[16], uint64_t gno) {
  const mysql_gtid_uuid *u = find_uuid((mysql_gtidset *)s, uuid, false, NULL);
  for (int k = 0; u && k < u->n; k++)
    if (u->iv[k].first <= gno && gno <= u->iv[k].last) return true;
  return false;
}

uint64_t mysql_gtidset_count(const mysql_gtidset *s) {
  uint64_t c = 0;
  for (int i = 0; i < s->n; i++)
    for (int k = 0; k < s->u[i].n; k++) {
      uint64_t w = s->u[i].iv[k].last - s->u[i].iv[k].first + 1;
      c = c > UINT64_MAX - w ? UINT64_MAX : c + w;
    }
  return c;
}

int mysql_gtidset_decode(const uint8_t *p, size_t len, mysql_gtidset *out, size_t *used, od_error *err) {
  memset(out, 0, sizeof *out);
  const uint8_t *q = p, *end = p + len;
  if (len < 8) return OD_FAIL(err, OD_EPROTOCOL, "encoded GTID set of %zu bytes: too short", len);
  uint64_t nsids = my_u64(q);
  q += 8;
  if (nsids > (size_t)(end - q) / 24)
    return OD_FAIL(err, OD_EPROTOCOL, "encoded GTID set: %llu uuids do not fit its %zu bytes",
                   (unsigned long long)nsids, len);
  for (uint64_t i = 0; i < nsids; i++) {
    const uint8_t *uuid = q;
    uint64_t niv = my_u64(q + 16);
    q += 24;
    if (niv > (size_t)(end - q) / 16)
      return OD_FAIL(err, OD_EPROTOCOL, "encoded GTID set: uuid %llu: %llu intervals do not fit", (unsigned long long)i,
                     (unsigned long long)niv);
    mysql_gtid_uuid *u = find_uuid(out, uuid, true, err);
    if (!u) return OD_EINVAL;
    for (uint64_t k = 0; k < niv; k++, q += 16) {
      uint64_t start = my_u64(q), stop = my_u64(q + 8); /* [start, stop) */
      if (start == 0 || stop <= start || stop - 1 > GNO_MAX)
        return OD_FAIL(err, OD_EPROTOCOL, "encoded GTID set: bad interval [%llu, %llu)", (unsigned long long)start,
                       (unsigned long long)stop);
      int rc = add_interval(u, start, stop - 1, err);
      if (rc) return rc;
    }
  }
  if (used) *used = (size_t)(q - p);
  return OD_OK;
}

static void put_le(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++, v >>= 8) p[i] = (uint8_t)v;
}

long mysql_gtidset_encode(const mysql_gtidset *s, uint8_t *buf, size_t size) {
  size_t need = 8;
  for (int i = 0; i < s->n; i++) need += 24 + (size_t)s->u[i].n * 16;
  if (need > size) return -1;
  uint8_t *q = buf;
  put_le(q, (uint64_t)s->n);
  q += 8;
  for (int i = 0; i < s->n; i++) {
    memcpy(q, s->u[i].uuid, 16);
    put_le(q + 16, (uint64_t)s->u[i].n);
    q += 24;
    for (int k = 0; k < s->u[i].n; k++, q += 16) {
      put_le(q, s->u[i].iv[k].first);
      put_le(q + 8, s->u[i].iv[k].last + 1);
    }
  }
  return (long)need;
}
