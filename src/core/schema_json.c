/* core/schema_json.c — see schema_json.h. A writer for one history line and a small strict
 * reader for it (strings with escapes incl. \uXXXX surrogate pairs, integers, booleans, null,
 * nested arrays/objects skipped when the key is unknown). Never touches files. */
#include "core/schema_json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odsync/error.h"

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct jbuf {
  char *p;
  size_t len, cap;
  bool oom;
} jbuf;

static void jb_raw(jbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void jb_fmt(jbuf *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) jb_raw(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void jb_str(jbuf *b, const char *s) {
  jb_raw(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') {
      char e[2] = {'\\', (char)*p};
      jb_raw(b, e, 2);
    } else if (*p < 0x20) {
      jb_fmt(b, "\\u%04x", *p);
    } else {
      jb_raw(b, (const char *)p, 1);
    }
  }
  jb_raw(b, "\"", 1);
}

static void jb_key(jbuf *b, const char *key) {
  if (b->len > 1) jb_raw(b, ",", 1);
  jb_str(b, key);
  jb_raw(b, ":", 1);
}

int od_schema_json_line(const char *table, const od_relation *rel, const char *recorded_at,
                        const char *policy, bool applied, const char *change, const char *recreated_at, char **out,
                        size_t *len) {
  jbuf b = {0};
  jb_raw(&b, "{", 1);
  jb_key(&b, "table");
  jb_str(&b, table);
  jb_key(&b, "version");
  jb_fmt(&b, "%u", rel->version);
  jb_key(&b, "recorded_at");
  jb_str(&b, recorded_at);
  jb_key(&b, "policy");
  jb_str(&b, policy);
  jb_key(&b, "applied");
  jb_raw(&b, applied ? "true" : "false", applied ? 4 : 5);
  jb_key(&b, "schema");
  jb_str(&b, rel->schema);
  jb_key(&b, "name");
  jb_str(&b, rel->name);
  jb_key(&b, "oid");
  jb_fmt(&b, "%u", rel->oid);
  char ri[2] = {rel->replica_identity ? rel->replica_identity : 'd', '\0'};
  jb_key(&b, "replica_identity");
  jb_str(&b, ri);
  jb_key(&b, "primary_key");
  jb_raw(&b, rel->has_primary_key ? "true" : "false", rel->has_primary_key ? 4 : 5);
  jb_key(&b, "match_full_row");
  jb_raw(&b, rel->match_full_row ? "true" : "false", rel->match_full_row ? 4 : 5);
  jb_key(&b, "columns");
  jb_raw(&b, "[", 1);
  for (uint16_t i = 0; i < rel->ncolumns; i++) {
    const od_column *c = &rel->columns[i];
    jb_raw(&b, i ? ",{" : "{", i ? 2 : 1);
    jb_str(&b, "name");
    jb_raw(&b, ":", 1);
    jb_str(&b, c->name);
    jb_raw(&b, ",\"type\":", 8);
    jb_str(&b, c->type_name);
    jb_fmt(&b, ",\"type_oid\":%u,\"typmod\":%d,\"attnum\":%d,\"key\":%s}", c->type_oid, c->typmod,
           c->attnum, c->key ? "true" : "false");
  }
  jb_raw(&b, "]", 1);
  jb_key(&b, "change");
  jb_str(&b, change);
  if (recreated_at) {
    jb_key(&b, "recreated_at");
    jb_str(&b, recreated_at);
  }
  jb_raw(&b, "}\n", 2);
  if (b.oom) {
    free(b.p);
    return OD_ENOMEM;
  }
  *out = b.p;
  *len = b.len;
  return OD_OK;
}

/* ---- reader ---------------------------------------------------------------------------------- */

typedef struct jp {
  const char *p;
  char *why;
  size_t why_size;
  bool failed;
} jp;

__attribute__((format(printf, 2, 3))) static bool jfail(jp *j, const char *fmt, ...) {
  if (j->failed) return false;
  j->failed = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->why, j->why_size, fmt, ap);
  va_end(ap);
  return false;
}

