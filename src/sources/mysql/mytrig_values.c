/* sources/mysql/mytrig_values.c — how `type: mariadb_trigger` stores a column in the change table
 * and turns it back into the text forms of docs/TYPES.md ("MariaDB", the forms the binlog decoder
 * and the snapshot give), and the trigger names (see mytrig.h).
 *
 * The triggers store a row as JSON_ARRAY of one string per column (NULL as JSON null), in the
 * table's column order: binary strings and GEOMETRY as HEX(), TIMESTAMP as UNIX_TIMESTAMP() (the
 * writer's session time zone plays no part), YEAR as a number, BIT as binary digits, everything else
 * CAST AS CHAR in utf8mb4 (the text a SELECT gives).
 * Owns nothing; writes only into the caller's buffers. Never touches connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sources/mysql/mytrig.h"

int mytrig_trigger_name(const char *table, char op, char *buf, size_t size) {
  int n = snprintf(buf, size, "odsync_%c_%s", op, table);
  return n < 0 || (size_t)n >= size || n > 64 ? -1 : n;
}

static bool binary_string(const my_column *c) {
  return (c->charset == MY_CS_BINARY && c->real_type != MY_T_ENUM && c->real_type != MY_T_SET &&
          (c->type == MY_T_STRING || c->type == MY_T_VARCHAR || c->type == MY_T_BLOB)) ||
         c->type == MY_T_GEOMETRY;
}

int mytrig_column_expr(const my_column *c, const char *row, char *buf, size_t size) {
  char q[300];
  size_t k = 0;
  q[k++] = '`';
  for (const char *p = c->name; *p && k < sizeof q - 3; p++) {
    if (*p == '`') q[k++] = '`';
    q[k++] = *p;
  }
  q[k++] = '`';
  q[k] = '\0';
  int n;
  if (binary_string(c)) n = snprintf(buf, size, "HEX(%s.%s)", row, q);
  else if (c->type == MY_T_TIMESTAMP2 || c->type == MY_T_TIMESTAMP)
    n = snprintf(buf, size, "IF(%1$s.%2$s = 0, '0', CAST(UNIX_TIMESTAMP(%1$s.%2$s) AS CHAR))", row, q);
  else if (c->type == MY_T_YEAR) n = snprintf(buf, size, "CAST(%s.%s + 0 AS CHAR)", row, q);
  else if (c->type == MY_T_BIT) n = snprintf(buf, size, "LPAD(BIN(%s.%s), %u, '0')", row, q, c->length);
  else n = snprintf(buf, size, "CAST(%s.%s AS CHAR CHARACTER SET utf8mb4)", row, q);
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int hexval(char h) {
  if (h >= '0' && h <= '9') return h - '0';
  if (h >= 'a' && h <= 'f') return h - 'a' + 10;
  if (h >= 'A' && h <= 'F') return h - 'A' + 10;
  return -1;
}

long mytrig_value(const my_column *c, const char *v, size_t n, char *out, size_t cap) {
  if (binary_string(c)) {
    if (n % 2 || cap < n + 3) return -1;
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
      int h = hexval(v[i]);
      if (h < 0) return -1;
      out[2 + i] = "0123456789abcdef"[h];
    }
    out[2 + n] = '\0';
    return (long)(n + 2);
  }
  if (c->type == MY_T_FLOAT || c->type == MY_T_DOUBLE) {
    char tmp[64];
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    int k = my_format_float(strtod(tmp, NULL), c->type == MY_T_FLOAT, out, cap);
    return k < 0 || (size_t)k >= cap ? -1 : k;
  }
  if (c->type == MY_T_TIMESTAMP2 || c->type == MY_T_TIMESTAMP) {
    /* seconds since the epoch, maybe with a fraction; "0" is the zero timestamp */
    char tmp[64];
    if (n >= sizeof tmp || cap < 48) return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    if (!strcmp(tmp, "0")) return snprintf(out, cap, "0000-00-00 00:00:00");
    char *dot = strchr(tmp, '.');
    if (dot) *dot = '\0';
    time_t secs = (time_t)strtoll(tmp, NULL, 10);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) return -1;
    int k = (int)strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
    unsigned digits = c->type == MY_T_TIMESTAMP2 ? c->length : 0;
    if (digits > 6) digits = 6;
    if (digits) {
      char frac[7] = "000000";
      for (unsigned i = 0; dot && i < 6 && dot[1 + i]; i++) frac[i] = dot[1 + i];
      k += snprintf(out + k, cap - (size_t)k, ".%.*s", (int)digits, frac);
    }
    k += snprintf(out + k, cap - (size_t)k, "+00");
    return k;
  }
  if (cap < n + 1) return -1;
  memcpy(out, v, n);
  out[n] = '\0';
  return (long)n;
}
