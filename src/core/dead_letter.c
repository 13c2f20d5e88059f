/* dead_letter.c — see core/dead_letter.h. A small JSON writer and a small JSON reader (a tree of
 * nodes in one allocation list), enough for the one form this module writes. */
#include "core/dead_letter.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odsync/error.h"

/* ---- writing -------------------------------------------------------------------------------- */

typedef struct jw {
  char *p;
  size_t len, cap;
  bool oom;
} jw;

static void raw(jw *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *g = realloc(b->p, cap);
    if (!g) {
      b->oom = true;
      return;
    }
    b->p = g;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void lit(jw *b, const char *s) { raw(b, s, strlen(s)); }

static void str_n(jw *b, const char *s, size_t n) {
  raw(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      raw(b, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      raw(b, esc, 6);
    } else {
      raw(b, (const char *)&s[i], 1);
    }
  }
  raw(b, "\"", 1);
}

static void str(jw *b, const char *s) { str_n(b, s ? s : "", s ? strlen(s) : 0); }

static void num(jw *b, long long v) {
  char t[32];
  snprintf(t, sizeof t, "%lld", v);
  lit(b, t);
}

static void value(jw *b, const od_value *v) {
  switch (v->kind) {
    case OD_VALUE_TEXT: str_n(b, v->data, v->len); break;
    case OD_VALUE_UNCHANGED: lit(b, "{\"unchanged\":true}"); break;
    case OD_VALUE_BINARY: {
      lit(b, "{\"hex\":\"");
      static const char hx[] = "0123456789abcdef";
      for (uint32_t i = 0; i < v->len; i++) {
        char two[2] = {hx[(unsigned char)v->data[i] >> 4], hx[(unsigned char)v->data[i] & 15]};
        raw(b, two, 2);
      }
      lit(b, "\"}");
      break;
    }
    default: lit(b, "null");
  }
}

static void tuple(jw *b, const od_tuple *t) {
  if (!t->ncolumns) {
    lit(b, "null");
    return;
  }
  lit(b, "[");
  for (uint16_t i = 0; i < t->ncolumns; i++) {
    if (i) lit(b, ",");
    value(b, &t->values[i]);
  }
  lit(b, "]");
}

const char *od_op_word(int op) {
  switch (op) {
    case OD_OP_INSERT: return "insert";
    case OD_OP_UPDATE: return "update";
    case OD_OP_DELETE: return "delete";
    case OD_OP_TRUNCATE: return "truncate";
    case OD_OP_READ: return "read";
    case OD_OP_MESSAGE: return "message";
  }
  return "?";
}

static int op_of_word(const char *w) {
  static const int ops[] = {OD_OP_INSERT, OD_OP_UPDATE, OD_OP_DELETE, OD_OP_TRUNCATE, OD_OP_READ, OD_OP_MESSAGE};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (!strcmp(w, od_op_word(ops[i]))) return ops[i];
  return 0;
}

/* The row that identifies the change: the old key/row of an update or delete, else the new row. */
static const od_tuple *id_tuple(const od_change *ch) {
  if ((ch->op == OD_OP_UPDATE || ch->op == OD_OP_DELETE) && ch->oldtup.ncolumns) return &ch->oldtup;
  return &ch->newtup;
}

static bool any_key(const od_relation *rel) {
  for (uint16_t i = 0; rel && i < rel->ncolumns; i++)
    if (rel->columns[i].key) return true;
  return false;
}

void od_dead_letter_key(const od_change *ch, char *out, size_t size) {
  size_t n = 0;
  out[0] = '\0';
  const od_relation *rel = ch->rel;
  const od_tuple *t = id_tuple(ch);
  bool keyed = any_key(rel);
  for (uint16_t i = 0; rel && i < rel->ncolumns && i < t->ncolumns && n + 1 < size; i++) {
    if (keyed && !rel->columns[i].key) continue;
    const od_value *v = &t->values[i];
    int w = snprintf(out + n, size - n, "%s%s=%.*s", n ? ", " : "", rel->columns[i].name,
                     v->kind == OD_VALUE_TEXT ? (int)(v->len > 200 ? 200 : v->len) : 4,
                     v->kind == OD_VALUE_TEXT ? v->data : v->kind == OD_VALUE_NULL ? "NULL" : "?");
    if (w < 0) break;
    n += (size_t)w < size - n ? (size_t)w : size - n - 1;
  }
  if (!out[0]) snprintf(out, size, "(no row)");
}

int od_dead_letter_json(const od_change *ch, char **out) {
  jw b = {0};
  const od_relation *rel = ch->rel;
  lit(&b, "{\"table\":");
  if (rel) {
    char t[512];
    snprintf(t, sizeof t, "%s.%s", rel->schema, rel->name);
    str(&b, t);
  } else {
    lit(&b, "null");
  }
  lit(&b, ",\"op\":");
  str(&b, od_op_word(ch->op));
  if (ch->op == OD_OP_TRUNCATE) {
    lit(&b, ",\"truncate_flags\":");
    num(&b, ch->truncate_flags);
  }
  if (ch->old_kind) {
    char k[2] = {ch->old_kind, 0};
    lit(&b, ",\"old_kind\":");
    str(&b, k);
  }
  lit(&b, ",\"key\":{");
  const od_tuple *t = id_tuple(ch);
  bool keyed = any_key(rel), first = true;
  for (uint16_t i = 0; rel && i < rel->ncolumns && i < t->ncolumns; i++) {
    if (keyed && !rel->columns[i].key) continue;
    if (!first) lit(&b, ",");
    first = false;
    str(&b, rel->columns[i].name);
    lit(&b, ":");
    value(&b, &t->values[i]);
  }
  lit(&b, "}");
  if (rel) {
    lit(&b, ",\"relation\":{\"schema\":");
    str(&b, rel->schema);
    lit(&b, ",\"name\":");
    str(&b, rel->name);
    lit(&b, ",\"oid\":");
    num(&b, rel->oid);
    lit(&b, rel->has_primary_key ? ",\"has_primary_key\":true" : ",\"has_primary_key\":false");
    lit(&b, rel->match_full_row ? ",\"match_full_row\":true" : ",\"match_full_row\":false");
    lit(&b, ",\"columns\":[");
    for (uint16_t i = 0; i < rel->ncolumns; i++) {
      const od_column *c = &rel->columns[i];
      lit(&b, i ? ",{\"name\":" : "{\"name\":");
      str(&b, c->name);
      lit(&b, ",\"type\":");
      str(&b, c->type_name);
      lit(&b, ",\"type_oid\":");
      num(&b, c->type_oid);
      lit(&b, ",\"typmod\":");
      num(&b, c->typmod);
      lit(&b, c->key ? ",\"key\":true}" : ",\"key\":false}");
    }
    lit(&b, "]}");
  }
  lit(&b, ",\"new\":");
  tuple(&b, &ch->newtup);
  lit(&b, ",\"old\":");
  tuple(&b, &ch->oldtup);
  lit(&b, "}");
  if (b.oom) {
    free(b.p);
    return OD_ENOMEM;
  }
  *out = b.p;
  return OD_OK;
}

/* ---- reading -------------------------------------------------------------------------------- */

enum { J_NULL, J_TRUE, J_FALSE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jn {
  int kind;
  char *s;            /* J_STR: the string (NUL-terminated, len bytes); J_NUM: its text; object member: key */
  size_t len;
  char *key;          /* as a member of an object */
  struct jn *child;   /* J_ARR / J_OBJ: first element */
  struct jn *next;    /* next sibling */
  struct jn *all;     /* every node, for freeing */
} jn;

typedef struct jr {
  const char *p;
  jn *all;
  bool oom;
  const char *why;
} jr;

static jn *node(jr *r, int kind) {
  jn *n = calloc(1, sizeof *n);
  if (!n) {
    r->oom = true;
    return NULL;
  }
  n->kind = kind;
  n->all = r->all;
  r->all = n;
  return n;
}

static void free_nodes(jn *all) {
  while (all) {
    jn *next = all->all;
    free(all->s);
    free(all->key);
    free(all);
    all = next;
  }
}

static void ws(jr *r) {
  while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r') r->p++;
}

static void put_utf8(char *o, size_t *n, uint32_t cp) {
  if (cp < 0x80) {
    o[(*n)++] = (char)cp;
  } else if (cp < 0x800) {
    o[(*n)++] = (char)(0xC0 | (cp >> 6));
    o[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    o[(*n)++] = (char)(0xE0 | (cp >> 12));
    o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    o[(*n)++] = (char)(0xF0 | (cp >> 18));
    o[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[(*n)++] = (char)(0x80 | (cp & 0x3F));
  }
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

/* A string at r->p (after the opening quote) into a malloc'd buffer. */
static char *jstring(jr *r, size_t *len) {
  const char *start = r->p;
  size_t cap = 0;
  for (const char *q = start; *q && *q != '"'; q++) {
    if (*q == '\\') {
      if (!q[1]) break;
      q++;
      cap += 4;
    } else {
      cap++;
    }
  }
  char *o = malloc(cap + 8);
  if (!o) {
    r->oom = true;
    return NULL;
  }
  size_t n = 0;
  while (*r->p && *r->p != '"') {
    char c = *r->p++;
    if (c != '\\') {
      o[n++] = c;
      continue;
    }
    char e = *r->p++;
    switch (e) {
      case 'n': o[n++] = '\n'; break;
      case 't': o[n++] = '\t'; break;
      case 'r': o[n++] = '\r'; break;
      case 'b': o[n++] = '\b'; break;
      case 'f': o[n++] = '\f'; break;
      case 'u': {
        int cp = hex4(r->p);
        if (cp < 0) goto bad;
        r->p += 4;
        uint32_t full = (uint32_t)cp;
        if (cp >= 0xD800 && cp < 0xDC00 && r->p[0] == '\\' && r->p[1] == 'u') {
          int lo = hex4(r->p + 2);
          if (lo >= 0xDC00 && lo < 0xE000) {
            full = 0x10000 + (((uint32_t)cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            r->p += 6;
          }
        }
        put_utf8(o, &n, full);
        break;
      }
      case '\0': goto bad;
      default: o[n++] = e;
    }
  }
  if (*r->p != '"') goto bad;
  r->p++;
  o[n] = '\0';
  *len = n;
  return o;
bad:
  free(o);
  r->why = "a broken string";
  return NULL;
}

static jn *jvalue(jr *r, int depth) {
  ws(r);
  if (depth > 32) {
    r->why = "nested too deep";
    return NULL;
  }
  char c = *r->p;
  jn *n;
  if (c == '"') {
    r->p++;
    if (!(n = node(r, J_STR)) || !(n->s = jstring(r, &n->len))) return NULL;
    return n;
  }
  if (c == '{' || c == '[') {
    r->p++;
    if (!(n = node(r, c == '{' ? J_OBJ : J_ARR))) return NULL;
    jn **tail = &n->child;
    ws(r);
    char close = c == '{' ? '}' : ']';
    if (*r->p == close) {
      r->p++;
      return n;
    }
    for (;;) {
      char *key = NULL;
      size_t klen;
      if (c == '{') {
        ws(r);
        if (*r->p != '"') {
          r->why = "an object key is not a string";
          return NULL;
        }
        r->p++;
        if (!(key = jstring(r, &klen))) return NULL;
        ws(r);
        if (*r->p != ':') {
          free(key);
          r->why = "':' missing after a key";
          return NULL;
        }
        r->p++;
      }
      jn *v = jvalue(r, depth + 1);
      if (!v) {
        free(key);
        return NULL;
      }
      v->key = key;
      *tail = v;
      tail = &v->next;
      ws(r);
      if (*r->p == ',') {
        r->p++;
        continue;
      }
      if (*r->p == close) {
        r->p++;
        return n;
      }
      r->why = "',' or the end of an object or array expected";
      return NULL;
    }
  }
  if (!strncmp(r->p, "null", 4)) return r->p += 4, node(r, J_NULL);
  if (!strncmp(r->p, "true", 4)) return r->p += 4, node(r, J_TRUE);
  if (!strncmp(r->p, "false", 5)) return r->p += 5, node(r, J_FALSE);
  if (c == '-' || (c >= '0' && c <= '9')) {
    const char *s = r->p;
    while (*r->p == '-' || *r->p == '+' || *r->p == '.' || *r->p == 'e' || *r->p == 'E' ||
           (*r->p >= '0' && *r->p <= '9'))
      r->p++;
    if (!(n = node(r, J_NUM)) || !(n->s = strndup(s, (size_t)(r->p - s)))) {
      r->oom = true;
      return NULL;
    }
    return n;
  }
  r->why = "a value expected";
  return NULL;
}

static const jn *get(const jn *obj, const char *key) {
  if (!obj || obj->kind != J_OBJ) return NULL;
  for (const jn *c = obj->child; c; c = c->next)
    if (c->key && !strcmp(c->key, key)) return c;
  return NULL;
}

static const char *get_str(const jn *obj, const char *key) {
  const jn *v = get(obj, key);
  return v && v->kind == J_STR ? v->s : NULL;
}

static long long get_num(const jn *obj, const char *key, long long def) {
  const jn *v = get(obj, key);
  return v && v->kind == J_NUM ? strtoll(v->s, NULL, 10) : def;
}

static bool get_bool(const jn *obj, const char *key) {
  const jn *v = get(obj, key);
  return v && v->kind == J_TRUE;
}

struct od_dl_change {
  od_change change;
  od_relation rel;
  od_value *values; /* new then old */
  char **strings;   /* every string the change points to */
  size_t nstrings;
  jn *tree;
};

static char *keep(od_dl_change *c, char *s) {
  char **g = realloc(c->strings, (c->nstrings + 1) * sizeof *g);
  if (!g) {
    free(s);
    return NULL;
  }
  c->strings = g;
  c->strings[c->nstrings++] = s;
  return s;
}

static char *keep_dup(od_dl_change *c, const char *s) {
  char *d = strdup(s ? s : "");
  return d ? keep(c, d) : NULL;
}

static int unhex(const char *h, char **out, uint32_t *len) {
  size_t n = strlen(h);
  if (n % 2) return OD_EINVAL;
  char *o = malloc(n / 2 + 1);
  if (!o) return OD_ENOMEM;
  for (size_t i = 0; i < n / 2; i++) {
    char two[3] = {h[2 * i], h[2 * i + 1], 0};
    char *end;
    long v = strtol(two, &end, 16);
    if (*end) {
      free(o);
      return OD_EINVAL;
    }
    o[i] = (char)v;
  }
  o[n / 2] = '\0';
  *out = o;
  *len = (uint32_t)(n / 2);
  return OD_OK;
}

static int read_tuple(od_dl_change *c, const jn *arr, od_tuple *t, od_value *vals, char *why, size_t ws) {
  t->ncolumns = 0;
  t->values = NULL;
  if (!arr || arr->kind == J_NULL) return OD_OK;
  if (arr->kind != J_ARR) return snprintf(why, ws, "a row is not an array"), OD_EINVAL;
  uint16_t i = 0;
  for (const jn *v = arr->child; v; v = v->next, i++) {
    if (i >= c->rel.ncolumns) return snprintf(why, ws, "a row has more values than the relation has columns"), OD_EINVAL;
    od_value *d = &vals[i];
    if (v->kind == J_NULL) {
      d->kind = OD_VALUE_NULL;
    } else if (v->kind == J_STR) {
      d->kind = OD_VALUE_TEXT;
      if (!(d->data = keep_dup(c, v->s))) return OD_ENOMEM;
      d->len = (uint32_t)v->len;
    } else if (v->kind == J_OBJ && get_bool(v, "unchanged")) {
      d->kind = OD_VALUE_UNCHANGED;
    } else if (v->kind == J_OBJ && get_str(v, "hex")) {
      char *bin;
      int rc = unhex(get_str(v, "hex"), &bin, &d->len);
      if (rc) return rc == OD_ENOMEM ? rc : (snprintf(why, ws, "a binary value is not hex"), OD_EINVAL);
      if (!keep(c, bin)) return OD_ENOMEM;
      d->data = bin;
      d->kind = OD_VALUE_BINARY;
    } else {
      return snprintf(why, ws, "value %u of a row is neither text, null, unchanged nor hex", i), OD_EINVAL;
    }
  }
  t->ncolumns = i;
  t->values = vals;
  return OD_OK;
}

void od_dl_change_free(od_dl_change *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nstrings; i++) free(c->strings[i]);
  free(c->strings);
  free(c->rel.columns);
  free(c->values);
  free_nodes(c->tree);
  free(c);
}

const od_change *od_dl_change_get(const od_dl_change *c) { return &c->change; }

int od_dead_letter_parse(const char *json, od_dl_change **out, char *why, size_t why_size) {
  jr r = {.p = json};
  jn *root = jvalue(&r, 0);
  od_dl_change *c = calloc(1, sizeof *c);
  if (r.oom || !c) {
    free_nodes(r.all);
    free(c);
    return OD_ENOMEM;
  }
  c->tree = r.all;
  int rc = OD_EINVAL;
  if (!root || root->kind != J_OBJ) {
    snprintf(why, why_size, "not a JSON object (%s)", r.why ? r.why : "?");
    goto fail;
  }
  const char *opw = get_str(root, "op");
  int op = opw ? op_of_word(opw) : 0;
  const jn *rel = get(root, "relation");
  const jn *cols = get(rel, "columns");
  if (!op || !rel || !cols || cols->kind != J_ARR || !get_str(rel, "schema") || !get_str(rel, "name")) {
    snprintf(why, why_size, "\"op\" or \"relation\" (schema, name, columns) missing");
    goto fail;
  }
  size_t ncols = 0;
  for (const jn *x = cols->child; x; x = x->next) ncols++;
  if (ncols > UINT16_MAX) {
    snprintf(why, why_size, "too many columns");
    goto fail;
  }
  rc = OD_ENOMEM;
  c->rel.columns = calloc(ncols ? ncols : 1, sizeof *c->rel.columns);
  c->values = calloc(2 * (ncols ? ncols : 1), sizeof *c->values);
  if (!c->rel.columns || !c->values || !(c->rel.schema = keep_dup(c, get_str(rel, "schema"))) ||
      !(c->rel.name = keep_dup(c, get_str(rel, "name"))))
    goto fail;
  c->rel.oid = (uint32_t)get_num(rel, "oid", 0);
  c->rel.has_primary_key = get_bool(rel, "has_primary_key");
  c->rel.match_full_row = get_bool(rel, "match_full_row");
  c->rel.version = 1;
  c->rel.ncolumns = (uint16_t)ncols;
  size_t i = 0;
  for (const jn *x = cols->child; x; x = x->next, i++) {
    od_column *col = &c->rel.columns[i];
    if (!get_str(x, "name")) {
      rc = OD_EINVAL;
      snprintf(why, why_size, "column %zu has no name", i + 1);
      goto fail;
    }
    if (!(col->name = keep_dup(c, get_str(x, "name")))) goto fail;
    snprintf(col->type_name, sizeof col->type_name, "%s", get_str(x, "type") ? get_str(x, "type") : "");
    col->type_oid = (uint32_t)get_num(x, "type_oid", 25);
    col->typmod = (int32_t)get_num(x, "typmod", -1);
    col->key = get_bool(x, "key");
  }
  c->change.op = (uint8_t)op;
  c->change.rel = &c->rel;
  c->change.truncate_flags = (uint8_t)get_num(root, "truncate_flags", 0);
  const char *ok = get_str(root, "old_kind");
  c->change.old_kind = ok && (ok[0] == 'K' || ok[0] == 'O') ? ok[0] : 0;
  if ((rc = read_tuple(c, get(root, "new"), &c->change.newtup, c->values, why, why_size)) ||
      (rc = read_tuple(c, get(root, "old"), &c->change.oldtup, c->values + ncols, why, why_size)))
    goto fail;
  *out = c;
  return OD_OK;
fail:
  if (rc == OD_ENOMEM) snprintf(why, why_size, "out of memory");
  od_dl_change_free(c);
  return rc;
}
