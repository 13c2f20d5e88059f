/* filter_expr.c — see filter_expr.h. A recursive-descent parser into a flat node array; binding
 * maps name slots to column positions; evaluation walks the nodes over the tuple's values. */
#include "transforms/filter_expr.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/pg_types.h"

enum kind { N_OR, N_AND, N_NOT, N_CMP, N_IN, N_ISNULL, N_LIKE, N_COL, N_STR, N_NUM, N_NULL };
enum cmp { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

/* A plain decimal (sign, digits, optional fraction, no exponent): its parts without padding zeros. */
typedef struct dec {
  bool neg;
  const char *ip, *fp;
  size_t il, fl;
} dec;

static bool parse_dec(const char *s, size_t n, dec *d);

typedef struct node {
  uint8_t kind, op;
  bool exact;     /* N_NUM: `d` holds the number, parsed once after parsing (fx_parse) */
  dec d;
  bool neg;       /* NOT IN, IS NOT NULL, NOT LIKE */
  int a, b, next; /* children; IN: a = operand, b = first item, items chained by next */
  int name;       /* N_COL: name slot */
  const char *s;  /* N_STR, N_NUM: text (NUL-terminated, in the expression's buffer) */
  uint32_t len;
  int pos;        /* 1-based character of the node in the text */
} node;

struct fx_expr {
  node *n;
  int nn, cap, root;
  char **names; /* name slots (into buf) */
  int *name_pos;
  int nnames;
  char *buf; /* unescaped strings and names */
  size_t blen;
};

struct fx_bound {
  int *col;       /* per name slot: column position */
  uint8_t *type;  /* per name slot: 0 text, 1 number, 2 boolean */
  int nnames;
  bool key_only;
};

/* ---- lexer ------------------------------------------------------------------------------------ */

enum tok { T_EOF, T_IDENT, T_QIDENT, T_STR, T_NUM, T_OP, T_LP, T_RP, T_COMMA, T_BAD };

typedef struct parser {
  const char *src;
  size_t i;         /* next character */
  enum tok tok;
  size_t tstart, tlen; /* the current token in src */
  fx_expr *e;
  od_error *err;
  int depth;
  bool failed;
} parser;

static bool ident_start(char c) { return isalpha((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80; }
static bool ident_char(char c) { return ident_start(c) || isdigit((unsigned char)c) || c == '$'; }

static void next(parser *p) {
  const char *s = p->src;
  while (s[p->i] && isspace((unsigned char)s[p->i])) p->i++;
  p->tstart = p->i;
  char c = s[p->i];
  if (!c) {
    p->tok = T_EOF;
  } else if (ident_start(c)) {
    while (ident_char(s[p->i])) p->i++;
    p->tok = T_IDENT;
  } else if (c == '"') {
    p->i++;
    for (;;) {
      if (!s[p->i]) { p->tok = T_BAD; break; }
      if (s[p->i] == '"' && s[p->i + 1] == '"') { p->i += 2; continue; }
      if (s[p->i++] == '"') { p->tok = T_QIDENT; break; }
    }
  } else if (c == '\'') {
    p->i++;
    for (;;) {
      if (!s[p->i]) { p->tok = T_BAD; break; }
      if (s[p->i] == '\'' && s[p->i + 1] == '\'') { p->i += 2; continue; }
      if (s[p->i++] == '\'') { p->tok = T_STR; break; }
    }
  } else if (isdigit((unsigned char)c) || ((c == '-' || c == '+' || c == '.') &&
                                           (isdigit((unsigned char)s[p->i + 1]) ||
                                            (s[p->i + 1] == '.' && isdigit((unsigned char)s[p->i + 2]))))) {
    if (c == '-' || c == '+') p->i++;
    while (isdigit((unsigned char)s[p->i])) p->i++;
    if (s[p->i] == '.') {
      p->i++;
      while (isdigit((unsigned char)s[p->i])) p->i++;
    }
    if ((s[p->i] == 'e' || s[p->i] == 'E') &&
        (isdigit((unsigned char)s[p->i + 1]) ||
         ((s[p->i + 1] == '-' || s[p->i + 1] == '+') && isdigit((unsigned char)s[p->i + 2])))) {
      p->i += 2;
      while (isdigit((unsigned char)s[p->i])) p->i++;
    }
    p->tok = ident_char(s[p->i]) ? T_BAD : T_NUM;
    while (ident_char(s[p->i])) p->i++;
  } else if (c == '(' || c == ')' || c == ',') {
    p->i++;
    p->tok = c == '(' ? T_LP : c == ')' ? T_RP : T_COMMA;
  } else if (c == '=' ) {
    p->i++;
    p->tok = T_OP;
  } else if (c == '<' || c == '>' || c == '!') {
    p->i++;
    if (s[p->i] == '=' || (c == '<' && s[p->i] == '>')) p->i++;
    p->tok = c == '!' && p->i - p->tstart == 1 ? T_BAD : T_OP;
  } else {
    p->i++;
    while (s[p->i] && ((unsigned char)s[p->i] & 0xC0) == 0x80) p->i++;
    p->tok = T_BAD;
  }
  p->tlen = p->i - p->tstart;
}

static bool is_kw(const parser *p, const char *kw) {
  return p->tok == T_IDENT && p->tlen == strlen(kw) && !strncasecmp(p->src + p->tstart, kw, p->tlen);
}

static int fail(parser *p, const char *expected) {
  if (p->failed) return -1;
  p->failed = true;
  char found[48];
  if (p->tok == T_EOF)
    snprintf(found, sizeof found, "the end of the expression");
  else if (p->tok == T_BAD && (p->src[p->tstart] == '\'' || p->src[p->tstart] == '"'))
    snprintf(found, sizeof found, "an unterminated %s", p->src[p->tstart] == '\'' ? "string" : "quoted name");
  else
    snprintf(found, sizeof found, "'%.*s'", (int)(p->tlen > 24 ? 24 : p->tlen), p->src + p->tstart);
  OD_FAIL(p->err, OD_ECONFIG, "at character %zu: expected %s, found %s", p->tstart + 1, expected, found);
  return -1;
}

/* ---- parser ----------------------------------------------------------------------------------- */

static int add(parser *p, enum kind k, int pos) {
  fx_expr *e = p->e;
  if (e->nn == e->cap) {
    int cap = e->cap ? e->cap * 2 : 16;
    node *n = realloc(e->n, (size_t)cap * sizeof *n);
    if (!n) {
      p->failed = true;
      OD_FAIL(p->err, OD_ENOMEM, "out of memory");
      return -1;
    }
    e->n = n;
    e->cap = cap;
  }
  e->n[e->nn] = (node){.kind = (uint8_t)k, .a = -1, .b = -1, .next = -1, .name = -1, .pos = pos};
  return e->nn++;
}

/* Copy the token's text unquoted into the buffer (doubled quotes become one). */
static char *unquote(parser *p, char q, bool lower) {
  char *o = p->e->buf + p->e->blen, *start = o;
  const char *s = p->src + p->tstart;
  size_t n = p->tlen;
  if (q) s++, n -= 2;
  for (size_t i = 0; i < n; i++) {
    if (q && s[i] == q) i++; /* doubled */
    *o++ = lower ? (char)tolower((unsigned char)s[i]) : s[i];
  }
  *o++ = '\0';
  p->e->blen = (size_t)(o - p->e->buf);
  return start;
}

static int name_slot(parser *p, const char *name, int pos) {
  fx_expr *e = p->e;
  for (int i = 0; i < e->nnames; i++)
    if (!strcmp(e->names[i], name)) return i;
  char **n = realloc(e->names, (size_t)(e->nnames + 1) * sizeof *n);
  int *np = n ? realloc(e->name_pos, (size_t)(e->nnames + 1) * sizeof *np) : NULL;
  if (n) e->names = n;
  if (np) e->name_pos = np;
  if (!n || !np) {
    p->failed = true;
    OD_FAIL(p->err, OD_ENOMEM, "out of memory");
    return -1;
  }
  e->names[e->nnames] = (char *)name;
  e->name_pos[e->nnames] = pos;
  return e->nnames++;
}

static bool reserved(const parser *p) {
  static const char *const kws[] = {"and", "or", "not", "in", "is", "like", NULL};
  for (int i = 0; kws[i]; i++)
    if (is_kw(p, kws[i])) return true;
  return false;
}

static int operand(parser *p) {
  int pos = (int)p->tstart + 1, n;
  if (p->tok == T_STR || p->tok == T_NUM) {
    if ((n = add(p, p->tok == T_STR ? N_STR : N_NUM, pos)) < 0) return -1;
    p->e->n[n].s = unquote(p, p->tok == T_STR ? '\'' : 0, false);
    p->e->n[n].len = (uint32_t)strlen(p->e->n[n].s);
  } else if (is_kw(p, "true") || is_kw(p, "false")) {
    if ((n = add(p, N_NUM, pos)) < 0) return -1;
    p->e->n[n].s = is_kw(p, "true") ? "1" : "0";
    p->e->n[n].len = 1;
    p->e->n[n].op = 1; /* a boolean literal */
  } else if (is_kw(p, "null")) {
    if ((n = add(p, N_NULL, pos)) < 0) return -1;
  } else if ((p->tok == T_IDENT && !reserved(p)) || p->tok == T_QIDENT) {
    const char *name = unquote(p, p->tok == T_QIDENT ? '"' : 0, p->tok == T_IDENT);
    if (!*name) return fail(p, "a column name (\"\" is empty)");
    int slot = name_slot(p, name, pos);
    if (slot < 0 || (n = add(p, N_COL, pos)) < 0) return -1;
    p->e->n[n].name = slot;
  } else {
    return fail(p, "a column name, a 'string', a number, TRUE, FALSE or NULL");
  }
  next(p);
  return n;
}

static int expr_or(parser *p);

static int predicate(parser *p) {
  if (p->tok == T_LP) {
    next(p);
    int n = expr_or(p);
    if (n < 0) return -1;
    if (p->tok != T_RP) return fail(p, "')' to close the parenthesis");
    next(p);
    return n;
  }
  int pos = (int)p->tstart + 1;
  int a = operand(p);
  if (a < 0) return -1;
  int n;
  if (p->tok == T_OP) {
    static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
    char op[3] = {0};
    memcpy(op, p->src + p->tstart, p->tlen < 2 ? p->tlen : 2);
    int k = -1;
    for (int i = 0; i < 6; i++)
      if (!strcmp(op, ops[i])) k = i;
    if (!strcmp(op, "<>")) k = C_NE;
    if ((n = add(p, N_CMP, pos)) < 0) return -1;
    p->e->n[n].op = (uint8_t)k;
    next(p);
    int b = operand(p);
    if (b < 0) return -1;
    p->e->n[n].a = a;
    p->e->n[n].b = b;
    return n;
  }
  if (is_kw(p, "is")) {
    next(p);
    bool neg = false;
    if (is_kw(p, "not")) neg = true, next(p);
    if (!is_kw(p, "null")) return fail(p, neg ? "NULL after IS NOT" : "NULL or NOT NULL after IS");
    next(p);
    if ((n = add(p, N_ISNULL, pos)) < 0) return -1;
    p->e->n[n].a = a;
    p->e->n[n].neg = neg;
    return n;
  }
  bool neg = false;
  if (is_kw(p, "not")) neg = true, next(p);
  if (is_kw(p, "like")) {
    next(p);
    if (p->tok != T_STR) return fail(p, "a 'pattern' string after LIKE");
    int b = operand(p);
    if (b < 0 || (n = add(p, N_LIKE, pos)) < 0) return -1;
    p->e->n[n].a = a;
    p->e->n[n].b = b;
    p->e->n[n].neg = neg;
    return n;
  }
  if (is_kw(p, "in")) {
    next(p);
    if (p->tok != T_LP) return fail(p, "'(' after IN");
    next(p);
    if ((n = add(p, N_IN, pos)) < 0) return -1;
    p->e->n[n].a = a;
    p->e->n[n].neg = neg;
    int last = -1;
    for (;;) {
      int it = operand(p);
      if (it < 0) return -1;
      if (last < 0) p->e->n[n].b = it;
      else p->e->n[last].next = it;
      last = it;
      if (p->tok == T_COMMA) {
        next(p);
        continue;
      }
      if (p->tok != T_RP) return fail(p, "',' or ')' in the IN list");
      next(p);
      return n;
    }
  }
  return fail(p, neg ? "LIKE or IN after NOT" : "a comparison (= != <> < <= > >=), IN, IS [NOT] NULL or LIKE");
}

static int expr_not(parser *p) {
  if (++p->depth > 64) return fail(p, "a shallower expression (nested more than 64 deep)");
  int n;
  if (is_kw(p, "not")) {
    int pos = (int)p->tstart + 1;
    next(p);
    int a = expr_not(p);
    if (a < 0 || (n = add(p, N_NOT, pos)) < 0) return -1;
    p->e->n[n].a = a;
  } else {
    n = predicate(p);
  }
  p->depth--;
  return n;
}

static int binary(parser *p, const char *kw, enum kind k, int (*sub)(parser *)) {
  int l = sub(p);
  while (l >= 0 && is_kw(p, kw)) {
    int pos = (int)p->tstart + 1;
    next(p);
    int r = sub(p), n;
    if (r < 0 || (n = add(p, k, pos)) < 0) return -1;
    p->e->n[n].a = l;
    p->e->n[n].b = r;
    l = n;
  }
  return l;
}

static int expr_and(parser *p) { return binary(p, "and", N_AND, expr_not); }
static int expr_or(parser *p) {
  if (++p->depth > 64) return fail(p, "a shallower expression (nested more than 64 deep)");
  int n = binary(p, "or", N_OR, expr_and);
  p->depth--;
  return n;
}

void fx_free(fx_expr *e) {
  if (!e) return;
  free(e->n);
  free(e->names);
  free(e->name_pos);
  free(e->buf);
  free(e);
}

int fx_parse(const char *text, fx_expr **out, od_error *err) {
  fx_expr *e = calloc(1, sizeof *e);
  if (!e || !(e->buf = malloc(2 * strlen(text) + 2)) /* each token: its text and a NUL */) {
    free(e);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  parser p = {.src = text, .e = e, .err = err};
  next(&p);
  if (p.tok == T_EOF) {
    fail(&p, "an expression");
    fx_free(e);
    return OD_ECONFIG;
  }
  e->root = expr_or(&p);
  if (e->root >= 0 && p.tok != T_EOF) fail(&p, "AND, OR or the end of the expression");
  if (p.failed) {
    fx_free(e);
    return err->code ? err->code : OD_ECONFIG;
  }
  for (int i = 0; i < e->nn; i++) /* numeric constants parsed once, not per evaluation */
    if (e->n[i].kind == N_NUM) e->n[i].exact = parse_dec(e->n[i].s, e->n[i].len, &e->n[i].d);
  *out = e;
  return OD_OK;
}

/* ---- binding ---------------------------------------------------------------------------------- */

void fx_bound_free(fx_bound *b) {
  if (!b) return;
  free(b->col);
  free(b->type);
  free(b);
}

bool fx_bound_key_only(const fx_bound *b) { return b->key_only; }

int fx_bind(const fx_expr *e, const od_relation *rel, fx_bound **out, od_error *err) {
  fx_bound *b = calloc(1, sizeof *b);
  if (!b || !(b->col = calloc((size_t)e->nnames + 1, sizeof *b->col)) ||
      !(b->type = calloc((size_t)e->nnames + 1, sizeof *b->type))) {
    fx_bound_free(b);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  b->nnames = e->nnames;
  b->key_only = true;
  for (int i = 0; i < e->nnames; i++) {
    int c = -1;
    for (uint16_t k = 0; k < rel->ncolumns && c < 0; k++)
      if (!strcmp(rel->columns[k].name, e->names[i])) c = k;
    if (c < 0) {
      fx_bound_free(b);
      return OD_FAIL(err, OD_ECONFIG, "column %s (at character %d of the filter) is not a column of %s.%s",
                     e->names[i], e->name_pos[i], rel->schema, rel->name);
    }
    b->col[i] = c;
    switch (rel->columns[c].type_oid) {
      case OD_PGT_INT2: case OD_PGT_INT4: case OD_PGT_INT8: case OD_PGT_OID:
      case OD_PGT_FLOAT4: case OD_PGT_FLOAT8: case OD_PGT_NUMERIC:
        b->type[i] = 1;
        break;
      case OD_PGT_BOOL:
        b->type[i] = 2;
        break;
      default:
        b->type[i] = 0;
    }
    b->key_only = b->key_only && rel->columns[c].key;
  }
  *out = b;
  return OD_OK;
}

/* ---- evaluation ------------------------------------------------------------------------------- */

typedef struct val {
  const char *s;
  uint32_t len;
  bool null;
  uint8_t type;  /* 0 text, 1 number, 2 boolean */
  const dec *d;  /* a constant's number parsed at fx_parse, or NULL */
} val;

static bool is_dig(char c) { return c >= '0' && c <= '9'; }

static bool parse_dec(const char *s, size_t n, dec *d) {
  size_t i = 0;
  *d = (dec){0};
  if (i < n && (s[i] == '-' || s[i] == '+')) d->neg = s[i++] == '-';
  size_t is = i;
  while (i < n && is_dig(s[i])) i++;
  size_t ie = i, fs = i, fe = i;
  if (i < n && s[i] == '.') {
    fs = ++i;
    while (i < n && is_dig(s[i])) i++;
    fe = i;
  }
  if (i != n || (ie == is && fe == fs)) return false;
  while (is < ie && s[is] == '0') is++;
  while (fe > fs && s[fe - 1] == '0') fe--;
  d->ip = s + is, d->il = ie - is, d->fp = s + fs, d->fl = fe - fs;
  if (!d->il && !d->fl) d->neg = false; /* -0 = 0 */
  return true;
}

static int dec_cmp(const dec *a, const dec *b) {
  if (a->neg != b->neg) return a->neg ? -1 : 1;
  int sign = a->neg ? -1 : 1, c;
  if (a->il != b->il) return a->il < b->il ? -sign : sign;
  if ((c = memcmp(a->ip, b->ip, a->il))) return c < 0 ? -sign : sign;
  for (size_t i = 0; i < a->fl || i < b->fl; i++) {
    char x = i < a->fl ? a->fp[i] : '0', y = i < b->fl ? b->fp[i] : '0';
    if (x != y) return x < y ? -sign : sign;
  }
  return 0;
}

/* The value as a number: booleans as 1/0. false when it is not one. */
static bool as_number(const val *v, dec *d, double *f, bool *exact) {
  if (v->d) {
    *d = *v->d;
    return *exact = true;
  }
  const char *s = v->s;
  size_t n = v->len;
  if (v->type == 2) {
    bool t = (n == 1 && s[0] == 't') || (n == 4 && !strncasecmp(s, "true", 4));
    bool fl = (n == 1 && s[0] == 'f') || (n == 5 && !strncasecmp(s, "false", 5));
    if (!t && !fl) return false;
    s = t ? "1" : "0";
    n = 1;
  }
  if (parse_dec(s, n, d)) return *exact = true;
  char *end;
  *f = strtod(s, &end); /* text values are NUL-terminated */
  *exact = false;
  return end == s + n && n;
}

static int text_cmp(const val *a, const val *b) {
  int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
  if (c) return c < 0 ? -1 : 1;
  return a->len < b->len ? -1 : a->len > b->len;
}

/* -1, 0, 1; or 2 when unordered (NaN). */
static int compare(const val *a, const val *b) {
  if (a->type || b->type) {
    dec da, db;
    double fa = 0, fb = 0;
    bool ea, eb;
    if (as_number(a, &da, &fa, &ea) && as_number(b, &db, &fb, &eb)) {
      if (ea && eb) return dec_cmp(&da, &db);
      if (ea) fa = strtod(a->type == 2 ? (da.il ? "1" : "0") : a->s, NULL);
      if (eb) fb = strtod(b->type == 2 ? (db.il ? "1" : "0") : b->s, NULL);
      if (isnan(fa) || isnan(fb)) return 2;
      return fa < fb ? -1 : fa > fb;
    }
  }
  return text_cmp(a, b);
}

static const od_value *col_value(const fx_bound *b, int slot, const od_tuple *t, const od_tuple *fb) {
  static const od_value null = {.kind = OD_VALUE_NULL};
  int c = b->col[slot];
  if (c >= t->ncolumns) return &null;
  const od_value *v = &t->values[c];
  if (v->kind == OD_VALUE_UNCHANGED && fb && c < fb->ncolumns) v = &fb->values[c];
  return v;
}

static val get(const fx_expr *e, const fx_bound *b, int ni, const od_tuple *t, const od_tuple *fb) {
  const node *n = &e->n[ni];
  switch (n->kind) {
    case N_COL: {
      const od_value *v = col_value(b, n->name, t, fb);
      if (v->kind != OD_VALUE_TEXT) return (val){.null = true};
      return (val){.s = v->data, .len = v->len, .type = b->type[n->name]};
    }
    case N_STR:
      return (val){.s = n->s, .len = n->len};
    case N_NUM:
      return (val){.s = n->s, .len = n->len, .type = 1, .d = n->exact ? &n->d : NULL};
    default:
      return (val){.null = true};
  }
}

/* % matches any run, _ one character (UTF-8 code point), \ makes the next character literal. */
static size_t next_cp(const char *s, size_t n, size_t i) {
  for (i++; i < n && ((unsigned char)s[i] & 0xC0) == 0x80; i++) {
  }
  return i;
}

static bool like(const char *s, size_t n, const char *p, size_t m) {
  size_t si = 0, pi = 0, star_p = SIZE_MAX, star_s = 0;
  while (si < n) {
    if (pi < m && p[pi] == '%') {
      star_p = ++pi;
      star_s = si;
      continue;
    }
    if (pi < m) {
      char pc = p[pi];
      size_t step = 1;
      if (pc == '\\' && pi + 1 < m) {
        pc = p[pi + 1];
        step = 2;
      } else if (pc == '_') {
        si = next_cp(s, n, si);
        pi++;
        continue;
      }
      if (s[si] == pc) {
        si++;
        pi += step;
        continue;
      }
    }
    if (star_p == SIZE_MAX) return false;
    si = star_s = next_cp(s, n, star_s);
    pi = star_p;
  }
  while (pi < m && p[pi] == '%') pi++;
  return pi == m;
}

static enum fx_result notr(enum fx_result r) { return r == FX_UNKNOWN ? r : r == FX_TRUE ? FX_FALSE : FX_TRUE; }

static enum fx_result ev(const fx_expr *e, const fx_bound *b, int ni, const od_tuple *t, const od_tuple *fb) {
  const node *n = &e->n[ni];
  enum fx_result l, r;
  switch (n->kind) {
    case N_OR:
      if ((l = ev(e, b, n->a, t, fb)) == FX_TRUE) return l;
      if ((r = ev(e, b, n->b, t, fb)) == FX_TRUE) return r;
      return l == FX_UNKNOWN || r == FX_UNKNOWN ? FX_UNKNOWN : FX_FALSE;
    case N_AND:
      if ((l = ev(e, b, n->a, t, fb)) == FX_FALSE) return l;
      if ((r = ev(e, b, n->b, t, fb)) == FX_FALSE) return r;
      return l == FX_UNKNOWN || r == FX_UNKNOWN ? FX_UNKNOWN : FX_TRUE;
    case N_NOT:
      return notr(ev(e, b, n->a, t, fb));
    case N_CMP: {
      val x = get(e, b, n->a, t, fb), y = get(e, b, n->b, t, fb);
      if (x.null || y.null) return FX_UNKNOWN;
      int c = compare(&x, &y);
      if (c == 2) return n->op == C_NE ? FX_TRUE : FX_FALSE;
      bool res = n->op == C_EQ ? c == 0 : n->op == C_NE ? c != 0 : n->op == C_LT ? c < 0 : n->op == C_LE ? c <= 0
               : n->op == C_GT ? c > 0 : c >= 0;
      return res ? FX_TRUE : FX_FALSE;
    }
    case N_IN: {
      val x = get(e, b, n->a, t, fb);
      if (x.null) return FX_UNKNOWN;
      enum fx_result res = FX_FALSE;
      for (int it = n->b; it >= 0 && res != FX_TRUE; it = e->n[it].next) {
        val y = get(e, b, it, t, fb);
        if (y.null) res = FX_UNKNOWN;
        else if (compare(&x, &y) == 0) res = FX_TRUE;
      }
      return n->neg ? notr(res) : res;
    }
    case N_ISNULL: {
      bool isnull = get(e, b, n->a, t, fb).null;
      return isnull != n->neg ? FX_TRUE : FX_FALSE;
    }
    case N_LIKE: {
      val x = get(e, b, n->a, t, fb);
      if (x.null) return FX_UNKNOWN;
      bool m = like(x.s, x.len, e->n[n->b].s, e->n[n->b].len);
      return m != n->neg ? FX_TRUE : FX_FALSE;
    }
    default:
      return FX_UNKNOWN;
  }
}

enum fx_result fx_eval(const fx_expr *e, const fx_bound *b, const od_tuple *t, const od_tuple *fallback) {
  for (int i = 0; i < b->nnames; i++) {
    const od_value *v = col_value(b, i, t, fallback);
    if (v->kind == OD_VALUE_UNCHANGED || v->kind == OD_VALUE_BINARY) return FX_CANT;
  }
  return ev(e, b, e->root, t, fallback);
}
