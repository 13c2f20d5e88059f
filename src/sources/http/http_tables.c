/* sources/http/http_tables.c — the tables an http source accepts, as declared in the config:
 * "schema.name (column type [key] [not null], ...)" with PostgreSQL type names, turned into the
 * relations the source reports (so sinks create real types) and the per-column checks events
 * are validated against.
 *
 * Owns: every hs_table, its od_relation and the strings in it (hs_tables_free).
 * Never touches: events, files, the network.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "sources/http/http_internal.h"

static bool ident_ok(const char *s, size_t n) {
  if (n == 0 || n > 63 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return false;
  return true;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
  return s;
}

/* Collapse runs of blanks to one space and lowercase, in place. */
static void squeeze(char *s) {
  char *o = s;
  bool blank = false;
  for (char *p = s; *p; p++) {
    if (isspace((unsigned char)*p)) {
      blank = true;
      continue;
    }
    if (blank && o != s) *o++ = ' ';
    blank = false;
    *o++ = (char)tolower((unsigned char)*p);
  }
  *o = '\0';
}

static bool strip_suffix(char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  if (n < m + 1 || strcmp(s + n - m, suffix) != 0 || s[n - m - 1] != ' ') return false;
  s[n - m - 1] = '\0';
  return true;
}

static const struct {
  const char *name;
  int kind;
  uint32_t oid;
  const char *sql;
} TYPES[] = {
    {"boolean", HS_T_BOOL, OD_PGT_BOOL, "boolean"},
    {"bool", HS_T_BOOL, OD_PGT_BOOL, "boolean"},
    {"smallint", HS_T_INT2, OD_PGT_INT2, "smallint"},
    {"int2", HS_T_INT2, OD_PGT_INT2, "smallint"},
    {"integer", HS_T_INT4, OD_PGT_INT4, "integer"},
    {"int", HS_T_INT4, OD_PGT_INT4, "integer"},
    {"int4", HS_T_INT4, OD_PGT_INT4, "integer"},
    {"bigint", HS_T_INT8, OD_PGT_INT8, "bigint"},
    {"int8", HS_T_INT8, OD_PGT_INT8, "bigint"},
    {"real", HS_T_FLOAT4, OD_PGT_FLOAT4, "real"},
    {"float4", HS_T_FLOAT4, OD_PGT_FLOAT4, "real"},
    {"double precision", HS_T_FLOAT8, OD_PGT_FLOAT8, "double precision"},
    {"float8", HS_T_FLOAT8, OD_PGT_FLOAT8, "double precision"},
    {"text", HS_T_TEXT, OD_PGT_TEXT, "text"},
    {"date", HS_T_DATE, OD_PGT_DATE, "date"},
    {"timestamp", HS_T_TIMESTAMP, OD_PGT_TIMESTAMP, "timestamp without time zone"},
    {"timestamp without time zone", HS_T_TIMESTAMP, OD_PGT_TIMESTAMP, "timestamp without time zone"},
    {"timestamptz", HS_T_TIMESTAMPTZ, OD_PGT_TIMESTAMPTZ, "timestamp with time zone"},
    {"timestamp with time zone", HS_T_TIMESTAMPTZ, OD_PGT_TIMESTAMPTZ, "timestamp with time zone"},
    {"uuid", HS_T_UUID, OD_PGT_UUID, "uuid"},
    {"json", HS_T_JSON, OD_PGT_JSON, "json"},
    {"jsonb", HS_T_JSONB, OD_PGT_JSONB, "jsonb"},
};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