static void ws(jp *j) {
  while (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n') j->p++;
}

static bool eat(jp *j, char c) {
  ws(j);
  if (*j->p != c) return jfail(j, "expected '%c' at \"%.20s\"", c, j->p);
  j->p++;
  return true;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

static void put_utf8(jbuf *b, uint32_t cp) {
  char o[4];
  size_t n;
  if (cp < 0x80) { o[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
  else { o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
  jb_raw(b, o, n);
}

/* A string into a malloc'd copy (NULL on error). */
static char *jstring(jp *j) {
  if (!eat(j, '"')) return NULL;
  jbuf b = {0};
  jb_raw(&b, "", 0);
  while (*j->p != '"') {
    unsigned char c = (unsigned char)*j->p;
    if (!c || c < 0x20) {
      free(b.p);
      jfail(j, "unterminated string");
      return NULL;
    }
    if (c != '\\') {
      jb_raw(&b, j->p++, 1);
      continue;
    }
    char e = j->p[1];
    j->p += 2;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      static const char map[] = "\"\\/\b\f\n\r\t";
      jb_raw(&b, &map[simple - "\"\\/bfnrt"], 1);
      continue;
    }
    int cp = e == 'u' ? hex4(j->p) : -1;
    if (cp < 0) {
      free(b.p);
      jfail(j, "bad escape in a string");
      return NULL;
    }
    j->p += 4;
    uint32_t u = (uint32_t)cp;
    if (u >= 0xD800 && u < 0xDC00 && j->p[0] == '\\' && j->p[1] == 'u') {
      int lo = hex4(j->p + 2);
      if (lo >= 0xDC00 && lo < 0xE000) {
        u = 0x10000 + ((u - 0xD800) << 10) + (uint32_t)(lo - 0xDC00);
        j->p += 6;
      }
    }
    put_utf8(&b, u);
  }
  j->p++;
  if (b.oom) {
    free(b.p);
    jfail(j, "out of memory");
    return NULL;
  }
  return b.p;
}

static bool jint(jp *j, long long *out) {
  ws(j);
  char *end;
  long long v = strtoll(j->p, &end, 10);
  if (end == j->p || *end == '.' || *end == 'e' || *end == 'E') return jfail(j, "expected an integer at \"%.20s\"", j->p);
  j->p = end;
  *out = v;
  return true;
}

static bool jbool(jp *j, bool *out) {
  ws(j);
  if (!strncmp(j->p, "true", 4)) { j->p += 4; *out = true; return true; }
  if (!strncmp(j->p, "false", 5)) { j->p += 5; *out = false; return true; }
  return jfail(j, "expected true or false at \"%.20s\"", j->p);
}

static bool jskip(jp *j, int depth) {
  ws(j);
  if (depth > 32) return jfail(j, "nested too deeply");
  char c = *j->p;
  if (c == '"') {
    char *s = jstring(j);
    free(s);
    return s != NULL;
  }
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    ws(j);
    if (*j->p == close) { j->p++; return true; }
    for (;;) {
      if (c == '{') {
        char *k = jstring(j);
        free(k);
        if (!k || !eat(j, ':')) return false;
      }
      if (!jskip(j, depth + 1)) return false;
      ws(j);
      if (*j->p == ',') { j->p++; continue; }
      return eat(j, close);
    }
  }
  if (!strncmp(j->p, "null", 4)) { j->p += 4; return true; }
  if (c == 't' || c == 'f') { bool b; return jbool(j, &b); }
  char *end;
  strtod(j->p, &end);
  if (end == j->p) return jfail(j, "unexpected \"%.20s\"", j->p);
  j->p = end;
  return true;
}

/* Iterate an object: calls field(j, key, ctx) for every key with j->p at the value. */
static bool jobject(jp *j, bool (*field)(jp *, const char *, void *), void *ctx) {
  if (!eat(j, '{')) return false;
  ws(j);
  if (*j->p == '}') { j->p++; return true; }
  for (;;) {
    char *key = jstring(j);
    if (!key) return false;
    bool ok = eat(j, ':') && field(j, key, ctx);
    free(key);
    if (!ok) return false;
    ws(j);
    if (*j->p == ',') { j->p++; continue; }
    return eat(j, '}');
  }
}

typedef struct colctx {
  od_column *c;
  bool has_name, has_oid;
} colctx;

static bool col_field(jp *j, const char *key, void *ctx) {
  colctx *cc = ctx;
  od_column *c = cc->c;
  long long v;
  if (!strcmp(key, "name")) {
    free(c->name);
    return (cc->has_name = (c->name = jstring(j)) != NULL);
  }
  if (!strcmp(key, "type")) {
    char *t = jstring(j);
    if (!t) return false;
    snprintf(c->type_name, sizeof c->type_name, "%s", t);
    free(t);
    return true;
  }
  if (!strcmp(key, "type_oid")) {
    if (!jint(j, &v)) return false;
    c->type_oid = (uint32_t)v;
    return (cc->has_oid = true);
  }
  if (!strcmp(key, "typmod")) {
    if (!jint(j, &v)) return false;
    c->typmod = (int32_t)v;
    return true;
  }
  if (!strcmp(key, "attnum")) {
    if (!jint(j, &v)) return false;
    c->attnum = (int16_t)v;
    return true;
  }
  if (!strcmp(key, "key")) return jbool(j, &c->key);
  return jskip(j, 1);
}

static bool jcolumns(jp *j, od_relation *rel) {
  if (!eat(j, '[')) return false;
  size_t cap = 0;
  ws(j);
  if (*j->p == ']') { j->p++; return true; }
  for (;;) {
    if (rel->ncolumns == UINT16_MAX) return jfail(j, "too many columns");
    if (rel->ncolumns == cap) {
      cap = cap ? cap * 2 : 8;
      od_column *p = realloc(rel->columns, cap * sizeof *p);
      if (!p) return jfail(j, "out of memory");
      rel->columns = p;
    }
    od_column *c = &rel->columns[rel->ncolumns];
    memset(c, 0, sizeof *c);
    c->typmod = -1;
    rel->ncolumns++;
    colctx cc = {.c = c};
    if (!jobject(j, col_field, &cc)) return false;
    if (!cc.has_name || !cc.has_oid)
      return jfail(j, "column %u lacks \"%s\"", rel->ncolumns, cc.has_name ? "type_oid" : "name");
    ws(j);
    if (*j->p == ',') { j->p++; continue; }
    return eat(j, ']');
  }
}

typedef struct recctx {
  od_schema_json_rec *r;
  bool has_version, has_columns, has_match;
} recctx;

static bool rec_field(jp *j, const char *key, void *ctx) {
  recctx *rc = ctx;
  od_schema_json_rec *r = rc->r;
  long long v;
  char **str = !strcmp(key, "table") ? &r->table : !strcmp(key, "schema") ? &r->rel.schema
             : !strcmp(key, "name") ? &r->rel.name : !strcmp(key, "recreated_at") ? &r->recreated_at : NULL;
  if (str) {
    free(*str);
    return (*str = jstring(j)) != NULL;
  }
  if (!strcmp(key, "version")) {
    if (!jint(j, &v)) return false;
    if (v < 1 || v > UINT32_MAX) return jfail(j, "version %lld out of range", v);
    r->rel.version = (uint32_t)v;
    return (rc->has_version = true);
  }
  if (!strcmp(key, "oid")) {
    if (!jint(j, &v)) return false;
    r->rel.oid = (uint32_t)v;
    return true;
  }
  if (!strcmp(key, "replica_identity")) {
    char *s = jstring(j);
    if (!s) return false;
    r->rel.replica_identity = s[0] ? s[0] : 'd';
    free(s);
    return true;
  }
  if (!strcmp(key, "primary_key")) return jbool(j, &r->rel.has_primary_key);
  if (!strcmp(key, "match_full_row")) return (rc->has_match = jbool(j, &r->rel.match_full_row));
  if (!strcmp(key, "applied")) return jbool(j, &r->applied);
  if (!strcmp(key, "columns")) return (rc->has_columns = jcolumns(j, &r->rel));
  return jskip(j, 1);
}

void od_schema_json_rec_free(od_schema_json_rec *r) {
  for (uint16_t i = 0; r->rel.columns && i < r->rel.ncolumns; i++) free(r->rel.columns[i].name);
  free(r->rel.columns);
  free(r->rel.schema);
  free(r->rel.name);
  free(r->table);
  free(r->recreated_at);
  memset(r, 0, sizeof *r);
}

int od_schema_json_parse(const char *line, od_schema_json_rec *out, char *why, size_t why_size) {
  memset(out, 0, sizeof *out);
  out->rel.replica_identity = 'd';
  out->applied = true;
  jp j = {.p = line, .why = why, .why_size = why_size};
  recctx rc = {.r = out};
  bool ok = jobject(&j, rec_field, &rc);
  if (ok) {
    ws(&j);
    if (*j.p) ok = jfail(&j, "text after the object: \"%.20s\"", j.p);
  }
  if (ok && (!out->table || !rc.has_version || !rc.has_columns))
    ok = jfail(&j, "missing \"%s\"", !out->table ? "table" : !rc.has_version ? "version" : "columns");
  if (ok && (!out->rel.schema || !out->rel.name)) { /* older lines: split "schema.name" */
    const char *dot = strchr(out->table, '.');
    free(out->rel.schema);
    free(out->rel.name);
    out->rel.schema = dot ? strndup(out->table, (size_t)(dot - out->table)) : strdup("public");
    out->rel.name = strdup(dot ? dot + 1 : out->table);
    if (!out->rel.schema || !out->rel.name) ok = jfail(&j, "out of memory");
  }
  if (ok && !rc.has_match) /* lines written before match_full_row: the rule the sinks applied then */
    out->rel.match_full_row = out->rel.replica_identity == 'f' && !out->rel.has_primary_key;
  if (!ok) {
    od_schema_json_rec_free(out);
    return OD_EINVAL;
  }
  return OD_OK;
}
