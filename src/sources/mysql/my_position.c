/* sources/mysql/my_position.c — the "mysql" position kind (see my_position.h).
 *
 * Owns: encoding, order, text form and parsing of MariaDB positions.
 * Never touches: connections, the binlog bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/my_position.h"

static uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

static void put_be(uint8_t *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* The numeric suffix of "name.000042"; -1 when there is none. */
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

int my_pos_make(const char *file, uint64_t offset, const char *gtids, od_pos *out, od_error *err) {
  long long n = file_number(file);
  size_t fl = strlen(file), gl = strlen(gtids);
  if (n < 0) return OD_FAIL(err, OD_EINVAL, "binlog file name '%s' has no numeric suffix", file);
  if (13 + fl + gl > OD_POS_MAX || fl > 255)
    return OD_FAIL(err, OD_EINVAL,
                   "MariaDB position %s@%s:%llu does not fit the %d bytes of a position (too many GTID domains)",
                   gtids, file, (unsigned long long)offset, OD_POS_MAX);
  memset(out, 0, sizeof *out);
  out->kind = &od_pos_mysql;
  put_be(out->data, (uint64_t)n, 4);
  put_be(out->data + 4, offset, 8);
  out->data[12] = (uint8_t)fl;
  memcpy(out->data + 13, file, fl);
  memcpy(out->data + 13 + fl, gtids, gl);
  out->len = (uint16_t)(13 + fl + gl);
  return OD_OK;
}

void my_pos_parts(const od_pos *p, char *file, size_t file_size, uint64_t *offset, char *gtids, size_t gtids_size) {
  size_t fl = p->len >= 13 ? p->data[12] : 0;
  if (13 + fl > p->len) fl = 0;
  size_t gl = p->len > 13 + fl ? p->len - 13 - fl : 0;
  if (file) snprintf(file, file_size, "%.*s", (int)fl, (const char *)p->data + 13);
  if (offset) *offset = p->len >= 12 ? be(p->data + 4, 8) : 0;
  if (gtids) snprintf(gtids, gtids_size, "%.*s", (int)gl, (const char *)p->data + 13 + fl);
}

static int compare(const od_pos *a, const od_pos *b) {
  int n = memcmp(a->data, b->data, 12); /* file number and offset, big-endian */
  return n < 0 ? -1 : n > 0;
}

static int format(const od_pos *p, char *buf, size_t size) {
  char file[256], gtids[OD_POS_MAX + 1];
  uint64_t off;
  my_pos_parts(p, file, sizeof file, &off, gtids, sizeof gtids);
  int n = snprintf(buf, size, "%s@%s:%llu", gtids, file, (unsigned long long)off);
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int parse(const char *body, od_pos *out) {
  const char *at = strrchr(body, '@');
  if (!at) return OD_EINVAL;
  const char *colon = strrchr(at, ':');
  if (!colon || colon == at + 1 || !colon[1]) return OD_EINVAL;
  char file[256], gtids[OD_POS_MAX + 1];
  size_t fl = (size_t)(colon - at - 1), gl = (size_t)(at - body);
  if (fl >= sizeof file || gl >= sizeof gtids) return OD_EINVAL;
  memcpy(file, at + 1, fl);
  file[fl] = '\0';
  memcpy(gtids, body, gl);
  gtids[gl] = '\0';
  for (const char *g = gtids; *g; g++)
    if (!((*g >= '0' && *g <= '9') || *g == '-' || *g == ',')) return OD_EINVAL;
  char *end;
  unsigned long long off = strtoull(colon + 1, &end, 10);
  if (*end || colon[1] == '-') return OD_EINVAL;
  od_error err;
  return my_pos_make(file, off, gtids, out, &err) == OD_OK ? OD_OK : OD_EINVAL;
}

/* Grows with the position: file number in the high 24 bits, offset in the low 40. */
static uint64_t version(const od_pos *p) { return be(p->data, 4) << 40 | (be(p->data + 4, 8) & ((1ULL << 40) - 1)); }

const od_pos_kind od_pos_mysql = {
    .name = "mysql",
    .compare = compare,
    .format = format,
    .parse = parse,
    .version = version,
};
