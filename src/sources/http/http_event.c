/* sources/http/http_event.c — validation of posted change events against the declared tables, and
 * their normalized form (what the journal stores and the reader turns into od_change).
 *
 * Input event: {"table": "schema.name", "op": "insert"|"update"|"delete", "key": {...},
 * "row": {...}, "event_time": RFC 3339, "correlation_id": "..."}. Normalized event (JSON):
 * {"t": table, "o": "I"|"U"|"D", "c": correlation id, "h": content hash, "e": event time (absent if none),
 *  "k": {key column: text} (update/delete: the row's key before the change),
 *  "n": {column: text|null} (insert: every column; update: the columns sent, key included)}
 * with every value in PostgreSQL's text output form of its declared type.
 * A batch is all or nothing: the first bad event fails it with the JSON path of the bad field.
 *
 * Ownership: hs_batch owns its json (jansson) and arrays; hs_event_change's tuples live in the
 * caller's scratch. Never touches: files, the network, the id index.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sources/http/http_internal.h"

#define CID_MAX 128

uint64_t hs_hash64(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* Set err to "<path>: <msg>" and keep the path. */
static int bad(od_error *err, char **pathout, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(od_error *err, char **pathout, const char *path, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (pathout && !*pathout) *pathout = strdup(path);
  return OD_FAIL(err, OD_EINVAL, "%s: %s", path, msg);
}

static const char *jtype(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
  }
}

/* Shortest text that reads back as the same double. */
static void fmt_double(double d, char *buf, size_t size) {
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) return;
  }
}

static bool numeric_text_ok(const char *s, int precision, int scale, char *why, size_t wsize) {
  const char *p = s;
  if (*p == '-' || *p == '+') p++;
  int ip = 0, fp = 0;
  bool lead = true;
  while (isdigit((unsigned char)*p)) {
    if (!(lead && *p == '0')) {
      ip++;
      lead = false;
    }
    p++;
  }
  const char *intend = p;
  if (*p == '.') {
    p++;
    while (isdigit((unsigned char)*p)) p++, fp++;
  }
  if ((intend == s || (intend == s + 1 && (s[0] == '-' || s[0] == '+'))) && fp == 0) {
    snprintf(why, wsize, "'%.40s' is not a decimal number", s);
    return false;
  }
  if (*p == 'e' || *p == 'E') {
    snprintf(why, wsize, "'%.40s': exponents are not taken for numeric; write the digits", s);
    return false;
  }
  if (*p) {
    snprintf(why, wsize, "'%.40s' is not a decimal number", s);
    return false;
  }
  if (precision && ip > precision - scale) {
    snprintf(why, wsize, "%.40s has %d digits before the point; numeric(%d,%d) takes at most %d", s, ip, precision,
             scale, precision - scale);
    return false;
  }
  if (precision && fp > scale) {
    snprintf(why, wsize, "%.40s has %d digits after the point; numeric(%d,%d) takes at most %d (round it)", s, fp,
             precision, scale, scale);
    return false;
  }
  return true;
}

static bool two(const char *s, int *v) {
  if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1])) return false;
  *v = (s[0] - '0') * 10 + (s[1] - '0');
  return true;
}

static int days_in(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return d[m - 1];
}

static bool parse_date(const char *s, int *y, int *m, int *d) {
  int c1, c2;
  if (strlen(s) < 10 || s[4] != '-' || s[7] != '-') return false;
  if (!two(s, &c1) || !two(s + 2, &c2) || !two(s + 5, m) || !two(s + 8, d)) return false;
  *y = c1 * 100 + c2;
  return *y >= 1 && *m >= 1 && *m <= 12 && *d >= 1 && *d <= days_in(*y, *m);
}

/* "YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH[:MM]]". want_zone: 1 required, 0 forbidden, -1 either.
 * Writes "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC, "+00" appended, when a zone was given). */
