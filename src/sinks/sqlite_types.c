/* sinks/sqlite_types.c — how PostgreSQL values become SQLite values.
 *
 * Owns: the type mapping (type OID -> INTEGER/REAL/TEXT/BLOB, documented type by type in
 * docs/TYPES.md) and the conversion of one value's text form into a bound parameter. A float is
 * the double strtod() reads from its text (a float4 '1.1' is the double 1.1); 'NaN' stays TEXT;
 * '-0' is stored as 0.0. Decoded bytea bytes go to the sink's reusable blob buffer;
 * every other value is bound in place (SQLITE_STATIC), so the caller's value memory must stay
 * valid until the statement has been stepped and reset — it does, for the length of apply().
 * Never touches: statements' SQL, transactions, the schema.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/sqlite_internal.h"

/* PostgreSQL built-in type OIDs (pg_type.dat). */
enum {
  PG_BOOL = 16,
  PG_BYTEA = 17,
  PG_INT8 = 20,
  PG_INT2 = 21,
  PG_INT4 = 23,
  PG_OID = 26,
  PG_FLOAT4 = 700,
  PG_FLOAT8 = 701,
};

uint8_t sq_class_of(uint32_t oid) {
  switch (oid) {
    case PG_INT2: case PG_INT4: case PG_INT8: case PG_OID: return SQ_INT;
    case PG_BOOL: return SQ_BOOL;
    case PG_FLOAT4: case PG_FLOAT8: return SQ_REAL;
    case PG_BYTEA: return SQ_BLOB;
    default: return SQ_TEXT;
  }
}

enum { PG_TEXT = 25, PG_BPCHAR = 1042, PG_VARCHAR = 1043, PG_TIME = 1083, PG_TIMESTAMP = 1114,
       PG_TIMESTAMPTZ = 1184, PG_INTERVAL = 1186, PG_TIMETZ = 1266, PG_VARBIT = 1562, PG_NUMERIC = 1700 };

/* typmod -1 means unconstrained: widening to it is safe, narrowing from it is not. */
static bool mod_widens(int32_t from, int32_t to) { return to < 0 || (from >= 0 && to >= from); }

bool sq_type_change_safe(uint32_t oo, int32_t om, uint32_t no, int32_t nm) {
  if (oo == no && om == nm) return true;
  bool oint = oo == PG_INT2 || oo == PG_INT4 || oo == PG_INT8, nint = no == PG_INT2 || no == PG_INT4 || no == PG_INT8;
  if (oint || nint) return oint && nint; /* a narrowing PostgreSQL accepted keeps every value */
  if ((oo == PG_VARCHAR || oo == PG_TEXT) && no == PG_TEXT) return true;
  if ((oo == PG_VARCHAR || oo == PG_TEXT) && no == PG_VARCHAR)
    return mod_widens(oo == PG_TEXT ? -1 : om, nm); /* a cast to varchar(n) may cut values */
  if (oo != no) return false;
  switch (oo) {
    case PG_NUMERIC: /* typmod = (precision << 16 | scale) + 4: the scale decides the text form */
      if (nm < 0) return true;
      return om >= 0 && ((om - 4) & 0xffff) == ((nm - 4) & 0xffff) && nm >= om;
    case PG_TIME: case PG_TIMETZ: case PG_TIMESTAMP: case PG_TIMESTAMPTZ: case PG_INTERVAL: case PG_VARBIT:
      return mod_widens(om, nm);
    default:
      return false; /* bpchar pads to its length; anything else: not known to be safe */
  }
}

