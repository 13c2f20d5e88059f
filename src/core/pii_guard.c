/* pii_guard.c — see pii_guard.h. */
#include "core/pii_guard.h"

#include <stdlib.h>
#include <string.h>

#include "core/audit.h"
#include "core/lineage.h"
#include "core/log.h"
#include "core/pii.h"

#define MIN_HITS 3 /* a value kind is judged once this many values matched */

typedef struct col_state {
  bool checking;  /* still sampling */
  od_pii_tally t;
} col_state;

struct od_pii_rel {
  const od_relation *in;
  col_state *cols; /* in->ncolumns */
  int pending;     /* columns still sampling */
};

struct od_pii_guard {
  const od_pipeline_config *cfg;
  const od_sink_config *sk;
  int mode;
  uint32_t sample;
  od_pii_detector *det;
  od_pii_rel **rels;
  size_t n, cap;
};

int od_pii_guard_new(const od_pipeline_config *cfg, const od_sink_config *sk, od_pii_guard **out, od_error *err) {
  *out = NULL;
  if (cfg->pii.detect == OD_PII_OFF) return OD_OK;
  od_pii_guard *g = calloc(1, sizeof *g);
  if (!g) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  g->cfg = cfg;
  g->sk = sk;
  g->mode = cfg->pii.detect;
  g->sample = cfg->pii.sample > 0 ? (uint32_t)cfg->pii.sample : 64;
  int rc = od_pii_detector_new(&g->det, err);
  if (rc) {
    free(g);
    return rc;
  }
  *out = g;
  return OD_OK;
}

void od_pii_guard_free(od_pii_guard *g) {
  if (!g) return;
  for (size_t i = 0; i < g->n; i++) {
    free(g->rels[i]->cols);
    free(g->rels[i]);
  }
  free(g->rels);
  od_pii_detector_free(g->det);
  free(g);
}

static od_pii_rel *find(od_pii_guard *g, const od_relation *in) {
  for (size_t i = g->n; i-- > 0;)
    if (g->rels[i]->in == in) return g->rels[i];
  return NULL;
}

/* A column that looks like PII reaches the sink unprotected. */
static int flag(od_pii_guard *g, const od_relation *rel, const char *column, od_pii_kind kind, double conf,
                const od_pii_tally *t, od_error *err) {
  bool refuse = g->mode == OD_PII_ENFORCE;
  char table[300], evidence[96];
  snprintf(table, sizeof table, "%s.%s", rel->schema, rel->name);
  if (t)
    snprintf(evidence, sizeof evidence, "%u of %u checked values", t->hits[kind], t->values);
  else
    snprintf(evidence, sizeof evidence, "by its name");
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "\"sink\":");
  od_audit_json_str(&b, g->sk->name);
  od_sqlbuf_add(&b, ",\"table\":");
  od_audit_json_str(&b, table);
  od_sqlbuf_add(&b, ",\"column\":");
  od_audit_json_str(&b, column);
  od_sqlbuf_addf(&b, ",\"pii\":\"%s\",\"confidence\":%.2f,\"evidence\":", od_pii_kind_name(kind), conf);
  od_audit_json_str(&b, evidence);
  if (!b.oom) od_audit_record(g->cfg->name, refuse ? "pii_refused" : "pii_unmasked", b.p);
  od_sqlbuf_free(&b);
  if (!refuse) {
    od_warn("pii: pipeline %s sink %s: column %s.%s looks like %s (confidence %.2f, %s) and reaches the sink "
            "unmasked; add a mask, hash, pseudonymize, null or drop_columns transform for it (docs/PII.md)",
            g->cfg->name, g->sk->name, table, column, od_pii_kind_name(kind), conf, evidence);
    return OD_OK;
  }
  return OD_FAIL(err, OD_ECONFIG,
                 "pii.detect is enforce and column %s.%s looks like %s (confidence %.2f, %s): refusing to send it "
                 "unmasked to sink %s of pipeline %s; protect it for that sink, e.g. "
                 "- { type: mask, tables: [%s], columns: [%s] } (docs/PII.md), then restart",
                 table, column, od_pii_kind_name(kind), conf, evidence, g->sk->name, g->cfg->name, table, column);
}

