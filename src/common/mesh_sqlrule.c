/* mesh_sqlrule.c — see mesh_sqlrule.h. */
#include "common/mesh_sqlrule.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool od_mesh_sqlrule_split(const char *rule, char *tbl, size_t cap, const char **expr) {
  const char *colon = strchr(rule, ':');
  if (!colon) return false;
  size_t tl = (size_t)(colon - rule);
  int dots = 0;
  for (size_t k = 0; k < tl; k++) dots += rule[k] == '.';
  const char *rest = colon + 1;
  while (*rest == ' ' || *rest == '\t') rest++;
  if (dots != 1 || strncmp(rest, "sql:", 4) != 0 || tl == 0 || tl >= cap) return false;
  memcpy(tbl, rule, tl);
  tbl[tl] = '\0';
  rest += 4;
  while (*rest == ' ' || *rest == '\t') rest++;
  *expr = rest;
  return true;
}

/* A dollar quote's opening tag at p ("$$" or "$tag$", the tag an identifier: "$1" is a parameter):
 * its length, 0 when p starts none. */
static size_t dollar_tag(const char *p) {
  if (*p != '$') return 0;
  size_t k = 1;
  if (p[k] && (isalpha((unsigned char)p[k]) || p[k] == '_' || (unsigned char)p[k] >= 0x80))
    while (p[k] && (isalnum((unsigned char)p[k]) || p[k] == '_' || (unsigned char)p[k] >= 0x80)) k++;
  return p[k] == '$' ? k + 1 : 0;
}

bool od_mesh_sqlrule_bare_semicolon(const char *expr) {
  const char *p = expr;
  while (*p) {
    if (*p == ';') return true;
    if ((*p == 'E' || *p == 'e') && p[1] == '\'' && (p == expr || !(isalnum((unsigned char)p[-1]) || p[-1] == '_'))) {
      for (p += 2; *p; p++) /* E'...': backslash escapes, '' a quote */
        if (*p == '\\' && p[1]) p++;
        else if (*p == '\'' && p[1] == '\'') p++;
        else if (*p == '\'') break;
      if (*p) p++;
      continue;
    }
    if (*p == '\'' || *p == '"') { /* 'text' or "identifier": the quote doubled inside */
      char q = *p++;
      while (*p && !(*p == q && p[1] != q)) p += *p == q ? 2 : 1;
      if (*p) p++;
      continue;
    }
    if (p[0] == '-' && p[1] == '-') { /* a comment to the line's end */
      while (*p && *p != '\n') p++;
      continue;
    }
    if (p[0] == '/' && p[1] == '*') { /* a block comment, nested */
      int depth = 0;
      do {
        if (p[0] == '/' && p[1] == '*') depth++, p += 2;
        else if (p[0] == '*' && p[1] == '/') depth--, p += 2;
        else p++;
      } while (*p && depth);
      continue;
    }
    size_t t = dollar_tag(p);
    if (t && (p == expr || !(isalnum((unsigned char)p[-1]) || p[-1] == '_'))) { /* $tag$ ... $tag$ */
      const char *end;
      for (end = p + t; *end && strncmp(end, p, t) != 0; end++) {}
      p = *end ? end + t : end;
      continue;
    }
    p++;
  }
  return false;
}

/* "schema.table" as "schema"."table" */
static void qualified(od_sqlbuf *b, const char *table) {
  const char *dot = strchr(table, '.');
  char schema[256];
  snprintf(schema, sizeof schema, "%.*s", dot ? (int)(dot - table) : 0, table);
  od_sqlbuf_ident(b, dot ? schema : "public");
  od_sqlbuf_add(b, ".");
  od_sqlbuf_ident(b, dot ? dot + 1 : table);
}

void od_mesh_sqlrule_sql(od_sqlbuf *b, const char *tq, char *const *keys, int nkey, const char *const *exprs, int n) {
  od_sqlbuf_add(b, "SELECT p.i, o.sw");
  /* each expression in parentheses and ended by a newline (a trailing "--" comment ends there) */
  for (int i = 0; i < n; i++) od_sqlbuf_addf(b, ", (%s\n)", exprs[i]);
  od_sqlbuf_add(b, " FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[]) AS p (i, rj, lj, dk) CROSS JOIN "
                   "LATERAL (SELECT json_populate_record(NULL::");
  od_sqlbuf_add(b, tq);
  /* the local row: NULL when the local side deleted it (dk 'l'), the row given, or the table's row */
  od_sqlbuf_add(b, ", p.rj::json) AS row) r CROSS JOIN LATERAL (SELECT NULL::");
  od_sqlbuf_add(b, tq);
  od_sqlbuf_add(b, " AS row WHERE p.dk = 'l' UNION ALL SELECT json_populate_record(NULL::");
  od_sqlbuf_add(b, tq);
  od_sqlbuf_add(b, ", p.lj::json) WHERE p.dk IS DISTINCT FROM 'l' AND p.lj IS NOT NULL UNION ALL SELECT x FROM ");
  od_sqlbuf_add(b, tq);
  od_sqlbuf_add(b, " x WHERE p.dk IS DISTINCT FROM 'l' AND p.lj IS NULL");
  for (int k = 0; k < nkey; k++) {
    od_sqlbuf_add(b, " AND x.");
    od_sqlbuf_ident(b, keys[k]);
    od_sqlbuf_add(b, " = (r.row).");
    od_sqlbuf_ident(b, keys[k]);
  }
  /* the remote row: NULL when the remote write is a delete (dk 'r'; rj then holds its key) */
  od_sqlbuf_add(b, ") l CROSS JOIN LATERAL (SELECT CASE WHEN p.dk = 'r' THEN NULL ELSE r.row END AS row) rv CROSS "
                   "JOIN (VALUES (false), (true)) AS o (sw) CROSS JOIN LATERAL (SELECT ((CASE WHEN o.sw THEN l.row "
                   "ELSE rv.row END)).*) AS remote CROSS JOIN LATERAL (SELECT ((CASE WHEN o.sw THEN rv.row ELSE "
                   "l.row END)).*) AS local");
}

