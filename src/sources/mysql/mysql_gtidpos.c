/* sources/mysql/mysql_gtidpos.c — the "mysqlgtid" position kind (mysql_gtidset.h): a MySQL GTID set
 * with the binlog file:offset it was read at.
 *
 * Owns: the position's compact encoding (LEB128 intervals), its order, text form and parsing.
 * Never touches: connections, the binlog stream, the GTID set operations (mysql_gtidset.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/mysql_gtidset.h"


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
