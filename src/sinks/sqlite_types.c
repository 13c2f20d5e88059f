/* sinks/sqlite_types.c — how PostgreSQL values become SQLite values.
 *
 * Owns: the type mapping (type OID -> INTEGER/REAL/TEXT/BLOB, documented type by type in
 * docs/TYPES.md), the SQL function odsync_signbit, and the conversion of one value's text form
 * into a bound parameter. A float is the double strtod() reads from its text (a float4 '1.1' is
 * the double 1.1), '-0' included (-0.0: kept by the columns the sink creates, which have no
 * declared type; a REAL column of an older table stores it as 0.0); 'NaN' stays TEXT.
 * Decoded bytea bytes go to the sink's reusable blob buffer;
 * every other value is bound in place (SQLITE_STATIC), so the caller's value memory must stay
 * valid until the statement has been stepped and reset — it does, for the length of apply().
 * Never touches: statements' SQL, transactions, the schema.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "sinks/sqlite_internal.h"

/* PostgreSQL built-in type OIDs, named in common/pg_types.h. */
enum {
  PG_BOOL = OD_PGT_BOOL,
  PG_BYTEA = OD_PGT_BYTEA,
  PG_INT8 = OD_PGT_INT8,
  PG_INT2 = OD_PGT_INT2,
  PG_INT4 = OD_PGT_INT4,
  PG_OID = OD_PGT_OID,
  PG_FLOAT4 = OD_PGT_FLOAT4,
  PG_FLOAT8 = OD_PGT_FLOAT8,
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

enum { PG_TEXT = OD_PGT_TEXT, PG_BPCHAR = OD_PGT_BPCHAR, PG_VARCHAR = OD_PGT_VARCHAR, PG_TIME = OD_PGT_TIME,
       PG_TIMESTAMP = OD_PGT_TIMESTAMP, PG_TIMESTAMPTZ = OD_PGT_TIMESTAMPTZ, PG_INTERVAL = OD_PGT_INTERVAL,
       PG_TIMETZ = OD_PGT_TIMETZ, PG_VARBIT = OD_PGT_VARBIT, PG_NUMERIC = OD_PGT_NUMERIC };

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
    /* No declared type = BLOB affinity: values are stored as bound. A declared REAL (or any
     * name with REAL/FLOA/DOUB) has REAL affinity, which stores an integral REAL as an integer
     * and so turns -0.0 into 0.0; NUMERIC affinity would also turn 1.0 into the INTEGER 1. */
    case SQ_REAL: return "";
    case SQ_REAL_AFF: return "REAL";
    case SQ_BLOB: return "BLOB";
    default: return "TEXT";
  }
}

static void signbit_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  sqlite3_result_int(ctx, sqlite3_value_type(argv[0]) == SQLITE_FLOAT && signbit(sqlite3_value_double(argv[0])));
}

int sq_register_functions(sqlite3 *db) {
  return sqlite3_create_function_v2(db, "odsync_signbit", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, signbit_fn,
                                    NULL, NULL, NULL);
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

/* A decimal integer, optionally signed, that fits int64 (what PostgreSQL prints for int2/4/8 and
 * oid): false for anything else. strtoll() without its locale and whitespace handling (strtoll
 * was 4 % of odsync's CPU samples in a snapshot profile, docs/BENCHMARKS.md). */
static bool parse_int64(const char *d, size_t len, int64_t *out) {
  size_t i = 0;
  bool neg = false;
  if (len && (d[0] == '-' || d[0] == '+')) neg = d[i++] == '-';
  if (i == len) return false;
  uint64_t x = 0, max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < len; i++) {
    unsigned dig = (unsigned)(unsigned char)d[i] - '0';
    if (dig > 9 || x > (max - dig) / 10) return false;
    x = x * 10 + dig;
  }
  *out = !neg ? (int64_t)x : x > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)x;
  return true;
}