/* The first line of the server's message of a failed result. */
static const char *first_line(const PGresult *r, PGconn *c, char *buf, size_t cap) {
  const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  snprintf(buf, cap, "%s", m ? m : PQerrorMessage(c));
  buf[strcspn(buf, "\n")] = '\0';
  return buf;
}

int od_mesh_sqlrule_check(PGconn *c, const char *table, const char *expr, char *msg, size_t cap) {
  char why[512];
  if (!*expr) {
    snprintf(msg, cap, "the expression is empty");
    return -1;
  }
  if (strstr(expr, "$odsync$") || od_mesh_sqlrule_bare_semicolon(expr)) {
    snprintf(msg, cap, "the expression may not contain ';' outside a string literal, nor '$odsync$' (one boolean "
             "expression on local and remote)");
    return -1;
  }
  const char *p[] = {table};
  PGresult *r = PQexecParams(c,
                             "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
                             "a.attnum = ANY (i.indkey) WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY "
                             "array_position(i.indkey::int2[], a.attnum)", 1, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    snprintf(msg, cap, "reading the key of %s: %s", table, first_line(r, c, why, sizeof why));
    PQclear(r);
    return -2;
  }
  int nkey = PQntuples(r);
  if (!nkey || nkey > 8) {
    snprintf(msg, cap, "table %s does not exist or has no primary key (of at most 8 columns)", table);
    PQclear(r);
    return -1;
  }
  char *keys[8];
  for (int k = 0; k < nkey; k++) keys[k] = PQgetvalue(r, k, 0);
  od_sqlbuf tq = {0}, b = {0};
  qualified(&tq, table);
  od_mesh_sqlrule_sql(&b, tq.p ? tq.p : "", keys, nkey, &expr, 1);
  PQclear(r);
  int rc = 0;
  if (b.oom || tq.oom) {
    snprintf(msg, cap, "out of memory");
    rc = -2;
    goto out;
  }
  /* 1. it prepares (syntax, columns of local and remote), as one boolean */
  r = PQprepare(c, "", b.p, 0, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    snprintf(msg, cap, "%s", first_line(r, c, why, sizeof why));
    rc = PQstatus(c) == CONNECTION_OK ? -1 : -2;
    PQclear(r);
    goto out;
  }
  PQclear(r);
  r = PQdescribePrepared(c, "");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    snprintf(msg, cap, "describing the rule's statement: %s", first_line(r, c, why, sizeof why));
    rc = -2;
  } else if (PQnfields(r) != 3 || PQftype(r, 2) != 16 /* BOOLOID */) {
    snprintf(msg, cap, "the expression must be one boolean (true: remote wins, false: local wins, NULL: no decision)");
    rc = -1;
  }
  PQclear(r);
  if (rc) goto out;
  /* 2. it reads only the two rows: as the body of a SQL function, inlined into an index expression,
   * PostgreSQL refuses it when it calls a function that is not immutable or holds a subquery */
  od_sqlbuf_reset(&b);
  od_sqlbuf_add(&b, "BEGIN; CREATE FUNCTION pg_temp.odsync_rule_probe(local ");
  od_sqlbuf_add(&b, tq.p);
  od_sqlbuf_add(&b, ", remote ");
  od_sqlbuf_add(&b, tq.p);
  od_sqlbuf_addf(&b, ") RETURNS bool LANGUAGE sql VOLATILE AS $odsync$ SELECT (%s\n) $odsync$; CREATE TEMP TABLE "
                     "odsync_rule_probe (l ", expr);
  od_sqlbuf_add(&b, tq.p);
  od_sqlbuf_add(&b, ", r ");
  od_sqlbuf_add(&b, tq.p);
  od_sqlbuf_add(&b, "); CREATE INDEX ON pg_temp.odsync_rule_probe ((pg_temp.odsync_rule_probe(l, r)))");
  if (b.oom) {
    snprintf(msg, cap, "out of memory");
    rc = -2;
    goto out;
  }
  r = PQexec(c, b.p);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state && strcmp(state, "42P17") == 0) /* invalid_object_definition: "must be marked IMMUTABLE" */
      snprintf(msg, cap, "the expression reads more than the two rows (a function that is not immutable such as "
               "now() or random(), a cast that depends on settings, or a subquery): every node must decide a "
               "conflict the same way, so a rule may only compute on local and remote");
    else
      snprintf(msg, cap, "%s", first_line(r, c, why, sizeof why));
    rc = PQstatus(c) == CONNECTION_OK ? -1 : -2;
  }
  PQclear(r);
  r = PQexec(c, "ROLLBACK");
  PQclear(r);
out:
  od_sqlbuf_free(&b);
  od_sqlbuf_free(&tq);
  return rc;
}