static bool parse_ts(const char *s, int want_zone, char *out, size_t size) {
  int y, mo, d, h, mi, se;
  if (!parse_date(s, &y, &mo, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ')) return false;
  const char *p = s + 11;
  if (!two(p, &h) || p[2] != ':' || !two(p + 3, &mi) || p[5] != ':' || !two(p + 6, &se)) return false;
  if (h > 23 || mi > 59 || se > 59) return false;
  p += 8;
  char frac[8] = "";
  if (*p == '.') {
    int n = 0;
    for (p++; isdigit((unsigned char)*p); p++)
      if (n < 6) frac[n++] = *p;
      else return false;
    if (!n) return false;
    frac[n] = '\0';
    while (n > 0 && frac[n - 1] == '0') frac[--n] = '\0';
  }
  int offset = 0;
  bool zone = false;
  if (*p == 'Z' || *p == 'z') {
    zone = true;
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om = 0;
    int sign = *p == '-' ? -1 : 1;
    if (!two(p + 1, &oh)) return false;
    p += 3;
    if (*p == ':') p++;
    if (isdigit((unsigned char)*p)) {
      if (!two(p, &om)) return false;
      p += 2;
    }
    if (oh > 15 || om > 59) return false;
    offset = sign * (oh * 3600 + om * 60);
    zone = true;
  }
  if (*p || (want_zone == 1 && !zone) || (want_zone == 0 && zone)) return false;
  if (zone) {
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = se};
    time_t t = timegm(&tm) - offset;
    struct tm u;
    if (!gmtime_r(&t, &u) || u.tm_year + 1900 < 1 || u.tm_year + 1900 > 9999) return false;
    snprintf(out, size, "%04d-%02d-%02d %02d:%02d:%02d%s%s+00", u.tm_year + 1900, u.tm_mon + 1, u.tm_mday,
             u.tm_hour, u.tm_min, u.tm_sec, frac[0] ? "." : "", frac);
  } else {
    snprintf(out, size, "%04d-%02d-%02d %02d:%02d:%02d%s%s", y, mo, d, h, mi, se, frac[0] ? "." : "", frac);
  }
  return true;
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* One value into its text form (json string) or null; *why on failure. */
static json_t *convert(const hs_coltype *t, const od_column *c, json_t *v, char *why, size_t wsize) {
  char buf[128];
  if (json_is_null(v)) {
    if (t->not_null) {
      snprintf(why, wsize, "column %s is %s and cannot be null", c->name, c->key ? "a key column" : "not null");
      return NULL;
    }
    return json_null();
  }
  const char *want = NULL;
  switch (t->kind) {
    case HS_T_BOOL:
      if (json_is_boolean(v)) return json_string(json_is_true(v) ? "t" : "f");
      want = "true or false";
      break;
    case HS_T_INT2: case HS_T_INT4: case HS_T_INT8: {
      if (!json_is_integer(v)) {
        want = "an integer";
        break;
      }
      json_int_t x = json_integer_value(v);
      long long lo = t->kind == HS_T_INT2 ? -32768 : t->kind == HS_T_INT4 ? -2147483648LL : INT64_MIN;
      long long hi = t->kind == HS_T_INT2 ? 32767 : t->kind == HS_T_INT4 ? 2147483647LL : INT64_MAX;
      if (x < lo || x > hi) {
        snprintf(why, wsize, "%lld is out of range for %s (%lld..%lld)", (long long)x, c->type_name, lo, hi);
        return NULL;
      }
      snprintf(buf, sizeof buf, "%lld", (long long)x);
      return json_string(buf);
    }
    case HS_T_NUMERIC: {
      const char *s;
      if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        s = buf;
      } else if (json_is_real(v)) {
        double d = json_real_value(v);
        fmt_double(d, buf, sizeof buf);
        if (strchr(buf, 'e') || strchr(buf, 'E')) snprintf(buf, sizeof buf, "%.*f", 6, d);
        s = buf;
      } else if (json_is_string(v)) {
        s = json_string_value(v);
      } else {
        want = "a number, or a string of digits (exact)";
        break;
      }
      if (!numeric_text_ok(s, t->precision, t->scale, why, wsize)) return NULL;
      return json_string(s);
    }
    case HS_T_FLOAT4: case HS_T_FLOAT8:
      if (json_is_number(v)) {
        fmt_double(json_number_value(v), buf, sizeof buf);
        return json_string(buf);
      }
      if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "NaN") || !strcmp(s, "Infinity") || !strcmp(s, "-Infinity")) return json_string(s);
      }
      want = "a number (or \"NaN\", \"Infinity\", \"-Infinity\")";
      break;
    case HS_T_TEXT: case HS_T_VARCHAR:
      if (!json_is_string(v)) {
        want = "a string";
        break;
      }
      if (t->length && utf8_chars(json_string_value(v)) > (size_t)t->length) {
        snprintf(why, wsize, "the string has %zu characters; %s takes at most %d", utf8_chars(json_string_value(v)),
                 c->type_name, t->length);
        return NULL;
      }
      return json_incref(v);
    case HS_T_DATE: {
      int y, m, d;
      const char *s = json_is_string(v) ? json_string_value(v) : "";
      if (json_is_string(v) && strlen(s) == 10 && parse_date(s, &y, &m, &d)) return json_incref(v);
      want = "a date \"YYYY-MM-DD\"";
      break;
    }
    case HS_T_TIMESTAMP: case HS_T_TIMESTAMPTZ: {
      bool tz = t->kind == HS_T_TIMESTAMPTZ;
      if (json_is_string(v) && parse_ts(json_string_value(v), tz ? 1 : 0, buf, sizeof buf)) return json_string(buf);
      want = tz ? "an RFC 3339 time with a zone, e.g. \"2024-05-01T12:00:00.250Z\" or \"...+02:00\""
                : "a time without a zone, e.g. \"2024-05-01T12:00:00.250\"";
      break;
    }
    case HS_T_UUID: {
      const char *s = json_is_string(v) ? json_string_value(v) : "";
      bool ok = json_is_string(v) && strlen(s) == 36;
      for (int i = 0; ok && i < 36; i++)
        ok = (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-' : isxdigit((unsigned char)s[i]);
      if (ok) {
        for (int i = 0; i < 36; i++) buf[i] = (char)tolower((unsigned char)s[i]);
        buf[36] = '\0';
        return json_string(buf);
      }
      want = "a UUID string \"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\"";
      break;
    }
    case HS_T_JSON: case HS_T_JSONB: {
      char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      if (!text) {
        snprintf(why, wsize, "out of memory");
        return NULL;
      }
      json_t *r = json_string(text);
      free(text);
      return r;
    }
  }
  snprintf(why, wsize, "expected %s for column %s (%s), got %s", want ? want : "a value", c->name, c->type_name,
           jtype(v));
  return NULL;
}