int od_pii_guard_relation(od_pii_guard *g, const od_relation *in, od_pii_rel **out, od_error *err) {
  od_pii_rel *r = find(g, in);
  if (r) {
    *out = r->pending ? r : NULL;
    return OD_OK;
  }
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    od_pii_rel **grown = realloc(g->rels, cap * sizeof *grown);
    if (!grown) return OD_FAIL(err, OD_ENOMEM, "pii: out of memory");
    g->rels = grown;
    g->cap = cap;
  }
  r = calloc(1, sizeof *r);
  if (!r || !(r->cols = calloc(in->ncolumns ? in->ncolumns : 1, sizeof *r->cols))) {
    free(r);
    return OD_FAIL(err, OD_ENOMEM, "pii: out of memory");
  }
  r->in = in;
  g->rels[g->n++] = r;
  od_pii_rel *prev = in->previous ? find(g, in->previous) : NULL;
  for (int i = 0; i < in->ncolumns; i++) {
    const od_column *c = &in->columns[i];
    if (od_lineage_column_protected(g->cfg, g->sk, in->schema, in->name, c->name)) continue;
    if (prev) { /* a column the previous version had was judged there: only new ones are checked */
      int k = -1;
      for (int j = 0; j < prev->in->ncolumns && k < 0; j++)
        if (!strcmp(prev->in->columns[j].name, c->name)) k = j;
      if (k >= 0) {
        r->cols[i] = prev->cols[k];
        if (r->cols[i].checking) r->pending++;
        continue;
      }
    }
    double conf;
    od_pii_kind kind = od_pii_column_name(g->det, c->name, &conf);
    if ((kind == OD_PII_NAME || kind == OD_PII_ADDRESS || kind == OD_PII_BIRTHDATE) && conf >= 0.6) {
      int rc = flag(g, in, c->name, kind, conf, NULL, err);
      if (rc) return rc;
      continue;
    }
    r->cols[i].checking = true;
    r->pending++;
  }
  *out = r->pending ? r : NULL;
  return OD_OK;
}

static bool textual(uint32_t oid) {
  return oid == 25 || oid == 1043 || oid == 1042 || oid == 19; /* text, varchar, bpchar, name */
}

int od_pii_guard_change(od_pii_guard *g, od_pii_rel *r, const od_change *ch, od_error *err) {
  if (!r->pending || !ch->newtup.ncolumns) return OD_OK;
  const od_relation *in = r->in;
  int n = ch->newtup.ncolumns < in->ncolumns ? ch->newtup.ncolumns : in->ncolumns;
  for (int i = 0; i < n; i++) {
    col_state *s = &r->cols[i];
    if (!s->checking) continue;
    const od_value *v = &ch->newtup.values[i];
    if (v->kind != OD_VALUE_TEXT && !(v->kind == OD_VALUE_BINARY && textual(in->columns[i].type_oid))) continue;
    od_pii_kind k = od_pii_value(g->det, v->data, v->len);
    s->t.values++;
    s->t.hits[k]++;
    if (k != OD_PII_NONE && s->t.hits[k] >= MIN_HITS) {
      double conf;
      od_pii_kind verdict = od_pii_judge(g->det, in->columns[i].name, &s->t, MIN_HITS, &conf);
      if (verdict != OD_PII_NONE && verdict < OD_PII_NAME) {
        s->checking = false;
        r->pending--;
        int rc = flag(g, in, in->columns[i].name, verdict, conf, &s->t, err);
        if (rc) return rc;
        continue;
      }
    }
    if (s->t.values >= g->sample) { /* sampled enough: it does not look like PII */
      s->checking = false;
      r->pending--;
    }
  }
  return OD_OK;
}
