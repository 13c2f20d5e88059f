/* pii_scan.c — see pii_scan.h. Sampling: a table whose planner estimate (reltuples) is under
 * twice the row budget, or unknown, is read with a plain LIMIT; a larger one with TABLESAMPLE
 * BERNOULLI (rows spread over the table) up to a million estimated rows, SYSTEM (whole pages,
 * cheaper) beyond; a sample that comes back under a quarter of the budget (stale estimate) is
 * read again with LIMIT. */
#include "core/pii_scan.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "common/sqlbuf.h"
#include "core/lineage.h"
#include "core/pii.h"

typedef struct found {
  char table[300];
  char column[128];
  od_pii_kind kind;
  double confidence;
  uint32_t hits, values;
} found;

typedef struct scan {
  PGconn *conn;
  od_pii_detector *det;
  found *f;
  int nf, capf;
  int rows;
  FILE *out;
} scan;

static int add_found(scan *s, const found *x) {
  if (s->nf == s->capf) {
    int cap = s->capf ? s->capf * 2 : 32;
    found *g = realloc(s->f, (size_t)cap * sizeof *g);
    if (!g) return -1;
    s->f = g;
    s->capf = cap;
  }
  s->f[s->nf++] = *x;
  return 0;
}

static PGresult *query(scan *s, const char *sql, int n, const char *const *params, od_error *err) {
  PGresult *r = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    OD_FAIL(err, OD_ESOURCE, "scan: query failed: %s", PQresultErrorMessage(r));
    PQclear(r);
    return NULL;
  }
  return r;
}

static PGresult *sample(scan *s, const char *cols, const char *rel, double reltuples, const char **method,
                        od_error *err) {
  char sql[16384];
  static char how[64];
  PGresult *r = NULL;
  if (reltuples > 2.0 * s->rows) {
    double pct = 100.0 * s->rows * 1.5 / reltuples;
    if (pct > 100) pct = 100;
    const char *m = reltuples > 1e6 ? "SYSTEM" : "BERNOULLI";
    snprintf(sql, sizeof sql, "SELECT %s FROM %s TABLESAMPLE %s (%.6f) LIMIT %d", cols, rel, m, pct, s->rows);
    if (!(r = query(s, sql, 0, NULL, err))) return NULL;
    if (PQntuples(r) >= s->rows / 4) {
      snprintf(how, sizeof how, "TABLESAMPLE %s %.4g%%", m, pct);
      *method = how;
      return r;
    }
    PQclear(r);
  }
  snprintf(sql, sizeof sql, "SELECT %s FROM %s LIMIT %d", cols, rel, s->rows);
  *method = reltuples > 2.0 * s->rows ? "LIMIT (the sample came back short: stale estimate)" : "LIMIT (small table)";
  return query(s, sql, 0, NULL, err);
}

static int scan_table(scan *s, const char *oid, const char *schema, const char *name, double reltuples, od_error *err) {
  const char *p[1] = {oid};
  PGresult *cr = query(s, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::oid "
                          "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", 1, p, err);
  if (!cr) return OD_ESOURCE;
  int nc = PQntuples(cr);
  od_sqlbuf cols = {0}, rel = {0};
  for (int i = 0; i < nc; i++) {
    if (i) od_sqlbuf_add(&cols, ", ");
    od_sqlbuf_ident(&cols, PQgetvalue(cr, i, 0));
    od_sqlbuf_add(&cols, "::text");
  }
  od_sqlbuf_ident(&rel, schema);
  od_sqlbuf_add(&rel, ".");
  od_sqlbuf_ident(&rel, name);
  const char *method = "";
  PGresult *r = nc && !cols.oom && !rel.oom ? sample(s, cols.p, rel.p, reltuples, &method, err) : NULL;
  od_sqlbuf_free(&cols);
  od_sqlbuf_free(&rel);
  if (!r && nc) {
    PQclear(cr);
    return OD_ESOURCE;
  }
  int nr = r ? PQntuples(r) : 0;
  fprintf(s->out, "  %s.%s: %d row%s sampled (%s), %d columns\n", schema, name, nr, nr == 1 ? "" : "s", method, nc);
  int flagged = 0;
  for (int c = 0; c < nc; c++) {
    od_pii_tally t = {0};
    for (int i = 0; i < nr; i++) {
      if (PQgetisnull(r, i, c)) continue;
      t.values++;
      t.hits[od_pii_value(s->det, PQgetvalue(r, i, c), (size_t)PQgetlength(r, i, c))]++;
    }
    found x = {0};
    x.kind = od_pii_judge(s->det, PQgetvalue(cr, c, 0), &t, t.values >= 5 ? 3 : 1, &x.confidence);
    if (x.kind == OD_PII_NONE) continue;
    snprintf(x.table, sizeof x.table, "%s.%s", schema, name);
    snprintf(x.column, sizeof x.column, "%s", PQgetvalue(cr, c, 0));
    x.hits = t.hits[x.kind];
    x.values = t.values;
    if (add_found(s, &x)) break;
    flagged++;
    if (x.kind >= OD_PII_NAME)
      fprintf(s->out, "    %-24s %-10s confidence %.2f  (by its name)\n", x.column, od_pii_kind_name(x.kind), x.confidence);
    else
      fprintf(s->out, "    %-24s %-10s confidence %.2f  (%u of %u sampled values)\n", x.column,
              od_pii_kind_name(x.kind), x.confidence, x.hits, x.values);
  }
  if (!flagged) fprintf(s->out, "    no column looks like PII\n");
  PQclear(r);
  PQclear(cr);
  return OD_OK;
}