static int column_of(const hs_table *t, const char *name) {
  for (int i = 0; i < t->rel.ncolumns; i++)
    if (strcmp(t->rel.columns[i].name, name) == 0) return i;
  return -1;
}

/* Convert an object of column values (row, or key when key_only) into {col: text}. */
static int convert_object(const hs_table *t, json_t *obj, bool key_only, const char *path, json_t *out, char **pathout,
                          od_error *err) {
  const char *name;
  json_t *v;
  char p[512], why[600];
  json_object_foreach(obj, name, v) {
    snprintf(p, sizeof p, "%s.%s", path, name);
    int ci = column_of(t, name);
    if (ci < 0) return bad(err, pathout, p, "table %s has no column %s (declared in the source's tables:)", t->full, name);
    const od_column *c = &t->rel.columns[ci];
    if (key_only && !c->key) return bad(err, pathout, p, "%s is not a key column of %s", name, t->full);
    json_t *text = convert(&t->types[ci], c, v, why, sizeof why);
    if (!text) return bad(err, pathout, p, "%s", why);
    json_object_set_new(out, name, text);
  }
  return OD_OK;
}

static int need_keys(const hs_table *t, json_t *obj, const char *path, const char *what, char **pathout, od_error *err) {
  for (int i = 0; i < t->rel.ncolumns; i++)
    if (t->rel.columns[i].key && !json_object_get(obj, t->rel.columns[i].name)) {
      char p[512];
      snprintf(p, sizeof p, "%s.%s", path, t->rel.columns[i].name);
      return bad(err, pathout, p, "key column %s of %s is missing from %s", t->rel.columns[i].name, t->full, what);
    }
  return OD_OK;
}