/* "varchar(40)", "numeric(12,2)", "numeric" and the names above. */
static int parse_type(const char *t, od_column *c, hs_coltype *ht) {
  for (size_t i = 0; i < NTYPES; i++)
    if (strcmp(t, TYPES[i].name) == 0) {
      ht->kind = TYPES[i].kind;
      c->type_oid = TYPES[i].oid;
      c->typmod = -1;
      snprintf(c->type_name, sizeof c->type_name, "%s", TYPES[i].sql);
      return 0;
    }
  int a = 0, b = 0, used = 0;
  if ((sscanf(t, "varchar (%d)%n", &a, &used) == 1 || sscanf(t, "varchar(%d)%n", &a, &used) == 1 ||
       sscanf(t, "character varying(%d)%n", &a, &used) == 1) &&
      t[used] == '\0' && a >= 1 && a <= 10485760) {
    ht->kind = HS_T_VARCHAR;
    ht->length = a;
    c->type_oid = OD_PGT_VARCHAR;
    c->typmod = a + 4;
    snprintf(c->type_name, sizeof c->type_name, "character varying(%d)", a);
    return 0;
  }
  if (strcmp(t, "varchar") == 0 || strcmp(t, "character varying") == 0) {
    ht->kind = HS_T_VARCHAR;
    c->type_oid = OD_PGT_VARCHAR;
    c->typmod = -1;
    snprintf(c->type_name, sizeof c->type_name, "character varying");
    return 0;
  }
  if (strcmp(t, "numeric") == 0 || strcmp(t, "decimal") == 0) {
    ht->kind = HS_T_NUMERIC;
    c->type_oid = OD_PGT_NUMERIC;
    c->typmod = -1;
    snprintf(c->type_name, sizeof c->type_name, "numeric");
    return 0;
  }
  used = 0;
  if ((sscanf(t, "numeric(%d,%d)%n", &a, &b, &used) == 2 || sscanf(t, "decimal(%d,%d)%n", &a, &b, &used) == 2 ||
       sscanf(t, "numeric(%d, %d)%n", &a, &b, &used) == 2 || sscanf(t, "decimal(%d, %d)%n", &a, &b, &used) == 2) &&
      t[used] == '\0' && a >= 1 && a <= 1000 && b >= 0 && b <= a) {
    ht->kind = HS_T_NUMERIC;
    ht->precision = a;
    ht->scale = b;
    c->type_oid = OD_PGT_NUMERIC;
    c->typmod = ((a << 16) | b) + 4;
    snprintf(c->type_name, sizeof c->type_name, "numeric(%d,%d)", a, b);
    return 0;
  }
  return -1;
}

