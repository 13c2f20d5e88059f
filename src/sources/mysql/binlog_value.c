/* sources/mysql/binlog_value.c — one value of a row image as text.
 *
 * Owns: the storage format of every column type in a row image (integers, DECIMAL's binary
 * format, FLOAT/DOUBLE, the temporal types old and new, strings in their character set, binary
 * strings, ENUM, SET, BIT) and the text form each becomes (docs/TYPES.md, "MariaDB"): the form
 * PostgreSQL's input of the mapped type accepts, so every sink reads it like a PostgreSQL value.
 * Values are appended, NUL-terminated, to an my_valbuf.
 * Never touches: row bitmaps (binlog_rows.c), type OIDs (binlog_types.c).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sources/mysql/binlog.h"
#include "sources/mysql/binlog_bytes.h"

void my_valbuf_free(my_valbuf *vb) {
  free(vb->buf);
  free(vb->vals);
  free(vb->offs);
  memset(vb, 0, sizeof *vb);
}

static int reserve(my_valbuf *vb, size_t n) {
  if (vb->len + n <= vb->cap) return 0;
  size_t cap = vb->cap ? vb->cap : 256;
  while (cap < vb->len + n) cap *= 2;
  char *b = realloc(vb->buf, cap);
  if (!b) return -1;
  vb->buf = b;
  vb->cap = cap;
  return 0;
}

static int put(my_valbuf *vb, const void *p, size_t n) {
  if (reserve(vb, n + 1) != 0) return -1;
  memcpy(vb->buf + vb->len, p, n);
  vb->len += n;
  return 0;
}

/* The decimal digits of v, zero-padded to at least `width` (≤ 20), at out (≥ 20 bytes); returns
 * their count. Numbers are formatted here, not with printf: formatting was a fifth of the source's
 * CPU time (bench/mysql_to_sqlite.sh under perf). */
static size_t fmt_u64(char *out, uint64_t v, unsigned width) {
  static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                              "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                              "8081828384858687888990919293949596979899";
  char tmp[20];
  size_t n = sizeof tmp; /* digits are written backwards from the end of tmp, two at a time */
  while (v >= 100) {
    unsigned r = (unsigned)(v % 100);
    v /= 100;
    tmp[--n] = pairs[2 * r + 1];
    tmp[--n] = pairs[2 * r];
  }
  if (v >= 10) {
    tmp[--n] = pairs[2 * v + 1];
    tmp[--n] = pairs[2 * v];
  } else {
    tmp[--n] = (char)('0' + v);
  }
  while (sizeof tmp - n < width && n > 0) tmp[--n] = '0';
  memcpy(out, tmp + n, sizeof tmp - n);
  return sizeof tmp - n;
}

/* Append v (zero-padded to width), preceded by `lead` when it is not NUL. */
static int put_u(my_valbuf *vb, char lead, uint64_t v, unsigned width) {
  if (reserve(vb, 22) != 0) return -1;
  char *o = vb->buf + vb->len;
  if (lead) *o++ = lead;
  o += fmt_u64(o, v, width);
  vb->len = (size_t)(o - vb->buf);
  return 0;
}

static int put_i64(my_valbuf *vb, int64_t v) {
  return v < 0 ? put_u(vb, '-', (uint64_t)0 - (uint64_t)v, 0) : put_u(vb, 0, (uint64_t)v, 0);
}

/* [-]hh:mm:ss (hours at least two digits). */
static int put_hms(my_valbuf *vb, bool neg, unsigned h, unsigned mi, unsigned s) {
  return put_u(vb, neg ? '-' : 0, h, 2) || put_u(vb, ':', mi, 2) || put_u(vb, ':', s, 2) ? -1 : 0;
}

static int put_ymd(my_valbuf *vb, unsigned y, unsigned mo, unsigned d) {
  return put_u(vb, 0, y, 4) || put_u(vb, '-', mo, 2) || put_u(vb, '-', d, 2) ? -1 : 0;
}

