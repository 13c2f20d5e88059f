/* sources/mysql/mysql_gtidset.c — MySQL GTID sets and the "mysqlgtid" position kind (mysql_gtidset.h).
 *
 * Owns: parsing, canonical form, set operations, the binary form of PREVIOUS_GTIDS, the position
 * encoding. Never touches: connections, the binlog stream, MariaDB's GTID lists (my_position.c).
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

/* ---- the position kind -------------------------------------------------------------------- */

static long long file_number(const char *file) {
  const char *dot = strrchr(file, '.');
  if (!dot || !dot[1]) return -1;
  long long n = 0;
  for (const char *p = dot + 1; *p; p++) {
    if (*p < '0' || *p > '9' || n > 0xFFFFFFFFLL / 10) return -1;
    n = n * 10 + (*p - '0');
  }
  return n <= 0xFFFFFFFFLL ? n : -1;
}

static bool put_leb(uint8_t *buf, size_t *n, size_t cap, uint64_t v) {
  do {
    if (*n >= cap) return false;
    uint8_t b = v & 0x7F;
    v >>= 7;
    buf[(*n)++] = (uint8_t)(b | (v ? 0x80 : 0));
  } while (v);
  return true;
}

static bool get_leb(const uint8_t *buf, size_t *n, size_t len, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*n >= len) return false;
    uint8_t b = buf[(*n)++];
    v |= (uint64_t)(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

int mysql_gtidpos_make(const char *file, uint64_t offset, const mysql_gtidset *set, od_pos *out, od_error *err) {
  long long fn = file_number(file);
  size_t fl = strlen(file);
  if (fn < 0 || fl > 255) return OD_FAIL(err, OD_EINVAL, "binlog file name '%s' has no numeric suffix", file);
  memset(out, 0, sizeof *out);
  out->kind = &od_pos_mysql_gtid;
  uint8_t *d = out->data;
  for (int i = 0; i < 4; i++) d[i] = (uint8_t)((uint64_t)fn >> (24 - 8 * i));
  for (int i = 0; i < 8; i++) d[4 + i] = (uint8_t)(offset >> (56 - 8 * i));
  size_t n = 12;
  bool fits = n + 2 + fl <= OD_POS_MAX;
  if (fits) {
    d[n++] = (uint8_t)fl;
    memcpy(d + n, file, fl);
    n += fl;
    d[n++] = (uint8_t)set->n;
  }
  for (int i = 0; fits && i < set->n; i++) {
    const mysql_gtid_uuid *u = &set->u[i];
    fits = n + 16 <= OD_POS_MAX;
    if (!fits) break;
    memcpy(d + n, u->uuid, 16);
    n += 16;
    fits = put_leb(d, &n, OD_POS_MAX, (uint64_t)u->n);
    for (int k = 0; fits && k < u->n; k++)
      fits = put_leb(d, &n, OD_POS_MAX, u->iv[k].first) &&
             put_leb(d, &n, OD_POS_MAX, u->iv[k].last - u->iv[k].first);
  }
  if (!fits) {
    char text[128];
    if (mysql_gtidset_format(set, text, sizeof text) < 0) snprintf(text, sizeof text, "(%d uuids)", set->n);
    return OD_FAIL(err, OD_EINVAL,
                   "MySQL GTID set %s with %s:%llu does not fit the %d bytes of a position (too many uuids or "
                   "intervals; MySQL's gtid_executed compression keeps a replica's set short)",
                   text, file, (unsigned long long)offset, OD_POS_MAX);
  }
  out->len = (uint16_t)n;
  return OD_OK;
}

int mysql_gtidpos_parts(const od_pos *p, char *file, size_t file_size, uint64_t *offset, mysql_gtidset *set) {
  if (p->len < 14) return OD_EINVAL;
  uint64_t off = 0;
  for (int i = 0; i < 8; i++) off = off << 8 | p->data[4 + i];
  size_t fl = p->data[12], n = 13 + fl;
  if (n + 1 > p->len) return OD_EINVAL;
  if (file) snprintf(file, file_size, "%.*s", (int)fl, (const char *)p->data + 13);
  if (offset) *offset = off;
  mysql_gtidset s;
  memset(&s, 0, sizeof s);
  int nu = p->data[n++];
  if (nu > MYSQL_GS_MAX_UUIDS) return OD_EINVAL;
  for (int i = 0; i < nu; i++) {
    if (n + 16 > p->len) return OD_EINVAL;
    mysql_gtid_uuid *u = &s.u[s.n++];
    memcpy(u->uuid, p->data + n, 16);
    n += 16;
    uint64_t niv;
    if (!get_leb(p->data, &n, p->len, &niv) || niv > MYSQL_GS_MAX_INTERVALS) return OD_EINVAL;
    for (uint64_t k = 0; k < niv; k++) {
      uint64_t first, span;
      if (!get_leb(p->data, &n, p->len, &first) || !get_leb(p->data, &n, p->len, &span)) return OD_EINVAL;
      u->iv[u->n++] = (mysql_gtid_interval){first, first + span};
    }
  }
  if (n != p->len) return OD_EINVAL;
  if (set) *set = s;
  return OD_OK;
}

static int gp_compare(const od_pos *a, const od_pos *b) {
  int c = memcmp(a->data, b->data, 12);
  if (c) return c < 0 ? -1 : 1;
  mysql_gtidset sa, sb;
  if (mysql_gtidpos_parts(a, NULL, 0, NULL, &sa) == OD_OK && mysql_gtidpos_parts(b, NULL, 0, NULL, &sb) == OD_OK) {
    uint64_t ca = mysql_gtidset_count(&sa), cb = mysql_gtidset_count(&sb);
    if (ca != cb) return ca < cb ? -1 : 1;
  }
  size_t n = a->len < b->len ? a->len : b->len;
  c = memcmp(a->data, b->data, n);
  if (c) return c < 0 ? -1 : 1;
  return a->len < b->len ? -1 : a->len > b->len;
}

static int gp_format(const od_pos *p, char *buf, size_t size) {
  char file[256];
  uint64_t off;
  mysql_gtidset s;
  if (mysql_gtidpos_parts(p, file, sizeof file, &off, &s) != OD_OK) return -1;
  int n = mysql_gtidset_format(&s, buf, size);
  if (n < 0) return -1;
  int m = snprintf(buf + n, size - (size_t)n, "@%s:%llu", file, (unsigned long long)off);
  return m < 0 || (size_t)m >= size - (size_t)n ? -1 : n + m;
}

static int gp_parse(const char *body, od_pos *out) {
  const char *at = strrchr(body, '@');
  if (!at) return OD_EINVAL;
  const char *colon = strrchr(at, ':');
  if (!colon || colon == at + 1 || !colon[1] || colon[1] == '-') return OD_EINVAL;
  char file[256], set_text[OD_POS_TEXT_MAX];
  size_t fl = (size_t)(colon - at - 1), sl = (size_t)(at - body);
  if (fl >= sizeof file || sl >= sizeof set_text) return OD_EINVAL;
  memcpy(file, at + 1, fl);
  file[fl] = '\0';
  memcpy(set_text, body, sl);
  set_text[sl] = '\0';
  char *end;
  unsigned long long off = strtoull(colon + 1, &end, 10);
  if (*end) return OD_EINVAL;
  od_error err;
  mysql_gtidset s;
  if (mysql_gtidset_parse(set_text, &s, &err) != OD_OK) return OD_EINVAL;
  return mysql_gtidpos_make(file, off, &s, out, &err) == OD_OK ? OD_OK : OD_EINVAL;
}

const od_pos_kind od_pos_mysql_gtid = {
    .name = "mysqlgtid",
    .compare = gp_compare,
    .format = gp_format,
    .parse = gp_parse,
    .version = NULL,
};