static int one_event(const hs_tables *tables, json_t *ev, const char *path, json_t **out, char **pathout,
                     od_error *err) {
  char p[512];
  if (!json_is_object(ev)) return bad(err, pathout, path, "expected an event object, got %s", jtype(ev));
  static const char *const KEYS[] = {"table", "op", "key", "row", "event_time", "correlation_id", NULL};
  const char *name;
  json_t *v;
  json_object_foreach(ev, name, v) {
    bool known = false;
    for (int i = 0; KEYS[i]; i++) known = known || strcmp(KEYS[i], name) == 0;
    snprintf(p, sizeof p, "%s.%s", path, name);
    if (!known) return bad(err, pathout, p, "unknown field; an event has table, op, key, row, event_time, correlation_id");
  }
  json_t *cid = json_object_get(ev, "correlation_id"), *tab = json_object_get(ev, "table"),
         *op = json_object_get(ev, "op"), *key = json_object_get(ev, "key"), *row = json_object_get(ev, "row"),
         *et = json_object_get(ev, "event_time");
  snprintf(p, sizeof p, "%s.correlation_id", path);
  if (!cid) return bad(err, pathout, p, "missing; every event needs a correlation_id (its idempotency key)");
  if (!json_is_string(cid) || !json_string_length(cid) || json_string_length(cid) > CID_MAX)
    return bad(err, pathout, p, "expected a string of 1 to %d bytes", CID_MAX);
  for (const char *s = json_string_value(cid); *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return bad(err, pathout, p, "control characters are not allowed");
  snprintf(p, sizeof p, "%s.table", path);
  if (!tab) return bad(err, pathout, p, "missing; expected the name of a declared table");
  if (!json_is_string(tab)) return bad(err, pathout, p, "expected a string, got %s", jtype(tab));
  const hs_table *t = hs_tables_find(tables, json_string_value(tab));
  if (!t) return bad(err, pathout, p, "table '%.100s' is not declared in the source's tables:", json_string_value(tab));
  snprintf(p, sizeof p, "%s.op", path);
  const char *ops = json_is_string(op) ? json_string_value(op) : "";
  char o = !strcmp(ops, "insert") ? 'I' : !strcmp(ops, "update") ? 'U' : !strcmp(ops, "delete") ? 'D' : 0;
  if (!op) return bad(err, pathout, p, "missing; expected insert, update or delete");
  if (!o) return bad(err, pathout, p, "expected insert, update or delete");

  json_t *n = json_object(), *k = json_object();
  *out = json_object();
  if (!n || !k || !*out) {
    json_decref(n);
    json_decref(k);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  json_object_set_new(*out, "t", json_string(t->full));
  char os[2] = {o, 0};
  json_object_set_new(*out, "o", json_string(os));
  json_object_set(*out, "c", cid);
  json_object_set_new(*out, "n", n);
  json_object_set_new(*out, "k", k);
  int rc;
  char rp[64], kp[64];
  snprintf(rp, sizeof rp, "%s.row", path);
  snprintf(kp, sizeof kp, "%s.key", path);
  if (et && !json_is_null(et)) {
    char buf[64];
    snprintf(p, sizeof p, "%s.event_time", path);
    if (!json_is_string(et) || !parse_ts(json_string_value(et), 1, buf, sizeof buf))
      return bad(err, pathout, p, "expected an RFC 3339 time with a zone, e.g. \"2024-05-01T12:00:00Z\"");
    json_object_set_new(*out, "e", json_string(buf));
  }
  if (row && !json_is_object(row)) return bad(err, pathout, rp, "expected an object of column values, got %s", jtype(row));
  if (key && !json_is_object(key)) return bad(err, pathout, kp, "expected an object of key column values, got %s", jtype(key));
  if (o == 'D' && row) return bad(err, pathout, rp, "a delete takes no row; send the key");
  if (o != 'D' && !row) return bad(err, pathout, rp, "missing; an %s needs the row", ops);
  if (key && (rc = convert_object(t, key, true, kp, k, pathout, err))) return rc;
  if (key && (rc = need_keys(t, k, kp, "key", pathout, err))) return rc;
  if (row && (rc = convert_object(t, row, false, rp, n, pathout, err))) return rc;
  if (o == 'I') {
    if ((rc = need_keys(t, n, rp, "row", pathout, err))) return rc;
    for (int i = 0; i < t->rel.ncolumns; i++) {
      const od_column *c = &t->rel.columns[i];
      if (key && c->key && !json_equal(json_object_get(k, c->name), json_object_get(n, c->name))) {
        snprintf(p, sizeof p, "%s.%s", kp, c->name);
        return bad(err, pathout, p, "differs from row.%s; an insert's key is its row's key (leave key out)", c->name);
      }
      if (!json_object_get(n, c->name)) {
        if (t->types[i].not_null) {
          snprintf(p, sizeof p, "%s.%s", rp, c->name);
          return bad(err, pathout, p, "missing; column %s is not null", c->name);
        }
        json_object_set_new(n, c->name, json_null());
      }
    }
    json_object_clear(k);
  } else if (!key) { /* update/delete without key: the row's key columns */
    if (o == 'D') return bad(err, pathout, kp, "missing; a delete needs the key");
    if ((rc = need_keys(t, n, rp, "row (or send key)", pathout, err))) return rc;
    for (int i = 0; i < t->rel.ncolumns; i++)
      if (t->rel.columns[i].key) json_object_set(k, t->rel.columns[i].name, json_object_get(n, t->rel.columns[i].name));
  } else if (o == 'U') { /* key given: row key columns not sent keep the key's values */
    for (int i = 0; i < t->rel.ncolumns; i++)
      if (t->rel.columns[i].key && !json_object_get(n, t->rel.columns[i].name))
        json_object_set(n, t->rel.columns[i].name, json_object_get(k, t->rel.columns[i].name));
  }
  return OD_OK;
}

int hs_batch_parse(const hs_tables *tables, const char *body, size_t len, size_t max_events, hs_batch *out,
                   char **path, od_error *err) {
  memset(out, 0, sizeof *out);
  *path = NULL;
  json_error_t je;
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) return bad(err, path, "$", "not valid JSON at line %d column %d: %s", je.line, je.column, je.text);
  bool single = json_is_object(root);
  if (!single && !json_is_array(root)) {
    int rc = bad(err, path, "$", "expected an event object or an array of events, got %s", jtype(root));
    json_decref(root);
    return rc;
  }
  size_t n = single ? 1 : json_array_size(root);
  if (n == 0 || n > max_events) {
    int rc = bad(err, path, "$", n ? "%zu events in one request; at most %zu (split the batch)" : "an empty array%.0zu%.0zu",
                 n, max_events);
    json_decref(root);
    return rc;
  }
  json_t *items = json_array();
  out->items = items;
  out->single = single;
  out->ids = calloc(n, sizeof *out->ids);
  out->hashes = calloc(n, sizeof *out->hashes);
  if (!items || !out->ids || !out->hashes) {
    json_decref(root);
    hs_batch_free(out);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  int rc = OD_OK;
  for (size_t i = 0; i < n && !rc; i++) {
    char p[32];
    if (single) snprintf(p, sizeof p, "$");
    else snprintf(p, sizeof p, "$[%zu]", i);
    json_t *norm = NULL;
    rc = one_event(tables, single ? root : json_array_get(root, i), p, &norm, path, err);
    if (norm) json_array_append_new(items, norm);
    if (rc) break;
    out->ids[i] = json_string_value(json_object_get(norm, "c"));
    for (size_t j = 0; j < i; j++)
      if (strcmp(out->ids[j], out->ids[i]) == 0) {
        char q[64], r[40];
        snprintf(q, sizeof q, "%s.correlation_id", p);
        snprintf(r, sizeof r, "$[%zu]", j);
        rc = bad(err, path, q, "the same correlation_id as %s in this batch; every event needs its own", r);
        break;
      }
    /* The content hash is the client's event as sent (keys sorted), not its normalized form: a
     * retry after a change of the table's declaration is still the same event. Kept in the journal. */
    char *canon = json_dumps(single ? root : json_array_get(root, i), JSON_COMPACT | JSON_SORT_KEYS);
    if (!canon) {
      rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
      break;
    }
    out->hashes[i] = hs_hash64(canon, strlen(canon));
    free(canon);
    json_object_set_new(norm, "h", json_integer((json_int_t)out->hashes[i]));
    out->n = i + 1;
  }
  json_decref(root);
  if (rc) hs_batch_free(out);
  return rc;
}

void hs_batch_free(hs_batch *b) {
  json_decref(b->items);
  free(b->ids);
  free(b->hashes);
  memset(b, 0, sizeof *b);
}

/* ---- normalized event -> od_change ---- */

static void fill_tuple(const hs_table *t, json_t *obj, od_tuple *tup, od_value *vals, bool unchanged_missing) {
  tup->ncolumns = t->rel.ncolumns;
  tup->values = vals;
  for (int i = 0; i < t->rel.ncolumns; i++) {
    json_t *v = json_object_get(obj, t->rel.columns[i].name);
    if (!v) {
      vals[i].kind = unchanged_missing ? OD_VALUE_UNCHANGED : OD_VALUE_NULL;
    } else if (json_is_string(v)) {
      vals[i].kind = OD_VALUE_TEXT;
      vals[i].data = json_string_value(v);
      vals[i].len = (uint32_t)json_string_length(v);
    } else {
      vals[i].kind = OD_VALUE_NULL;
    }
  }
}

int hs_event_change(const hs_tables *tables, void *event, od_change *out, void **scratch, od_error *err) {
  json_t *ev = event;
  const char *tn = json_string_value(json_object_get(ev, "t"));
  const char *o = json_string_value(json_object_get(ev, "o"));
  const hs_table *t = tn ? hs_tables_find(tables, tn) : NULL;
  if (!t || !o)
    return OD_FAIL(err, OD_ESOURCE, "http journal: an event names table '%s', which is no longer declared in the "
                   "source's tables:; declare it again (events in the journal need it) and restart",
                   tn ? tn : "?");
  memset(out, 0, sizeof *out);
  od_value *vals = calloc((size_t)t->rel.ncolumns * 2, sizeof *vals);
  if (!vals) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  *scratch = vals;
  out->op = (uint8_t)o[0];
  out->rel = &t->rel;
  out->correlation_id = json_string_value(json_object_get(ev, "c"));
  json_t *n = json_object_get(ev, "n"), *k = json_object_get(ev, "k");
  if (out->op == OD_OP_INSERT || out->op == OD_OP_UPDATE) fill_tuple(t, n, &out->newtup, vals, out->op == OD_OP_UPDATE);
  if (out->op == OD_OP_UPDATE || out->op == OD_OP_DELETE) {
    fill_tuple(t, k, &out->oldtup, vals + t->rel.ncolumns, false);
    out->old_kind = 'K';
  }
  return OD_OK;
}