static int parse_one(char *item, const char *where, hs_table *t, od_error *err) {
  char *open = strchr(item, '('), *close = strrchr(item, ')');
  if (!open || !close || close < open || *trim(close + 1))
    return OD_FAIL(err, OD_ECONFIG, "%s: '%s' is not a table declaration; expected \"schema.name (column type "
                   "[key] [not null], ...)\", e.g. \"public.orders (id bigint key, amount numeric(12,2))\"", where, item);
  *open = '\0';
  *close = '\0';
  char *name = trim(item);
  char *dot = strchr(name, '.');
  const char *schema = dot ? name : "public", *rel = dot ? dot + 1 : name;
  size_t sl = dot ? (size_t)(dot - name) : 6;
  if (!ident_ok(schema, sl) || !ident_ok(rel, strlen(rel)))
    return OD_FAIL(err, OD_ECONFIG, "%s: table name '%s' is not schema.name of letters, digits and _", where, name);
  snprintf(t->full, sizeof t->full, "%.*s.%s", (int)sl, schema, rel);
  t->rel.schema = strndup(schema, sl);
  t->rel.name = strdup(rel);
  /* Columns: split at commas outside parentheses. */
  char *body = open + 1;
  int cap = 1;
  for (char *p = body; *p; p++) cap += *p == ',';
  t->rel.columns = calloc((size_t)cap, sizeof(od_column));
  t->types = calloc((size_t)cap, sizeof(hs_coltype));
  if (!t->rel.schema || !t->rel.name || !t->rel.columns || !t->types) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", where);
  int depth = 0;
  char *start = body;
  for (char *p = body;; p++) {
    if (*p == '(') depth++;
    if (*p == ')') depth--;
    if (*p && (*p != ',' || depth > 0)) continue;
    bool end = *p == '\0';
    *p = '\0';
    char *col = trim(start);
    start = p + 1;
    if (!*col) return OD_FAIL(err, OD_ECONFIG, "%s: an empty column in the declaration of %s", where, t->full);
    size_t nl = 0;
    while (col[nl] && !isspace((unsigned char)col[nl])) nl++;
    if (!ident_ok(col, nl))
      return OD_FAIL(err, OD_ECONFIG, "%s: column name '%.*s' of %s is not letters, digits and _", where, (int)nl, col,
                     t->full);
    od_column *c = &t->rel.columns[t->rel.ncolumns];
    hs_coltype *ht = &t->types[t->rel.ncolumns];
    for (int i = 0; i < t->rel.ncolumns; i++)
      if (strncmp(t->rel.columns[i].name, col, nl) == 0 && !t->rel.columns[i].name[nl])
        return OD_FAIL(err, OD_ECONFIG, "%s: column %.*s of %s is declared twice", where, (int)nl, col, t->full);
    if (!(c->name = strndup(col, nl))) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", where);
    t->rel.ncolumns++;
    char *type = col + nl;
    squeeze(type);
    for (bool more = true; more;) {
      more = false;
      if (strip_suffix(type, "primary key") || strip_suffix(type, "key")) c->key = more = true;
      if (strip_suffix(type, "not null")) ht->not_null = more = true;
    }
    if (!*type || parse_type(type, c, ht))
      return OD_FAIL(err, OD_ECONFIG, "%s: column %s of %s has type '%s', which the http source does not take; "
                     "expected one of boolean, smallint, integer, bigint, numeric[(p,s)], real, double precision, "
                     "text, varchar(n), date, timestamp, timestamptz, uuid, json, jsonb (then key and/or not null)",
                     where, c->name, t->full, type);
    if (c->key) {
      ht->not_null = true;
      t->nkeys++;
    }
    c->attnum = (int16_t)t->rel.ncolumns;
    if (end) break;
  }
  if (!t->nkeys)
    return OD_FAIL(err, OD_ECONFIG, "%s: table %s declares no key column; mark the columns that identify a row "
                   "with 'key', e.g. \"id bigint key\"", where, t->full);
  t->rel.version = 1;
  t->rel.replica_identity = 'd';
  t->rel.has_primary_key = true;
  return OD_OK;
}

int hs_tables_parse(char *const *items, int n, const char *const *where, hs_tables *out, od_error *err) {
  memset(out, 0, sizeof *out);
  if (n <= 0) return OD_FAIL(err, OD_ECONFIG, "%s: tables is empty", where[0]);
  if (!(out->t = calloc((size_t)n, sizeof *out->t))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    char *copy = strdup(items[i]);
    if (!copy) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    hs_table *t = &out->t[out->n++];
    int rc = parse_one(copy, where[i], t, err);
    free(copy);
    if (rc) return rc;
    t->rel.oid = (uint32_t)(i + 1);
    for (int j = 0; j < i; j++)
      if (strcmp(out->t[j].full, t->full) == 0)
        return OD_FAIL(err, OD_ECONFIG, "%s: table %s is declared twice", where[i], t->full);
  }
  return OD_OK;
}

void hs_tables_free(hs_tables *t) {
  for (int i = 0; i < t->n; i++) {
    od_relation *r = &t->t[i].rel;
    for (int c = 0; c < r->ncolumns; c++) free(r->columns[c].name);
    free(r->columns);
    free(r->schema);
    free(r->name);
    free(t->t[i].types);
  }
  free(t->t);
  memset(t, 0, sizeof *t);
}

const hs_table *hs_tables_find(const hs_tables *t, const char *name) {
  char full[256];
  if (!strchr(name, '.')) {
    snprintf(full, sizeof full, "public.%s", name);
    name = full;
  }
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->t[i].full, name) == 0) return &t->t[i];
  return NULL;
}
