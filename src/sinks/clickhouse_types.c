/* clickhouse_types.c — PostgreSQL column type -> ClickHouse column type, and one value's text form
 * -> its TabSeparated field (the mapping is documented in docs/TYPES.md and
 * docs/adapters/clickhouse.md).
 *
 * Owns: nothing but pure functions. Never touches: the server, the batch, the relation cache.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "sinks/clickhouse_internal.h"


int ch_type_of(uint32_t oid, int32_t typmod, char *out, size_t n) {
  switch (oid) {
    case OD_PGT_BOOL: snprintf(out, n, "UInt8"); return CHK_BOOL;
    case OD_PGT_INT2: snprintf(out, n, "Int16"); return CHK_INT;
    case OD_PGT_INT4: snprintf(out, n, "Int32"); return CHK_INT;
    case OD_PGT_INT8: snprintf(out, n, "Int64"); return CHK_INT;
    case OD_PGT_OID: snprintf(out, n, "UInt32"); return CHK_INT;
    case OD_PGT_FLOAT4: snprintf(out, n, "Float32"); return CHK_FLOAT;
    case OD_PGT_FLOAT8: snprintf(out, n, "Float64"); return CHK_FLOAT;
    case OD_PGT_DATE: snprintf(out, n, "Date"); return CHK_DATE;
    case OD_PGT_TIMESTAMP:
    case OD_PGT_TIMESTAMPTZ: snprintf(out, n, "DateTime('UTC')"); return CHK_DATETIME;
    case OD_PGT_BYTEA: snprintf(out, n, "String"); return CHK_BYTES;
    case OD_PGT_NUMERIC:
      if (typmod >= 4) {
        int p = ((typmod - 4) >> 16) & 0xffff, s = (typmod - 4) & 0xffff;
        if (p >= 1 && p <= 38 && s <= p) {
          snprintf(out, n, "Decimal(%d, %d)", p, s);
          return CHK_DECIMAL;
        }
      }
      snprintf(out, n, "String"); /* unconstrained numeric: any precision, kept exactly as text */
      return CHK_STRING;
    default: snprintf(out, n, "String"); return CHK_STRING;
  }
}

/* "Decimal(12, 2)" -> p, s. */
static bool decimal_ps(const char *t, int *p, int *s) { return sscanf(t, "Decimal(%d, %d)", p, s) == 2; }

static int int_rank(const char *t) {
  if (!strcmp(t, "Int16")) return 1;
  if (!strcmp(t, "Int32")) return 2;
  if (!strcmp(t, "Int64")) return 3;
  return 0;
}

bool ch_type_widens(const char *from, const char *to) {
  if (!strcmp(from, to)) return true;
  int a = int_rank(from), b = int_rank(to);
  if (a && b) return b >= a;
  if (!strcmp(from, "Float32") && !strcmp(to, "Float64")) return true;
  int p1, s1, p2, s2;
  if (decimal_ps(from, &p1, &s1) && decimal_ps(to, &p2, &s2)) return s1 == s2 && p2 >= p1;
  return false;
}

/* ---- TabSeparated fields ------------------------------------------------------------------- */

void ch_put_u64(od_sqlbuf *b, uint64_t v) {
  char d[20];
  size_t i = sizeof d;
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  od_sqlbuf_addn(b, d + i, sizeof d - i);
}

void ch_tsv_escape(od_sqlbuf *b, const char *p, size_t n) {
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    char e = 0;
    switch (p[i]) {
      case '\\': e = '\\'; break;
      case '\t': e = 't'; break;
      case '\n': e = 'n'; break;
      case '\r': e = 'r'; break;
      case '\0': e = '0'; break;
      case '\b': e = 'b'; break;
      case '\f': e = 'f'; break;
      default: continue;
    }
    od_sqlbuf_addn(b, p + run, i - run);
    char esc[2] = {'\\', e};
    od_sqlbuf_addn(b, esc, 2);
    run = i + 1;
  }
  od_sqlbuf_addn(b, p + run, n - run);
}

size_t ch_tsv_unescape(char *p, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '\\' || i + 1 == n) {
      p[o++] = p[i];
      continue;
    }
    char c = p[++i];
    p[o++] = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == '0' ? '\0' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
  }
  return o;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
  y -= m <= 2;
  long long era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long long)doe - 719468;
}

static void civil_from_days(long long z, int *y, unsigned *m, unsigned *d) {
  z += 719468;
  long long era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long long yy = (long long)yoe + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp + (mp < 10 ? 3 : -9);
  *y = (int)(yy + (*m <= 2));
}

/* "YYYY-MM-DD" at p; advances *end. */
static bool parse_date(const char *p, const char **end, int *y, unsigned *m, unsigned *d) {
  char *e;
  long yy = strtol(p, &e, 10);
  if (e == p || *e != '-') return false;
  long mm = strtol(e + 1, &e, 10);
  if (*e != '-') return false;
  long dd = strtol(e + 1, &e, 10);
  if (mm < 1 || mm > 12 || dd < 1 || dd > 31) return false;
  *y = (int)yy, *m = (unsigned)mm, *d = (unsigned)dd;
  *end = e;
  return true;
}

/* Two decimal digits at p (this path runs for every timestamp of a batch: no sscanf). */
static bool two_digits(const char *p, int *out) {
  if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1])) return false;
  *out = (p[0] - '0') * 10 + (p[1] - '0');
  return true;
}