/* MariaDB's latin1 is Windows-1252 with 0x81, 0x8D, 0x8F, 0x90, 0x9D as the C1 controls. */
static const uint16_t cp1252_80[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

static int put_latin1(my_valbuf *vb, const uint8_t *s, size_t n) {
  if (reserve(vb, n * 3 + 1) != 0) return -1;
  char *o = vb->buf + vb->len;
  for (size_t i = 0; i < n; i++) {
    unsigned u = s[i] >= 0x80 && s[i] < 0xA0 ? cp1252_80[s[i] - 0x80] : s[i];
    if (u < 0x80) {
      *o++ = (char)u;
    } else if (u < 0x800) {
      *o++ = (char)(0xC0 | u >> 6);
      *o++ = (char)(0x80 | (u & 0x3F));
    } else {
      *o++ = (char)(0xE0 | u >> 12);
      *o++ = (char)(0x80 | (u >> 6 & 0x3F));
      *o++ = (char)(0x80 | (u & 0x3F));
    }
  }
  vb->len = (size_t)(o - vb->buf);
  return 0;
}

/* bytea's hex text form: \x0a0b..., padded with zero bytes up to pad_to. */
static int put_hex(my_valbuf *vb, const uint8_t *s, size_t n, size_t pad_to) {
  static const char hx[] = "0123456789abcdef";
  size_t total = n > pad_to ? n : pad_to;
  if (reserve(vb, 2 + total * 2 + 1) != 0) return -1;
  char *o = vb->buf + vb->len;
  *o++ = '\\';
  *o++ = 'x';
  for (size_t i = 0; i < total; i++) {
    uint8_t b = i < n ? s[i] : 0;
    *o++ = hx[b >> 4];
    *o++ = hx[b & 15];
  }
  vb->len = (size_t)(o - vb->buf);
  return 0;
}

static int put_string(my_valbuf *vb, const my_table *t, const my_column *c, const uint8_t *s, size_t n,
                      size_t pad_to, od_error *err) {
  switch (c->charset) {
    case MY_CS_BINARY: return put_hex(vb, s, n, pad_to);
    case MY_CS_LATIN1: return put_latin1(vb, s, n);
    case MY_CS_UTF8: case MY_CS_ASCII: return put(vb, s, n);
    default:
      return OD_FAIL(err, OD_EUNSUPPORTED,
                     "table %s.%s: column %s: character set not supported (odsync reads utf8mb4, utf8mb3, "
                     "latin1, ascii and binary)",
                     t->db, t->name, c->name ? c->name : "?");
  }
}

/* Shortest text that reads back as the same float/double (PostgreSQL prints them the same way). */
int my_format_float(double x, bool single, char *buf, size_t size) {
  if (x == 0) return snprintf(buf, size, "%s", signbit(x) ? "-0" : "0");
  int n = 0;
  for (int prec = 1; prec <= 17; prec++) {
    n = snprintf(buf, size, "%.*g", prec, x);
    if (single ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x) break;
  }
  return n;
}

static int put_float(my_valbuf *vb, double x, bool single) {
  char tmp[40];
  int n = my_format_float(x, single, tmp, sizeof tmp);
  return put(vb, tmp, (size_t)n);
}

/* DECIMAL's binary format: groups of 9 digits in 4 bytes, big-endian; a leading partial group of
 * the integer part and a trailing one of the fraction in as few bytes as their digits need; the
 * sign in the first bit (1 = positive), negative numbers with every bit inverted. */
static const int dig2bytes[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

static int decimal_size(int precision, int scale) {
  int intg = precision - scale;
  return intg / 9 * 4 + dig2bytes[intg % 9] + scale / 9 * 4 + dig2bytes[scale % 9];
}

static int put_decimal(my_valbuf *vb, const my_column *c, const uint8_t *src, int size) {
  uint8_t b[40];
  memcpy(b, src, (size_t)size);
  bool neg = !(b[0] & 0x80);
  b[0] ^= 0x80;
  if (neg)
    for (int i = 0; i < size; i++) b[i] ^= 0xFF;
  int intg = c->precision - c->scale, scale = c->scale;
  char digits[160];
  size_t nd = 0;
  const uint8_t *p = b;
  int lead = intg % 9, n = dig2bytes[lead];
  if (n) {
    nd += fmt_u64(digits + nd, my_ube(p, n), (unsigned)lead);
    p += n;
  }
  for (int g = 0; g < intg / 9; g++, p += 4)
    nd += fmt_u64(digits + nd, my_ube(p, 4), 9);
  size_t int_digits = nd;
  for (int g = 0; g < scale / 9; g++, p += 4)
    nd += fmt_u64(digits + nd, my_ube(p, 4), 9);
  int trail = scale % 9;
  if (trail) nd += fmt_u64(digits + nd, my_ube(p, dig2bytes[trail]), (unsigned)trail);
  /* The integer part without its leading zeros, "0" when it has none left. */
  size_t s = 0;
  while (s < int_digits && digits[s] == '0') s++;
  bool zero = true;
  for (size_t i = 0; i < nd; i++) zero &= digits[i] == '0';
  char out[170];
  size_t o = 0;
  if (neg && !zero) out[o++] = '-';
  if (s == int_digits) out[o++] = '0';
  memcpy(out + o, digits + s, int_digits - s);
  o += int_digits - s;
  if (scale > 0) {
    out[o++] = '.';
    memcpy(out + o, digits + int_digits, nd - int_digits);
    o += nd - int_digits;
  }
  return put(vb, out, o);
}

static int put_frac(my_valbuf *vb, unsigned fsp, uint64_t usec) {
  if (fsp == 0) return 0;
  static const unsigned div[7] = {1000000, 100000, 10000, 1000, 100, 10, 1};
  return put_u(vb, '.', usec / div[fsp], fsp);
}

/* Fractional-seconds bytes of TIME2/DATETIME2/TIMESTAMP2 for fsp digits. */
static int frac_bytes(unsigned fsp) { return (int)(fsp + 1) / 2; }

static int put_time2(my_valbuf *vb, const uint8_t *p, unsigned fsp) {
  int64_t intpart = (int64_t)my_ube(p, 3) - 0x800000;
  int64_t packed;
  switch (frac_bytes(fsp)) {
    case 0: packed = intpart * ((int64_t)1 << 24); break;
    case 1: {
      int64_t frac = p[3];
      if (intpart < 0 && frac) { intpart++; frac -= 0x100; }
      packed = intpart * ((int64_t)1 << 24) + frac * 10000;
      break;
    }
    case 2: {
      int64_t frac = (int64_t)my_ube(p + 3, 2);
      if (intpart < 0 && frac) { intpart++; frac -= 0x10000; }
      packed = intpart * ((int64_t)1 << 24) + frac * 100;
      break;
    }
    default: packed = (int64_t)my_ube(p, 6) - INT64_C(0x800000000000); break;
  }
  bool neg = packed < 0;
  uint64_t v = neg ? (uint64_t)-packed : (uint64_t)packed;
  uint64_t hms = v >> 24, usec = v & 0xFFFFFF;
  unsigned hour = (unsigned)(hms >> 12) & 0x3FF, minute = (unsigned)(hms >> 6) & 0x3F, second = (unsigned)hms & 0x3F;
  if (put_hms(vb, neg, hour, minute, second) != 0) return -1;
  return put_frac(vb, fsp, usec);
}

static int put_datetime_parts(my_valbuf *vb, unsigned y, unsigned mo, unsigned d, unsigned h, unsigned mi,
                              unsigned s, unsigned fsp, uint64_t usec) {
  if (put_ymd(vb, y, mo, d) != 0 || put(vb, " ", 1) != 0 || put_hms(vb, false, h, mi, s) != 0) return -1;
  return put_frac(vb, fsp, usec);
}

static int put_datetime2(my_valbuf *vb, const uint8_t *p, unsigned fsp) {
  int64_t intpart = (int64_t)my_ube(p, 5) - INT64_C(0x8000000000);
  int64_t frac = 0;
  switch (frac_bytes(fsp)) {
    case 1: frac = (int8_t)p[5] * 10000; break;
    case 2: frac = (int16_t)my_ube(p + 5, 2) * 100; break;
    case 3: frac = ((int32_t)(my_ube(p + 5, 3) << 8)) >> 8; break;
    default: break;
  }
  int64_t packed = intpart * ((int64_t)1 << 24) + frac;
  if (packed < 0) packed = -packed; /* DATETIME is never negative; keep the digits sane */
  uint64_t ymdhms = (uint64_t)packed >> 24, usec = (uint64_t)packed & 0xFFFFFF;
  uint64_t ymd = ymdhms >> 17, ym = ymd >> 5, hms = ymdhms & 0x1FFFF;
  return put_datetime_parts(vb, (unsigned)(ym / 13), (unsigned)(ym % 13), (unsigned)(ymd & 31),
                            (unsigned)(hms >> 12), (unsigned)(hms >> 6 & 63), (unsigned)(hms & 63), fsp, usec);
}

/* TIMESTAMP: seconds since the epoch, written in UTC with the "+00" PostgreSQL's timestamptz
 * prints; 0 is the zero timestamp, kept as MariaDB shows it. */
static int put_timestamp(my_valbuf *vb, uint64_t secs, uint64_t usec, unsigned fsp) {
  if (secs == 0 && usec == 0) {
    if (put(vb, "0000-00-00 00:00:00", 19) != 0) return -1;
    return put_frac(vb, fsp, 0);
  }
  time_t tt = (time_t)secs;
  struct tm tm;
  if (!gmtime_r(&tt, &tm)) return -1;
  if (put_datetime_parts(vb, (unsigned)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday,
                         (unsigned)tm.tm_hour, (unsigned)tm.tm_min, (unsigned)tm.tm_sec, fsp, usec) != 0)
    return -1;
  return put(vb, "+00", 3);
}

#define NEED(n)                                             \
  do {                                                      \
    if ((size_t)(end - q) < (size_t)(n)) goto truncated;    \
  } while (0)

int my_value_decode(const my_table *t, const my_column *c, const uint8_t **pp, const uint8_t *end,
                    my_valbuf *vb, size_t *off, uint32_t *len, od_error *err) {
  const uint8_t *q = *pp;
  *off = vb->len;
  int rc = 0;
  switch (c->type) {
    case MY_T_TINY: case MY_T_SHORT: case MY_T_INT24: case MY_T_LONG: case MY_T_LONGLONG: {
      int n = c->type == MY_T_TINY ? 1 : c->type == MY_T_SHORT ? 2 : c->type == MY_T_INT24 ? 3
              : c->type == MY_T_LONG ? 4 : 8;
      NEED(n);
      uint64_t v = my_ule(q, n);
      q += n;
      if (c->is_unsigned) {
        rc = put_u(vb, 0, v, 0);
      } else {
        if (n < 8 && (v >> (n * 8 - 1) & 1)) v |= ~(uint64_t)0 << (n * 8);
        rc = put_i64(vb, (int64_t)v);
      }
      break;
    }
    case MY_T_YEAR:
      NEED(1);
      rc = put_u(vb, 0, q[0] ? 1900u + q[0] : 0u, 0);
      q += 1;
      break;
    case MY_T_FLOAT: {
      NEED(4);
      float f;
      uint32_t u = my_u32(q);
      memcpy(&f, &u, 4);
      q += 4;
      rc = put_float(vb, f, true);
      break;
    }
    case MY_T_DOUBLE: {
      NEED(8);
      double d;
      uint64_t u = my_u64(q);
      memcpy(&d, &u, 8);
      q += 8;
      rc = put_float(vb, d, false);
      break;
    }
    case MY_T_NEWDECIMAL: {
      if (c->precision == 0 || c->precision > 65 || c->scale > 38 || c->scale > c->precision)
        return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: column %s: DECIMAL(%u,%u) is out of range", t->db,
                       t->name, c->name ? c->name : "?", c->precision, c->scale);
      int n = decimal_size(c->precision, c->scale);
      NEED(n);
      rc = put_decimal(vb, c, q, n);
      q += n;
      break;
    }
    case MY_T_DATE: case MY_T_NEWDATE: {
      NEED(3);
      uint32_t v = my_u24(q);
      q += 3;
      rc = put_ymd(vb, v >> 9, v >> 5 & 15, v & 31);
      break;
    }
    case MY_T_TIME: { /* old format: HHMMSS as a signed 3-byte integer */
      NEED(3);
      int32_t v = (int32_t)(my_u24(q) << 8) >> 8;
      q += 3;
      unsigned a = (unsigned)(v < 0 ? -v : v);
      rc = put_hms(vb, v < 0, a / 10000, a / 100 % 100, a % 100);
      break;
    }
    case MY_T_DATETIME: { /* old format: YYYYMMDDhhmmss as an 8-byte integer */
      NEED(8);
      uint64_t v = my_u64(q);
      q += 8;
      uint64_t d = v / 1000000, tm = v % 1000000;
      rc = put_datetime_parts(vb, (unsigned)(d / 10000), (unsigned)(d / 100 % 100), (unsigned)(d % 100),
                              (unsigned)(tm / 10000), (unsigned)(tm / 100 % 100), (unsigned)(tm % 100), 0, 0);
      break;
    }
    case MY_T_TIMESTAMP:
      NEED(4);
      rc = put_timestamp(vb, my_u32(q), 0, 0);
      q += 4;
      break;
    case MY_T_TIME2:
      if (c->length > 6) goto badmeta;
      NEED(3 + frac_bytes(c->length));
      rc = put_time2(vb, q, c->length);
      q += 3 + frac_bytes(c->length);
      break;
    case MY_T_DATETIME2:
      if (c->length > 6) goto badmeta;
      NEED(5 + frac_bytes(c->length));
      rc = put_datetime2(vb, q, c->length);
      q += 5 + frac_bytes(c->length);
      break;
    case MY_T_TIMESTAMP2: {
      if (c->length > 6) goto badmeta;
      int fb = frac_bytes(c->length);
      NEED(4 + fb);
      uint64_t secs = my_ube(q, 4), usec = 0;
      if (fb == 1) usec = q[4] * 10000u;
      else if (fb == 2) usec = my_ube(q + 4, 2) * 100u;
      else if (fb == 3) usec = my_ube(q + 4, 3);
      q += 4 + fb;
      rc = put_timestamp(vb, secs, usec, c->length);
      break;
    }
    case MY_T_VARCHAR: case MY_T_VAR_STRING: {
      int lb = c->length < 256 ? 1 : 2;
      NEED(lb);
      size_t n = lb == 1 ? q[0] : my_u16(q);
      q += lb;
      NEED(n);
      rc = put_string(vb, t, c, q, n, 0, err);
      if (rc < 0 && rc != -1) return rc;
      q += n;
      break;
    }
    case MY_T_STRING: case MY_T_ENUM: case MY_T_SET:
      if (c->real_type == MY_T_ENUM) {
        int n = c->length == 2 ? 2 : 1;
        NEED(n);
        uint64_t idx = my_ule(q, n);
        q += n;
        if (idx == 0) break; /* the empty string MariaDB stores for an invalid value */
        if ((int64_t)idx > c->nlabels)
          return OD_FAIL(err, OD_ESCHEMA, "table %s.%s: column %s: ENUM index %llu but %d labels known",
                         t->db, t->name, c->name ? c->name : "?", (unsigned long long)idx, c->nlabels);
        rc = put_string(vb, t, c, (const uint8_t *)c->labels[idx - 1], strlen(c->labels[idx - 1]), 0, err);
        if (rc < 0 && rc != -1) return rc;
      } else if (c->real_type == MY_T_SET) {
        int n = (int)c->length;
        if (n < 1 || n > 8) goto badmeta;
        NEED(n);
        uint64_t bits = my_ule(q, n);
        q += n;
        bool first = true;
        for (int k = 0; k < 64 && bits; k++, bits >>= 1) {
          if (!(bits & 1)) continue;
          if (k >= c->nlabels)
            return OD_FAIL(err, OD_ESCHEMA, "table %s.%s: column %s: SET member %d but %d labels known",
                           t->db, t->name, c->name ? c->name : "?", k + 1, c->nlabels);
          if (!first && put(vb, ",", 1) != 0) return OD_FAIL(err, OD_ENOMEM, "out of memory");
          first = false;
          rc = put_string(vb, t, c, (const uint8_t *)c->labels[k], strlen(c->labels[k]), 0, err);
          if (rc < 0 && rc != -1) return rc;
        }
      } else {
        int lb = c->length < 256 ? 1 : 2;
        NEED(lb);
        size_t n = lb == 1 ? q[0] : my_u16(q);
        q += lb;
        NEED(n);
        /* BINARY(n) is stored without its trailing zero bytes: put them back. */
        rc = put_string(vb, t, c, q, n, c->charset == MY_CS_BINARY ? c->length : 0, err);
        if (rc < 0 && rc != -1) return rc;
        q += n;
      }
      break;
    case MY_T_BLOB: case MY_T_TINY_BLOB: case MY_T_MEDIUM_BLOB: case MY_T_LONG_BLOB: case MY_T_GEOMETRY: {
      int lb = (int)c->length;
      if (lb < 1 || lb > 4) goto badmeta;
      NEED(lb);
      size_t n = (size_t)my_ule(q, lb);
      q += lb;
      NEED(n);
      if (c->type == MY_T_GEOMETRY) rc = put_hex(vb, q, n, 0);
      else {
        rc = put_string(vb, t, c, q, n, 0, err);
        if (rc < 0 && rc != -1) return rc;
      }
      q += n;
      break;
    }
    case MY_T_BIT: {
      unsigned bits = c->length, n = (bits + 7) / 8;
      NEED(n);
      uint64_t v = my_ube(q, (int)n);
      q += n;
      if (reserve(vb, bits + 1) != 0) return OD_FAIL(err, OD_ENOMEM, "out of memory");
      for (unsigned k = 0; k < bits; k++) vb->buf[vb->len++] = (char)('0' + (v >> (bits - 1 - k) & 1));
      break;
    }
    default:
      return OD_FAIL(err, OD_EUNSUPPORTED,
                     "table %s.%s: column %s: binlog column type %u is not supported%s", t->db, t->name,
                     c->name ? c->name : "?", c->type,
                     c->type == MY_T_JSON ? " (MySQL's binary JSON; MariaDB's JSON is text and works)" : "");
  }
  if (rc != 0 || reserve(vb, 1) != 0) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  vb->buf[vb->len] = '\0';
  *len = (uint32_t)(vb->len - *off);
  vb->len++;
  *pp = q;
  return OD_OK;
truncated:
  return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: column %s: row image ends inside the value", t->db, t->name,
                 c->name ? c->name : "?");
badmeta:
  return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: column %s: bad table map metadata %u for type %u", t->db,
                 t->name, c->name ? c->name : "?", c->length, c->type);
}