/* The transform that protects a kind, as a config mapping's keys after `type:`. */
static const char *protect(od_pii_kind k) {
  switch (k) {
    case OD_PII_EMAIL: return "type: mask, style: email";
    case OD_PII_PHONE: return "type: mask, style: phone";
    case OD_PII_CARD: return "type: mask, style: card";
    case OD_PII_IBAN: return "type: mask, style: keep_last, keep: 4";
    case OD_PII_SSN:
    case OD_PII_NINO:
    case OD_PII_NAME: return "type: pseudonymize, key: \"${env:ODSYNC_PII_KEY}\"";
    case OD_PII_BIRTHDATE: return "type: truncate_date, unit: year";
    default: return "type: mask";
  }
}

static void print_block(scan *s, const od_pipeline_config *cfg) {
  fprintf(s->out, "\n# transforms for pipeline %s (paste under the pipeline, or under a sink to protect that sink "
          "only;\n# columns of confidence below 0.5 are commented out; pseudonymize needs ODSYNC_PII_KEY, >= 16 bytes)\n",
          cfg->name);
  if (!s->nf) {
    fprintf(s->out, "# (nothing found)\n");
    return;
  }
  fprintf(s->out, "    transforms:\n");
  bool *done = calloc((size_t)s->nf, sizeof *done);
  if (!done) return;
  for (int i = 0; i < s->nf; i++) {
    if (done[i]) continue;
    /* one line per table and protection: every column of it with the same transform */
    const char *how = protect(s->f[i].kind);
    bool weak = s->f[i].confidence < 0.5;
    od_sqlbuf cols = {0};
    for (int j = i; j < s->nf; j++) {
      if (done[j] || strcmp(s->f[j].table, s->f[i].table) || strcmp(protect(s->f[j].kind), how) ||
          (s->f[j].confidence < 0.5) != weak)
        continue;
      if (cols.len) od_sqlbuf_add(&cols, ", ");
      od_sqlbuf_add(&cols, s->f[j].column);
      done[j] = true;
    }
    /* truncate_date only applies to date types: suggested for a birth date column by name */
    fprintf(s->out, "    %s  - { %s, tables: [%s], columns: [%s] }\n", weak ? "# " : "  ", how, s->f[i].table,
            cols.oom ? "?" : cols.p);
    od_sqlbuf_free(&cols);
  }
  free(done);
}

int od_pii_scan(const od_pipeline_config *cfg, int rows, FILE *out, od_error *err) {
  if (!cfg->source.type || strcmp(cfg->source.type, "postgres") != 0)
    return OD_FAIL(err, OD_EUNSUPPORTED, "scan: pipeline %s: source type %s is not scanned (only postgres sources "
                   "are)", cfg->name, cfg->source.type ? cfg->source.type : "?");
  const od_config_entry *dsn = od_config_find(&cfg->source, "dsn");
  if (!dsn || !dsn->value) return OD_FAIL(err, OD_ECONFIG, "scan: pipeline %s: the source has no dsn", cfg->name);
  scan s = {.rows = rows, .out = out};
  s.conn = PQconnectdb(dsn->value);
  if (PQstatus(s.conn) != CONNECTION_OK) {
    /* libpq's message names host and port, never the password */
    OD_FAIL(err, OD_ECONNECT, "scan: pipeline %s: cannot connect to the source: %s", cfg->name,
            PQerrorMessage(s.conn));
    PQfinish(s.conn);
    return OD_ECONNECT;
  }
  int rc = od_pii_detector_new(&s.det, err);
  PGresult *tr = NULL;
  const od_config_entry *tables = od_config_find(&cfg->source, "tables");
  const char *list_sql =
      "SELECT c.oid, n.nspname, c.relname, c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = "
      "c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', "
      "'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' %s ORDER BY 2, 3";
  char sql[1024];
  if (!rc) {
    if (tables) { /* the captured tables as PostgreSQL reads their names */
      snprintf(sql, sizeof sql, list_sql, "AND c.oid = ANY ($1::regclass[])");
      od_sqlbuf arr = {0};
      od_sqlbuf_add(&arr, "{");
      int n = tables->list ? tables->nlist : 1;
      for (int i = 0; i < n; i++) {
        const char *t = tables->list ? tables->list[i] : tables->value;
        if (i) od_sqlbuf_add(&arr, ",");
        od_sqlbuf_add(&arr, "\"");
        for (const char *c = t; *c; c++) od_sqlbuf_add(&arr, *c == '"' ? "\\\"" : *c == '\\' ? "\\\\" : (char[2]){*c, 0});
        od_sqlbuf_add(&arr, "\"");
      }
      od_sqlbuf_add(&arr, "}");
      const char *p[1] = {arr.p};
      tr = arr.oom ? NULL : query(&s, sql, 1, p, err);
      od_sqlbuf_free(&arr);
    } else {
      snprintf(sql, sizeof sql, list_sql, "");
      tr = query(&s, sql, 0, NULL, err);
    }
    if (!tr) rc = OD_ESOURCE;
  }
  if (!rc) {
    int nt = PQntuples(tr);
    fprintf(out, "pipeline %s: %d table%s of the source, at most %d rows sampled per table\n", cfg->name, nt,
            nt == 1 ? "" : "s", rows);
    for (int i = 0; i < nt && !rc; i++)
      rc = scan_table(&s, PQgetvalue(tr, i, 0), PQgetvalue(tr, i, 1), PQgetvalue(tr, i, 2),
                      strtod(PQgetvalue(tr, i, 3), NULL), err);
    if (!rc) print_block(&s, cfg);
  }
  PQclear(tr);
  free(s.f);
  od_pii_detector_free(s.det);
  PQfinish(s.conn);
  return rc;
}