/* PostgreSQL ISO timestamp[tz] text -> seconds since the epoch (UTC); fraction dropped. */
static bool parse_timestamp(const char *p, long long *out) {
  int y;
  unsigned mo, d;
  const char *e;
  if (!parse_date(p, &e, &y, &mo, &d) || *e != ' ') return false;
  int hh, mi, ss;
  e++;
  if (!two_digits(e, &hh) || e[2] != ':' || !two_digits(e + 3, &mi) || e[5] != ':' || !two_digits(e + 6, &ss))
    return false;
  e += 8;
  if (*e == '.') {
    e++;
    while (isdigit((unsigned char)*e)) e++;
  }
  long long off = 0;
  if (*e == '+' || *e == '-') {
    int sign = *e == '-' ? -1 : 1;
    int oh = 0, om = 0, os = 0;
    e++;
    if (!two_digits(e, &oh)) return false; /* PostgreSQL writes +HH, +HH:MM or +HH:MM:SS */
    e += 2;
    if (*e == ':' && two_digits(e + 1, &om)) e += 3;
    if (*e == ':' && two_digits(e + 1, &os)) e += 3;
    off = sign * (oh * 3600LL + om * 60 + os);
  }
  if (*e) return false; /* " BC", anything else */
  *out = days_from_civil(y, mo, d) * 86400LL + hh * 3600LL + mi * 60 + ss - off;
  return true;
}

int ch_encode(od_sqlbuf *b, int kind, const od_value *v, const char **why) {
  if (v->kind == OD_VALUE_NULL) {
    od_sqlbuf_add(b, "\\N");
    return 0;
  }
  if (v->kind != OD_VALUE_TEXT) {
    *why = "the value is not in text form";
    return -1;
  }
  const char *p = v->data;
  size_t n = v->len;
  switch (kind) {
    case CHK_BOOL: od_sqlbuf_add(b, p[0] == 't' ? "1" : "0"); return 0;
    case CHK_INT: od_sqlbuf_addn(b, p, n); return 0;
    case CHK_FLOAT:
      if (!strcmp(p, "NaN")) od_sqlbuf_add(b, "nan");
      else if (!strcmp(p, "Infinity")) od_sqlbuf_add(b, "inf");
      else if (!strcmp(p, "-Infinity")) od_sqlbuf_add(b, "-inf");
      else od_sqlbuf_addn(b, p, n);
      return 0;
    case CHK_DECIMAL:
      if (!strcmp(p, "NaN") || strstr(p, "Infinity")) {
        *why = "NaN and Infinity do not fit a ClickHouse Decimal";
        return -1;
      }
      od_sqlbuf_addn(b, p, n);
      return 0;
    case CHK_DATE: {
      int y;
      unsigned m, d;
      const char *e;
      if (!parse_date(p, &e, &y, &m, &d) || *e) {
        *why = "not an ISO date inside 1970-01-01..2105-12-31 (ClickHouse Date)";
        return -1;
      }
      if (y < 1970 || y > 2105) {
        *why = "outside 1970-01-01..2105-12-31, the range of a ClickHouse Date";
        return -1;
      }
      od_sqlbuf_addn(b, p, n);
      return 0;
    }
    case CHK_DATETIME: {
      long long t;
      if (!parse_timestamp(p, &t)) {
        *why = "not an ISO timestamp inside 1970..2106 (ClickHouse DateTime)";
        return -1;
      }
      if (t < 0 || t > 4294967295LL) {
        *why = "outside 1970-01-01 00:00:00..2106-02-07 06:28:15 UTC, the range of a ClickHouse DateTime";
        return -1;
      }
      int y;
      unsigned m, d;
      civil_from_days(t / 86400, &y, &m, &d);
      long long r = t % 86400;
      /* "YYYY-MM-DD hh:mm:ss", y in 1970..2106 (no snprintf: once per timestamp of a batch) */
      char o[19];
      unsigned f[6] = {(unsigned)y, m, d, (unsigned)(r / 3600), (unsigned)(r / 60 % 60), (unsigned)(r % 60)};
      o[0] = (char)('0' + f[0] / 1000), o[1] = (char)('0' + f[0] / 100 % 10);
      o[2] = (char)('0' + f[0] / 10 % 10), o[3] = (char)('0' + f[0] % 10);
      for (int i = 1; i < 6; i++) {
        o[3 * i + 1] = i == 3 ? ' ' : i < 3 ? '-' : ':';
        o[3 * i + 2] = (char)('0' + f[i] / 10), o[3 * i + 3] = (char)('0' + f[i] % 10);
      }
      od_sqlbuf_addn(b, o, sizeof o);
      return 0;
    }
    case CHK_BYTES: {
      if (n < 2 || p[0] != '\\' || p[1] != 'x' || (n - 2) % 2) {
        *why = "not bytea hex output (bytea_output = hex)";
        return -1;
      }
      for (size_t i = 2; i < n; i += 2) {
        int hi = hexval(p[i]), lo = hexval(p[i + 1]);
        if (hi < 0 || lo < 0) {
          *why = "not bytea hex output";
          return -1;
        }
        char c = (char)(hi << 4 | lo);
        ch_tsv_escape(b, &c, 1);
      }
      return 0;
    }
    default: ch_tsv_escape(b, p, n); return 0;
  }
}