static int bind_text_value(sq_sink *s, sq_rel *r, sqlite3_stmt *st, int idx, int col,
                           const od_value *v, od_error *err) {
  const char *d = v->data ? v->data : "";
  switch (r->cls[col]) {
    case SQ_INT: {
      int64_t x;
      if (!parse_int64(d, v->len, &x)) return bad_value(s, r, col, v, "an integer", err);
      return sqlite3_bind_int64(st, idx, x);
    }
    case SQ_BOOL:
      if (strcmp(d, "t") == 0 || strcmp(d, "true") == 0) return sqlite3_bind_int(st, idx, 1);
      if (strcmp(d, "f") == 0 || strcmp(d, "false") == 0) return sqlite3_bind_int(st, idx, 0);
      return bad_value(s, r, col, v, "a boolean (t/f)", err);
    case SQ_REAL:
    case SQ_REAL_AFF: {
      /* SQLite stores a NaN REAL as NULL, so NaN keeps its text form. Relies on the C locale
       * (odsync never calls setlocale), as PostgreSQL prints floats with a '.'. */
      if (strcmp(d, "NaN") == 0) return sqlite3_bind_text(st, idx, d, (int)v->len, SQLITE_STATIC);
      if (strcmp(d, "Infinity") == 0) return sqlite3_bind_double(st, idx, INFINITY);
      if (strcmp(d, "-Infinity") == 0) return sqlite3_bind_double(st, idx, -INFINITY);
      char *end;
      errno = 0;
      double x = strtod(d, &end);
      if (v->len == 0 || end != d + v->len || isnan(x)) return bad_value(s, r, col, v, "a float", err);
      /* -0.0 is bound as such: a column without declared type keeps it bit for bit. A REAL
       * column (tables of older odsync versions) stores an integral REAL as an integer, so it
       * holds 0.0 whatever we bind; bind exactly that, so what we bind is what readers see. */
      if (x == 0 && r->cls[col] == SQ_REAL_AFF) x = 0.0;
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

/* Bytes of decoded bytea the tuple's values need: half the digits of the hex form, at most the
 * text length of the escape form. */
static size_t blob_need(const sq_rel *r, const uint16_t *plan, int nplan, const od_tuple *nt, const od_tuple *mt) {
  size_t need = 0;
  for (int i = 0; i < nplan; i++) {
    const od_value *v = &((plan[i] & SQ_FROM_MATCH) ? mt : nt)->values[SQ_COL(plan[i])];
    if (r->cls[SQ_COL(plan[i])] != SQ_BLOB || v->kind != OD_VALUE_TEXT) continue;
    bool hex = v->len >= 2 && v->data[0] == '\\' && v->data[1] == 'x';
    need += hex ? (v->len - 2) / 2 : v->len;
  }
  return need;
}

#define BLOB_KEEP ((size_t)1 << 20) /* a bytea buffer larger than this is sized exactly, not kept */

/* Room for every bytea of one statement, reserved before binding, so that bound pointers into the
 * buffer stay valid (SQLite binds them SQLITE_STATIC until the next reserve). Up to BLOB_KEEP the
 * buffer grows by doubling and is kept; a statement that needs more gets exactly what it needs,
 * released at the next statement that needs less: a large value is not held after it was written. */
static int blob_reserve(sq_sink *s, sq_rel *r, size_t need, od_error *err) {
  s->blob_used = 0;
  bool shrink = s->blob_cap > BLOB_KEEP && need <= BLOB_KEEP;
  if (need <= s->blob_cap && !shrink) return OD_OK;
  size_t cap = 4096;
  if (need > BLOB_KEEP) cap = need;
  else
    while (cap < need) cap *= 2;
  free(s->blob); /* nothing in it is needed: the statement before has run */
  s->blob = malloc(cap);
  s->blob_cap = s->blob ? cap : 0;
  if (!s->blob) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: out of memory for %zu bytes of bytea",
                               s->path, r->target, need);
  return OD_OK;
}

/* Bind ?base+1..?base+nplan by `plan`. */
static int bind_tuple(sq_sink *s, sq_rel *r, sqlite3_stmt *st, int base, const uint16_t *plan, int nplan,
                      const od_tuple *nt, const od_tuple *mt, od_error *err) {
  for (int i = 0; i < nplan; i++) {
    int col = SQ_COL(plan[i]);
    const od_value *v = &((plan[i] & SQ_FROM_MATCH) ? mt : nt)->values[col];
    int rc, idx = base + i + 1;
    switch (v->kind) {
      case OD_VALUE_NULL:
        rc = sqlite3_bind_null(st, idx);
        break;
      case OD_VALUE_TEXT:
        rc = bind_text_value(s, r, st, idx, col, v, err);
        if (rc < 0) return rc; /* od status from bad_value; SQLite codes are >= 0 */
        break;
      case OD_VALUE_BINARY:
        rc = v->len ? sqlite3_bind_blob(st, idx, v->data, (int)v->len, SQLITE_STATIC)
                    : sqlite3_bind_zeroblob(st, idx, 0);
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

int sq_bind(sq_sink *s, sq_rel *r, sqlite3_stmt *st, const uint16_t *plan, int nplan,
            const od_tuple *nt, const od_tuple *mt, od_error *err) {
  int rc = blob_reserve(s, r, blob_need(r, plan, nplan, nt, mt), err);
  return rc ? rc : bind_tuple(s, r, st, 0, plan, nplan, nt, mt, err);
}

int sq_bind_rows(sq_sink *s, sq_rel *r, sqlite3_stmt *st, const od_change *changes, int n, od_error *err) {
  int nc = r->rel->ncolumns, rc;
  size_t need = 0;
  for (int k = 0; k < n; k++) need += blob_need(r, r->ident_plan, nc, &changes[k].newtup, &changes[k].newtup);
  if ((rc = blob_reserve(s, r, need, err))) return rc;
  for (int k = 0; k < n && rc == OD_OK; k++)
    rc = bind_tuple(s, r, st, k * nc, r->ident_plan, nc, &changes[k].newtup, &changes[k].newtup, err);
  return rc;
}