const char *sq_class_decl(uint8_t cls) {
  switch (cls) {
    case SQ_INT: case SQ_BOOL: return "INTEGER";
    case SQ_REAL: return "REAL";
    case SQ_BLOB: return "BLOB";
    default: return "TEXT";
  }
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode bytea text output into out (room for len bytes). Hex form "\x0a0b" (the default) or the
 * escape form (bytea_output = escape: "\\" and "\ooo" octal escapes). -1 when malformed. */
static long decode_bytea(const char *in, size_t len, unsigned char *out) {
  const unsigned char *p = (const unsigned char *)in, *end = p + len;
  long n = 0;
  if (len >= 2 && p[0] == '\\' && p[1] == 'x') {
    for (p += 2; p < end; p += 2) {
      if (end - p < 2) return -1;
      int hi = hexval(p[0]), lo = hexval(p[1]);
      if (hi < 0 || lo < 0) return -1;
      out[n++] = (unsigned char)(hi << 4 | lo);
    }
    return n;
  }
  while (p < end) {
    if (*p != '\\') {
      out[n++] = *p++;
    } else if (end - p >= 2 && p[1] == '\\') {
      out[n++] = '\\';
      p += 2;
    } else if (end - p >= 4 && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
               p[3] >= '0' && p[3] <= '7') {
      out[n++] = (unsigned char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
      p += 4;
    } else {
      return -1;
    }
  }
  return n;
}

static int bad_value(sq_sink *s, sq_rel *r, int col, const od_value *v, const char *expected,
                     od_error *err) {
  return OD_FAIL(err, OD_ESINK,
                 "sqlite sink %s: table %s: column %s.%s: cannot store '%.*s%s' as %s "
                 "(PostgreSQL type oid %u)",
                 s->path, r->target, r->target, r->rel->columns[col].name,
                 (int)(v->len > 64 ? 64 : v->len), v->data, v->len > 64 ? "..." : "", expected,
                 r->rel->columns[col].type_oid);
}

static int bind_text_value(sq_sink *s, sq_rel *r, sqlite3_stmt *st, int idx, int col,
                           const od_value *v, od_error *err) {
  const char *d = v->data ? v->data : "";
  switch (r->cls[col]) {
    case SQ_INT: {
      char *end;
      errno = 0;
      long long x = strtoll(d, &end, 10);
      if (v->len == 0 || errno != 0 || end != d + v->len) return bad_value(s, r, col, v, "an integer", err);
      return sqlite3_bind_int64(st, idx, x);
    }
    case SQ_BOOL:
      if (strcmp(d, "t") == 0 || strcmp(d, "true") == 0) return sqlite3_bind_int(st, idx, 1);
      if (strcmp(d, "f") == 0 || strcmp(d, "false") == 0) return sqlite3_bind_int(st, idx, 0);
      return bad_value(s, r, col, v, "a boolean (t/f)", err);
    case SQ_REAL: {
      /* SQLite stores a NaN REAL as NULL, so NaN keeps its text form. Relies on the C locale
       * (odsync never calls setlocale), as PostgreSQL prints floats with a '.'. */
      if (strcmp(d, "NaN") == 0) return sqlite3_bind_text(st, idx, d, (int)v->len, SQLITE_STATIC);
      if (strcmp(d, "Infinity") == 0) return sqlite3_bind_double(st, idx, INFINITY);
      if (strcmp(d, "-Infinity") == 0) return sqlite3_bind_double(st, idx, -INFINITY);
      char *end;
      errno = 0;
      double x = strtod(d, &end);
      if (v->len == 0 || end != d + v->len || isnan(x)) return bad_value(s, r, col, v, "a float", err);
      /* -0 becomes +0.0 (docs/TYPES.md): a REAL column cannot keep the sign of zero (SQLite stores
       * an integral REAL as an integer, and REAL affinity turns a '-0' text into 0.0 as well), so
       * store what every reader will see, whatever the affinity of a pre-existing column. */
      if (x == 0) x = 0.0;
      return sqlite3_bind_double(st, idx, x);
    }
    case SQ_BLOB: {
      unsigned char *out = s->blob + s->blob_used; /* room reserved by sq_bind */
      long n = decode_bytea(d, v->len, out);
      if (n < 0) return bad_value(s, r, col, v, "bytea (\\x hex form)", err);
      if (n == 0) return sqlite3_bind_zeroblob(st, idx, 0); /* empty, not NULL */
      s->blob_used += (size_t)n;
      return sqlite3_bind_blob(st, idx, out, (int)n, SQLITE_STATIC);
    }
    default:
      return sqlite3_bind_text(st, idx, d, (int)v->len, SQLITE_STATIC);
  }
}

int sq_bind(sq_sink *s, sq_rel *r, sqlite3_stmt *st, const uint16_t *plan, int nplan,
            const od_tuple *nt, const od_tuple *mt, od_error *err) {
  /* Reserve room for every bytea of this statement first, so earlier bound pointers stay valid. */
  size_t need = 0;
  for (int i = 0; i < nplan; i++) {
    const od_value *v = &((plan[i] & SQ_FROM_MATCH) ? mt : nt)->values[SQ_COL(plan[i])];
    if (r->cls[SQ_COL(plan[i])] == SQ_BLOB && v->kind == OD_VALUE_TEXT) need += v->len;
  }
  if (need > s->blob_cap) {
    size_t cap = s->blob_cap ? s->blob_cap : 4096;
    while (cap < need) cap *= 2;
    unsigned char *p = realloc(s->blob, cap);
    if (!p) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: out of memory for a %zu-byte bytea",
                           s->path, r->target, need);
    s->blob = p;
    s->blob_cap = cap;
  }
  s->blob_used = 0;

  for (int i = 0; i < nplan; i++) {
    int col = SQ_COL(plan[i]);
    const od_value *v = &((plan[i] & SQ_FROM_MATCH) ? mt : nt)->values[col];
    int rc;
    switch (v->kind) {
      case OD_VALUE_NULL:
        rc = sqlite3_bind_null(st, i + 1);
        break;
      case OD_VALUE_TEXT:
        rc = bind_text_value(s, r, st, i + 1, col, v, err);
        if (rc < 0) return rc; /* od status from bad_value; SQLite codes are >= 0 */
        break;
      case OD_VALUE_BINARY:
        rc = v->len ? sqlite3_bind_blob(st, i + 1, v->data, (int)v->len, SQLITE_STATIC)
                    : sqlite3_bind_zeroblob(st, i + 1, 0);
        break;
      case OD_VALUE_UNCHANGED:
        return OD_FAIL(err, OD_ESINK,
                       "sqlite sink %s: table %s: column %s.%s: value is unchanged (TOAST) where "
                       "the sink needs it (%s)",
                       s->path, r->target, r->target, r->rel->columns[col].name,
                       (plan[i] & SQ_FROM_MATCH) ? "to find the row" : "to write the row");
      default:
        return OD_FAIL(err, OD_ESINK, "sqlite sink %s: table %s: column %s.%s: unknown value kind %d",
                       s->path, r->target, r->target, r->rel->columns[col].name, v->kind);
    }
    if (rc != SQLITE_OK) {
      char what[160];
      snprintf(what, sizeof what, "binding column %s", r->rel->columns[col].name);
      return sq_fail(s, r->target, what, rc, err);
    }
  }
  return OD_OK;
}
