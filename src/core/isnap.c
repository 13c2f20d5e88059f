/* isnap.c — incremental snapshots (see isnap.h and docs/SNAPSHOTS.md, "Incremental snapshots").
 *
 * Owns: struct od_isnap — the worker thread; the source instances it opened (kept until close so
 * the relations queued rows point at stay valid); the rows of the chunk in flight (worker's arena,
 * read by the reader only in phase READY); the reader's window (the set of changed key tuples,
 * core/keytuple.h) and the marks and requests of the reader's open transaction; the progress
 * position of each pending request (a progress mark text, keytuple.h format).
 * Keys: any primary key or replica identity index (od_snap_table.key_cols), one column or many, any
 * type. A read row and a streamed change are matched by the text of their key columns (both are
 * printed by the source's output functions under the same settings), encoded with lengths.
 * Handshake per chunk (mutex + condvar): worker sets phase LOW and writes low(id); the reader
 * sees it, starts recording keys of the table and sets phase SEEN; the worker reads the chunk,
 * sets phase READY and writes high(id); the reader sees high(id), drops the rows whose key it
 * recorded, adds the others as OD_OP_READ changes and the progress mark to that transaction and
 * sets phase DONE; only then does the worker go on. Messages with an unknown id (an earlier
 * process or attempt) are ignored.
 * Never touches: the sink after open (marks travel through the queue), the stream's source.
 */
#include "common/pg_types.h"
#include "core/isnap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/keytuple.h"
#include "core/governance.h"
#include "core/log.h"

/* Progress marks before key tuples: an integer key k stored as the mark value k ^ 2^63. */
#define LEGACY_POS_BIAS (UINT64_C(1) << 63)
#define OID_INT8 OD_PGT_INT8 /* common/pg_types.h */
#define OID_INT2 OD_PGT_INT2
#define OID_INT4 OD_PGT_INT4
enum { PH_IDLE, PH_LOW, PH_SEEN, PH_READY, PH_DONE };
enum { RES_OK, RES_RETRY, RES_AGAIN, RES_UNKEYED };

typedef struct req {
  char name[192];
  char *pos; /* progress mark text (keytuple.h), NULL: from the first key; owned by the entry */
} req;

typedef struct pmark {
  char key[512];
  uint64_t value;
  char *text; /* non-NULL: a text mark (owned) */
} pmark;

struct od_isnap {
  const od_pipeline_config *cfg;
  const od_source_ops *src_ops;
  const od_isnap_ops *iops;
  od_schema *schema;
  od_pipeline_stats *stats;
  atomic_bool *stop;
  uint32_t chunk_rows;
  char prefix[96];
  char name[128]; /* the sink's mark namespace ("<pipeline>" or "<pipeline>.<sink>") */

  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  bool started, quit;
  req *todo; /* pending requests; todo[0] is the one being copied */
  int ntodo, todo_cap;
  /* the window (mu) */
  int phase, result;
  char id[48];
  uint32_t oid;
  od_relation *cat_rel;
  uint16_t key_cols[OD_SNAP_KEY_MAX]; /* the key's columns in cat_rel */
  int nkey;
  char form[192]; /* the source's text settings (od_snapshot_info.text_form) */
  od_change *rows;
  size_t nrows, rows_cap, emitted, dropped;
  bool last;
  od_arena arena;
  od_snap_visibility vis; /* what the chunk's read saw (worker writes before READY) */

  /* worker only */
  od_source **srcs;
  int nsrcs;
  uint64_t seq;

  /* reader only */
  bool recording;
  uint32_t rec_oid;
  char rec_keys[OD_SNAP_KEY_MAX][128]; /* names of the key columns recorded */
  int nrec;
  const od_relation *kc_rel;           /* the stream relation kc_idx was resolved for */
  uint16_t kc_idx[OD_SNAP_KEY_MAX];
  bool kc_ok;                          /* every key column is in kc_rel */
  od_keyset set;                       /* key tuples changed inside the open window */
  od_keybuf kb;
  bool all_changed;
  bool unkeyed; /* a change of the window carried no whole key (read the chunk again) */
  struct srel { uint32_t oid; const od_relation *rel; } *rels;
  int nrels;
  const od_relation *registered;
  uint32_t track_oid;     /* the table whose transactions are tracked (since its chunk 0 low) */
  uint64_t *pre, *win;    /* xids of transactions that touched it before the open window / inside it */
  int npre, pre_cap, nwin, win_cap;
  pmark *marks;
  int nmarks, marks_cap;
  req *newreq;
  int nnew, new_cap;
};

/* ---- small helpers --------------------------------------------------------------------------- */

static int grow(void **p, int *cap, int need, size_t size) {
  if (need <= *cap) return OD_OK;
  int n = *cap ? *cap * 2 : 8;
  while (n < need) n *= 2;
  void *q = realloc(*p, (size_t)n * size);
  if (!q) return OD_ENOMEM;
  *p = q;
  *cap = n;
  return OD_OK;
}

/* "<p>/isnap/<table>/<leaf>", or "<p>/isnap/<leaf>" without a table ("any": some request was made once,
 * so later sessions look for pending ones). */
static void mark_key(const od_isnap *is, const char *table, const char *leaf, char *out, size_t cap) {
  if (table)
    snprintf(out, cap, "%s/isnap/%s/%s", is->name, table, leaf);
  else
    snprintf(out, cap, "%s/isnap/%s", is->name, leaf);
}

/* The same key without the namespace, as marks travel in chunks (each sink's apply thread puts its
 * own namespace in front). */
static void rel_mark_key(const char *table, const char *leaf, char *out, size_t cap) {
  if (table)
    snprintf(out, cap, "isnap/%s/%s", table, leaf);
  else
    snprintf(out, cap, "isnap/%s", leaf);
}

/* Value of "field":"..." or "field":123 / true in a flat JSON object we wrote; "" when absent. */
static void json_field(const char *json, size_t len, const char *field, char *out, size_t cap) {
  out[0] = '\0';
  char pat[48];
  snprintf(pat, sizeof pat, "\"%s\":", field);
  size_t pl = strlen(pat);
  for (size_t i = 0; i + pl <= len; i++) {
    if (memcmp(json + i, pat, pl) != 0) continue;
    size_t j = i + pl, o = 0;
    bool quoted = j < len && json[j] == '"';
    if (quoted) j++;
    while (j < len && o + 1 < cap && (quoted ? json[j] != '"' : (json[j] != ',' && json[j] != '}')))
      out[o++] = json[j++];
    out[o] = '\0';
    return;
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- reader side ----------------------------------------------------------------------------- */

static int pend_mark(od_isnap *is, const char *table, const char *leaf, uint64_t value) {
  if (grow((void **)&is->marks, &is->marks_cap, is->nmarks + 1, sizeof *is->marks)) return OD_ENOMEM;
  pmark *m = &is->marks[is->nmarks++];
  rel_mark_key(table, leaf, m->key, sizeof m->key);
  m->value = value;
  m->text = NULL;
  return OD_OK;
}

/* A text mark; takes `text` (malloc'd; freed here on failure). */
static int pend_text_mark(od_isnap *is, const char *table, const char *leaf, char *text) {
  if (!text || grow((void **)&is->marks, &is->marks_cap, is->nmarks + 1, sizeof *is->marks)) {
    free(text);
    return OD_ENOMEM;
  }
  pmark *m = &is->marks[is->nmarks++];
  rel_mark_key(table, leaf, m->key, sizeof m->key);
  m->value = 0;
  m->text = text;
  return OD_OK;
}

/* The progress mark of the chunk in flight: the key of its last row (mu held, nrows > 0). NULL when
 * out of memory. */
static char *chunk_mark(const od_isnap *is) {
  const char *names[OD_SNAP_KEY_MAX], *types[OD_SNAP_KEY_MAX], *values[OD_SNAP_KEY_MAX];
  const od_tuple *last = &is->rows[is->nrows - 1].newtup;
  for (int i = 0; i < is->nkey; i++) {
    const od_column *c = &is->cat_rel->columns[is->key_cols[i]];
    names[i] = c->name;
    types[i] = c->type_name;
    values[i] = last->values[is->key_cols[i]].data ? last->values[is->key_cols[i]].data : "";
  }
  char *text = NULL;
  od_keymark_format(is->form, is->nkey, names, types, values, &text);
  return text;
}

void od_isnap_relation(od_isnap *is, const od_relation *rel) {
  if (!is) return;
  for (int i = 0; i < is->nrels; i++)
    if (is->rels[i].oid == rel->oid) {
      is->rels[i].rel = rel;
      return;
    }
  int cap = is->nrels; /* grows one by one: relations are few */
  struct srel *n = realloc(is->rels, (size_t)(cap + 1) * sizeof *n);
  if (!n) return; /* without it the catalog's relation is used, or the chunk retried */
  is->rels = n;
  n[is->nrels++] = (struct srel){.oid = rel->oid, .rel = rel};
}

static const od_relation *stream_rel(const od_isnap *is, uint32_t oid) {
  for (int i = 0; i < is->nrels; i++)
    if (is->rels[i].oid == oid) return is->rels[i].rel;
  return NULL;
}

static bool same_shape(const od_relation *a, const od_relation *b) {
  if (a->ncolumns != b->ncolumns) return false;
  for (uint16_t i = 0; i < a->ncolumns; i++)
    if (strcmp(a->columns[i].name, b->columns[i].name) || a->columns[i].type_oid != b->columns[i].type_oid ||
        a->columns[i].typmod != b->columns[i].typmod)
      return false;
  return true;
}

static int track_xid(od_isnap *is, uint64_t xid) {
  uint64_t **list = is->recording ? &is->win : &is->pre;
  int *n = is->recording ? &is->nwin : &is->npre, *cap = is->recording ? &is->win_cap : &is->pre_cap;
  if (*n && (*list)[*n - 1] == xid) return OD_OK;
  if (grow((void **)list, cap, *n + 1, sizeof **list)) return OD_ENOMEM;
  (*list)[(*n)++] = xid;
  return OD_OK;
}

/* At a high watermark: the window's transactions now lie before the next one; transactions every
 * later read will see (before the read's xmin) need no tracking. */
static int roll_tracked(od_isnap *is) {
  for (int i = 0; i < is->nwin; i++) {
    if (grow((void **)&is->pre, &is->pre_cap, is->npre + 1, sizeof *is->pre)) return OD_ENOMEM;
    is->pre[is->npre++] = is->win[i];
  }
  is->nwin = 0;
  int o = 0;
  for (int i = 0; i < is->npre; i++)
    if (!is->iops->settled(&is->vis, is->pre[i])) is->pre[o++] = is->pre[i];
  is->npre = o;
  return OD_OK;
}

/* A change of the table inside the window: remember its key tuples (new and old). */
static int record(od_isnap *is, const od_change *ch) {
  if (ch->op == OD_OP_TRUNCATE) {
    is->all_changed = true;
    return OD_OK;
  }
  if (ch->rel != is->kc_rel) { /* a new relation version: find the key columns by name */
    is->kc_rel = ch->rel;
    is->kc_ok = true;
    for (int k = 0; k < is->nrec && is->kc_ok; k++) {
      int found = -1;
      for (uint16_t i = 0; i < ch->rel->ncolumns && found < 0; i++)
        if (!strcmp(ch->rel->columns[i].name, is->rec_keys[k])) found = i;
      is->kc_ok = found >= 0;
      is->kc_idx[k] = (uint16_t)(found < 0 ? 0 : found);
    }
  }
  if (!is->kc_ok) { /* a key column is gone: nothing of this window can be trusted */
    is->all_changed = true;
    return OD_OK;
  }
  /* The new tuple has the key of an insert or update; the old one (deletes, key changes, an
   * unchanged TOASTed key) the key it had. A change with neither gives no key to drop. */
  const od_tuple *tups[2] = {&ch->newtup, &ch->oldtup};
  bool any = false;
  for (int t = 0; t < 2; t++) {
    if (!tups[t]->ncolumns) continue;
    int rc = od_key_encode(&is->kb, tups[t], is->kc_idx, is->nrec);
    if (rc < 0 || (rc == 1 && od_keyset_add(&is->set, is->kb.p, is->kb.len))) return OD_ENOMEM;
    any = any || rc == 1;
  }
  if (!any) is->unkeyed = true;
  return OD_OK;
}

static bool in_progress(od_isnap *is, const char *table) {
  for (int i = 0; i < is->ntodo; i++)
    if (!strcmp(is->todo[i].name, table)) return true;
  for (int i = 0; i < is->nnew; i++)
    if (!strcmp(is->newreq[i].name, table)) return true;
  return false;
}

/* The high watermark of the chunk in flight (mu held). */
static int take_chunk(od_isnap *is, const od_isnap_out *out, od_error *err) {
  /* A transaction that lies before the low watermark in the stream but that the read did not see
   * (committed, not yet visible: commit order and visibility order differ slightly): the read may
   * be older than the stream at the low watermark, and the window does not cover it. Read again. */
  bool stale = false;
  for (int i = 0; i < is->npre && !stale; i++) stale = !is->iops->saw(&is->vis, is->pre[i]);
  if (roll_tracked(is)) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
  if (stale) {
    is->result = RES_AGAIN;
    return OD_OK;
  }
  const od_relation *rel = stream_rel(is, is->oid);
  if (rel && !same_shape(rel, is->cat_rel)) {
    is->result = RES_RETRY; /* the table's shape changed: read again with the new one */
    return OD_OK;
  }
  if (is->unkeyed) { /* which row it changed is unknown: no read row can be trusted */
    is->result = RES_UNKEYED;
    return OD_OK;
  }
  if (!rel) { /* no change of the table streamed in this session yet: the catalog's relation */
    if (is->registered != is->cat_rel) {
      int rc = od_schema_relation(is->schema, is->cat_rel, err);
      if (rc) return rc;
      is->registered = is->cat_rel;
    }
    rel = is->cat_rel;
  }
  is->emitted = is->dropped = 0;
  for (size_t i = 0; i < is->nrows; i++) {
    od_change c = is->rows[i];
    int kr = is->all_changed ? 1 : od_key_encode(&is->kb, &c.newtup, is->key_cols, is->nkey);
    if (kr < 0) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
    if (kr == 0) /* keys are NOT NULL: a read row always has one */
      return OD_FAIL(err, OD_EPROTOCOL, "pipeline %s: incremental snapshot: a row read from %s.%s has no key value",
                     is->cfg->name, is->cat_rel->schema, is->cat_rel->name);
    if (is->all_changed || od_keyset_has(&is->set, is->kb.p, is->kb.len)) {
      is->dropped++;
      continue;
    }
    c.rel = rel;
    c.index = (uint32_t)(i + 1);
    int rc = out->row(out->ctx, &c, err);
    if (rc) return rc;
    is->emitted++;
  }
  is->result = RES_OK;
  return OD_OK;
}

static int on_message(od_isnap *is, const od_txn_info *txn, const char *json, size_t len, const od_isnap_out *out,
                      od_error *err) {
  char op[16], table[192], id[48], last[8];
  (void)txn;
  json_field(json, len, "op", op, sizeof op);
  json_field(json, len, "table", table, sizeof table);
  json_field(json, len, "id", id, sizeof id);
  json_field(json, len, "last", last, sizeof last);
  int rc = OD_OK;
  pthread_mutex_lock(&is->mu);
  if (!strcmp(op, "snapshot") && table[0]) {
    if (in_progress(is, table)) {
      od_info("pipeline %s: incremental snapshot of %s requested again; it is already pending", is->cfg->name, table);
    } else if (grow((void **)&is->newreq, &is->new_cap, is->nnew + 1, sizeof *is->newreq) ||
               pend_mark(is, table, "requested", 1) ||
               pend_mark(is, table, "pos", 0) || pend_mark(is, NULL, "any", 1)) {
      rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
    } else {
      req *r = &is->newreq[is->nnew++];
      memset(r, 0, sizeof *r);
      snprintf(r->name, sizeof r->name, "%s", table);
    }
  } else if (!strcmp(op, "low")) {
    if (is->phase == PH_LOW && !strcmp(id, is->id)) {
      is->phase = PH_SEEN;
      if (is->track_oid != is->oid) is->npre = 0; /* a new table: track its transactions from here */
      is->track_oid = is->oid;
      for (int i = 0; i < is->nwin; i++) /* an abandoned window (an error in the worker) */
        if (!grow((void **)&is->pre, &is->pre_cap, is->npre + 1, sizeof *is->pre)) is->pre[is->npre++] = is->win[i];
      is->nwin = 0;
      is->recording = true;
      is->rec_oid = is->oid;
      is->nrec = is->nkey;
      for (int k = 0; k < is->nkey; k++)
        snprintf(is->rec_keys[k], sizeof is->rec_keys[k], "%s", is->cat_rel->columns[is->key_cols[k]].name);
      is->kc_rel = NULL;
      is->all_changed = is->unkeyed = false;
      od_keyset_clear(&is->set);
      pthread_cond_broadcast(&is->cv);
    }
  } else if (!strcmp(op, "high")) {
    if (is->phase == PH_READY && !strcmp(id, is->id)) {
      is->recording = false;
      rc = take_chunk(is, out, err);
      if (!rc && is->result == RES_OK) {
        if (!strcmp(last, "true")) {
          if (pend_mark(is, table, "requested", 0) || pend_mark(is, table, "pos", 0))
            rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
        } else if (is->nrows) {
          if (pend_text_mark(is, table, "pos", chunk_mark(is)))
            rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
        }
      }
      is->phase = PH_DONE;
      pthread_cond_broadcast(&is->cv);
    }
  } else if (!strcmp(op, "cancel") && table[0]) {
    if (pend_mark(is, table, "requested", 0) || pend_mark(is, table, "pos", 0))
      rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
  }
  pthread_mutex_unlock(&is->mu);
  return rc;
}

int od_isnap_change(od_isnap *is, const od_txn_info *txn, const od_change *ch, const od_isnap_out *out,
                    bool *consumed, od_error *err) {
  *consumed = false;
  if (!is) return OD_OK;
  if (ch->op == OD_OP_MESSAGE) {
    const od_value *pv = &ch->newtup.values[0], *cv = &ch->newtup.values[1];
    if (ch->newtup.ncolumns < 2 || !pv->data || strlen(is->prefix) != pv->len ||
        memcmp(pv->data, is->prefix, pv->len) != 0)
      return OD_OK;
    *consumed = true;
    return cv->data ? on_message(is, txn, cv->data, cv->len, out, err) : OD_OK;
  }
  if (!ch->rel || !is->track_oid || ch->rel->oid != is->track_oid) return OD_OK;
  if (track_xid(is, txn->xid) || (is->recording && ch->rel->oid == is->rec_oid && record(is, ch)))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
  return OD_OK;
}

int od_isnap_commit(od_isnap *is, const od_txn_info *txn, const od_isnap_out *out, od_error *err) {
  (void)txn;
  if (!is || (!is->nmarks && !is->nnew)) return OD_OK;
  int rc = OD_OK;
  for (int i = 0; i < is->nmarks; i++) {
    pmark *m = &is->marks[i];
    if (!rc) rc = m->text ? out->text_mark(out->ctx, m->key, m->text, err) : out->mark(out->ctx, m->key, m->value, err);
    free(m->text);
    m->text = NULL;
  }
  is->nmarks = 0;
  pthread_mutex_lock(&is->mu);
  for (int i = 0; i < is->nnew && !rc; i++) {
    if (grow((void **)&is->todo, &is->todo_cap, is->ntodo + 1, sizeof *is->todo)) {
      rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
      break;
    }
    is->todo[is->ntodo++] = is->newreq[i];
    od_info("pipeline %s: incremental snapshot of %s requested", is->cfg->name, is->newreq[i].name);
    od_gov_isnap(is->cfg->name, is->newreq[i].name, "isnap_requested", 0, 0);
  }
  is->nnew = 0;
  pthread_cond_broadcast(&is->cv);
  pthread_mutex_unlock(&is->mu);
  return rc;
}

/* ---- worker ---------------------------------------------------------------------------------- */

static bool quitting(od_isnap *is) { return is->quit || atomic_load(is->stop); }

/* A source instance of the worker's own with the current table list (relations from the catalog). */
static int open_tables(od_isnap *is, od_snapshot_info *info, od_source **out, od_error *err) {
  od_source *s = NULL;
  int rc = is->src_ops->open(&is->cfg->source, is->cfg->name, &s, err);
  if (rc) return rc;
  od_source **n = realloc(is->srcs, (size_t)(is->nsrcs + 1) * sizeof *n);
  if (!n) {
    is->src_ops->close(s);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
  }
  is->srcs = n;
  /* The previous instance disconnects but stays allocated until close: queued rows point at its
   * relations. At most one connection is open. */
  if (is->nsrcs) is->src_ops->snapshot->finish(is->srcs[is->nsrcs - 1]);
  is->srcs[is->nsrcs++] = s;
  *out = s;
  return is->src_ops->snapshot->prepare(s, false, info, err);
}

static od_snap_table *find_table(od_snapshot_info *info, const char *name) {
  for (int i = 0; i < info->ntables; i++)
    if (!strcmp(info->tables[i].name, name)) return &info->tables[i];
  return NULL;
}

const char *od_isnap_refusal(const od_snap_table *t) {
  if (t->nkey > 0 && t->nkey <= OD_SNAP_KEY_MAX) return NULL;
  return t->no_keyset[0] ? t->no_keyset : "it has no primary key";
}

/* The key values of a progress mark for table t, when the mark describes t's key (same columns,
 * same types) printed under the same text settings; else NULL and *why says what differs. */
static const char *const *mark_values(const od_keymark *m, const od_snap_table *t, const char *form,
                                      const char **why) {
  *why = NULL;
  if (strcmp(m->form, form)) {
    *why = "the source's text settings differ";
    return NULL;
  }
  if (m->n != t->nkey) {
    *why = "the table's key has other columns now";
    return NULL;
  }
  for (int i = 0; i < m->n; i++) {
    const od_column *c = &t->rel->columns[t->key_cols[i]];
    if (strcmp(m->names[i], c->name) || strcmp(m->types[i], c->type_name)) {
      *why = "the table's key has other columns or types now";
      return NULL;
    }
  }
  return (const char *const *)m->values;
}

static int keep_rows(void *ctx, const od_change *rows, size_t n, od_error *err) {
  od_isnap *is = ctx;
  if (is->nrows + n > is->rows_cap) {
    size_t cap = is->rows_cap ? is->rows_cap : 1024;
    while (cap < is->nrows + n) cap *= 2;
    od_change *c = realloc(is->rows, cap * sizeof *c);
    if (!c) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
    is->rows = c;
    is->rows_cap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    od_change *d = &is->rows[is->nrows + i];
    *d = rows[i];
    uint16_t nc = rows[i].newtup.ncolumns;
    d->newtup.values = od_arena_alloc(&is->arena, sizeof(od_value) * (nc ? nc : 1));
    if (!d->newtup.values) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
    for (uint16_t c = 0; c < nc; c++) {
      const od_value *v = &rows[i].newtup.values[c];
      d->newtup.values[c] = *v;
      if (v->data && !(d->newtup.values[c].data = od_arena_strndup(&is->arena, v->data, v->len)))
        return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
    }
  }
  is->nrows += n;
  return OD_OK;
}

/* Wait (mu held) until the reader moved the window to `phase`; false when stopping. */
static bool wait_phase(od_isnap *is, int phase) {
  while (is->phase != phase) {
    if (quitting(is)) return false;
    struct timespec ts = od_deadline_ms(100);
    pthread_cond_timedwait(&is->cv, &is->mu, &ts);
  }
  return true;
}

static int emit(od_isnap *is, od_source *s, const char *json, od_error *err) {
  return is->iops->emit(s, is->prefix, json, err);
}

/* One chunk: low watermark, read (after the key tuple `after`, NULL: from the first key), high
 * watermark, wait until the reader has applied it. */
static int one_chunk(od_isnap *is, od_source *s, od_snap_table *t, const char *form, const char *const *after,
                     uint32_t no, od_error *err) {
  /* Chunk 0 is a window without a read: the reader starts tracking the table's transactions, so the
   * first real chunk can check that its read saw every one of them before its low watermark. */
  char json[512];
  pthread_mutex_lock(&is->mu);
  snprintf(is->id, sizeof is->id, "%08x-%04x-%016llx", (unsigned)time(NULL), (unsigned)(no & 0xffff),
           (unsigned long long)(++is->seq * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(uintptr_t)is));
  is->phase = PH_LOW;
  is->oid = t->rel->oid;
  is->cat_rel = t->rel;
  is->nkey = t->nkey;
  memcpy(is->key_cols, t->key_cols, sizeof is->key_cols);
  snprintf(is->form, sizeof is->form, "%s", form);
  is->nrows = 0;
  od_arena_reset(&is->arena);
  snprintf(json, sizeof json, "{\"op\":\"low\",\"table\":\"%s\",\"chunk\":%u,\"id\":\"%s\"}", t->name, no, is->id);
  pthread_mutex_unlock(&is->mu);
  int rc = emit(is, s, json, err);
  if (rc) return rc;
  pthread_mutex_lock(&is->mu);
  bool ok = wait_phase(is, PH_SEEN);
  pthread_mutex_unlock(&is->mu);
  if (!ok) return OD_FAIL(err, OD_ECANCELLED, "stopping");
  if (no == 0) return OD_OK;
  /* The reader records the window from here on; the rows are ours until phase READY. */
  rc = is->iops->read_after(s, t, after, is->chunk_rows, &is->vis, keep_rows, is, err);
  if (rc) return rc;
  pthread_mutex_lock(&is->mu);
  is->last = is->nrows < is->chunk_rows;
  is->phase = PH_READY;
  snprintf(json, sizeof json, "{\"op\":\"high\",\"table\":\"%s\",\"chunk\":%u,\"id\":\"%s\",\"last\":%s}", t->name,
           no, is->id, is->last ? "true" : "false");
  pthread_mutex_unlock(&is->mu);
  if ((rc = emit(is, s, json, err))) return rc;
  pthread_mutex_lock(&is->mu);
  ok = wait_phase(is, PH_DONE);
  is->phase = PH_IDLE;
  pthread_mutex_unlock(&is->mu);
  if (!ok) return OD_FAIL(err, OD_ECANCELLED, "stopping");
  return OD_OK;
}

/* Where the copy of t continues: r->pos parsed into *m. Returns the key values to read after, or
 * NULL to start from the first key (no mark, or one that no longer fits: logged). */
static const char *const *resume_from(od_isnap *is, const req *r, const od_snap_table *t, const char *form,
                                      od_keymark *m) {
  od_keymark_free(m);
  if (!r->pos) return NULL;
  const char *why = NULL;
  const char *const *after = NULL;
  if (od_keymark_parse(r->pos, m))
    why = "it cannot be read";
  else
    after = mark_values(m, t, form, &why);
  if (!after)
    od_warn("pipeline %s: incremental snapshot of %s: the progress mark is not used (%s); starting from the first "
            "key", is->cfg->name, r->name, why);
  return after;
}

/* Copy one requested table. OD_OK when it is done or refused; an error to retry later. r->pos
 * (owned by the caller) follows the progress; so does is->todo[0].pos, for a retry after an error. */
static int copy_table(od_isnap *is, req *r, od_error *err) {
  od_snapshot_info info;
  od_source *s;
  int rc = open_tables(is, &info, &s, err);
  if (rc) return rc;
  od_snap_table *t = find_table(&info, r->name);
  const char *why = t ? od_isnap_refusal(t) : "it is not in the pipeline's publication";
  if (why) {
    od_error_log("pipeline %s: incremental snapshot of %s refused: %s", is->cfg->name, r->name, why);
    char json[320];
    snprintf(json, sizeof json, "{\"op\":\"cancel\",\"table\":\"%s\"}", r->name);
    return emit(is, s, json, err);
  }
  od_keymark pos = {0};
  const char *const *after = resume_from(is, r, t, info.text_form, &pos);
  if (after) {
    char desc[512];
    od_keymark_describe(&pos, desc, sizeof desc);
    od_info("pipeline %s: incremental snapshot of %s: continuing from the progress mark (key %s)", is->cfg->name,
            r->name, desc);
  } else {
    od_info("pipeline %s: incremental snapshot of %s: starting (%u rows per chunk)", is->cfg->name, r->name,
            is->chunk_rows);
  }
  od_gov_isnap(is->cfg->name, r->name, "isnap_table_start", 0, 0);
  int64_t t0 = od_mono_us();
  uint64_t rows = 0, dropped = 0;
  if ((rc = one_chunk(is, s, t, info.text_form, after, 0, err))) goto out;
  pthread_mutex_lock(&is->mu);
  is->phase = PH_IDLE;
  pthread_mutex_unlock(&is->mu);
  for (uint32_t no = 1;; no++) {
    if ((rc = one_chunk(is, s, t, info.text_form, after, no, err))) goto out;
    pthread_mutex_lock(&is->mu);
    int result = is->result;
    size_t emitted = is->emitted, drop = is->dropped, n = is->nrows;
    bool last = is->last;
    char *mark = result == RES_OK && n ? chunk_mark(is) : NULL;
    pthread_mutex_unlock(&is->mu);
    if (result == RES_AGAIN || result == RES_UNKEYED) {
      od_debug("pipeline %s: incremental snapshot of %s: chunk %u: %s; reading it again", is->cfg->name, r->name, no,
               result == RES_AGAIN ? "a transaction before the low watermark was not yet visible to the read"
                                   : "a change inside the window carried no key value");
      no--;
      continue;
    }
    if (result == RES_RETRY) {
      od_info("pipeline %s: incremental snapshot of %s: the table's columns changed; reading the chunk again",
              is->cfg->name, r->name);
      sleep_ms(1000);
      if ((rc = open_tables(is, &info, &s, err))) goto out;
      if (!(t = find_table(&info, r->name)) || od_isnap_refusal(t)) {
        rc = OD_FAIL_RETRY(err, OD_ESOURCE, "%s changed", r->name);
        goto out;
      }
      /* The key may have other columns now: a mismatch starts over from the first key. */
      after = resume_from(is, r, t, info.text_form, &pos);
      no--;
      continue;
    }
    if (n && !mark) {
      rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
      goto out;
    }
    rows += emitted;
    dropped += drop;
    atomic_fetch_add(&is->stats->isnap_rows, emitted);
    atomic_fetch_add(&is->stats->isnap_dropped, drop);
    atomic_fetch_add(&is->stats->isnap_chunks, 1);
    if (mark) {
      char *copy = strdup(mark);
      pthread_mutex_lock(&is->mu);
      free(r->pos);
      r->pos = mark;
      free(is->todo[0].pos); /* an error retry continues here (NULL when out of memory: from the start) */
      is->todo[0].pos = copy;
      pthread_mutex_unlock(&is->mu);
      od_keymark_free(&pos); /* `after` pointed into it: replaced just below */
      if (od_keymark_parse(r->pos, &pos)) {
        rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
        goto out;
      }
      after = (const char *const *)pos.values;
    }
    od_debug("pipeline %s: incremental snapshot of %s: chunk %u: %zu rows read, %zu written, %zu changed in the "
             "window (taken from the stream)%s", is->cfg->name, r->name, no, n, emitted, drop, last ? "; last" : "");
    if (last) break;
  }
  atomic_fetch_add(&is->stats->isnap_tables, 1);
  od_gov_isnap(is->cfg->name, r->name, "isnap_table_done", rows, dropped);
  od_info("pipeline %s: incremental snapshot of %s done: %llu rows written, %llu taken from the stream, %.1f s",
          is->cfg->name, r->name, (unsigned long long)rows, (unsigned long long)dropped,
          (double)(od_mono_us() - t0) / 1e6);
out:
  od_keymark_free(&pos);
  return rc;
}

static void *worker_main(void *arg) {
  od_isnap *is = arg;
  od_log_set_thread_pipeline(is->cfg->name);
  long backoff = 500;
  for (;;) {
    pthread_mutex_lock(&is->mu);
    while (!quitting(is) && !is->ntodo) {
      struct timespec ts = od_deadline_ms(1000);
      pthread_cond_timedwait(&is->cv, &is->mu, &ts);
    }
    if (quitting(is)) {
      pthread_mutex_unlock(&is->mu);
      break;
    }
    req r = is->todo[0]; /* the worker's copy: its own pos */
    r.pos = is->todo[0].pos ? strdup(is->todo[0].pos) : NULL;
    bool oom = is->todo[0].pos && !r.pos;
    pthread_mutex_unlock(&is->mu);
    atomic_store(&is->stats->isnap_active, 1);
    od_error err;
    od_error_clear(&err);
    int rc = oom ? OD_FAIL(&err, OD_ENOMEM, "out of memory") : copy_table(is, &r, &err);
    free(r.pos);
    atomic_store(&is->stats->isnap_active, 0);
    if (quitting(is)) break;
    if (rc) {
      od_warn("pipeline %s: incremental snapshot of %s: %s; retrying in %.1f s", is->cfg->name, r.name, err.msg,
              backoff / 1000.0);
      for (long w = 0; w < backoff && !quitting(is); w += 100) sleep_ms(100);
      backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
      continue;
    }
    backoff = 500;
    pthread_mutex_lock(&is->mu);
    free(is->todo[0].pos);
    memmove(is->todo, is->todo + 1, (size_t)(is->ntodo - 1) * sizeof *is->todo);
    is->ntodo--;
    pthread_mutex_unlock(&is->mu);
  }
  return NULL;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static const od_isnap_ops *incremental_ops(const od_source_ops *src) {
  return src->snapshot ? src->snapshot->incremental : NULL;
}

int od_isnap_chunk_rows(const od_pipeline_config *cfg, uint32_t *out, od_error *err) {
  long rows;
  int rc = od_config_int(&cfg->source, "incremental_chunk_rows", 10000, 100, 1000000, &rows, err);
  *out = (uint32_t)rows;
  return rc;
}

/* An integer progress mark of an earlier version (value = key ^ 2^63, a single integer key column):
 * the same position as a key tuple, when t's key is still that one column (else NULL: the copy
 * starts over, which is safe, only slower). */
static int legacy_pos(od_isnap *is, const od_snap_table *t, const od_snapshot_info *info, uint64_t v, char **out,
                      od_error *err) {
  *out = NULL;
  const od_column *c = t->nkey == 1 ? &t->rel->columns[t->key_cols[0]] : NULL;
  if (!c || (c->type_oid != OID_INT2 && c->type_oid != OID_INT4 && c->type_oid != OID_INT8)) {
    od_warn("pipeline %s: incremental snapshot of %s: the integer progress mark of an earlier version does not fit "
            "the table's key any more; starting from the first key", is->cfg->name, t->name);
    return OD_OK;
  }
  char value[32];
  snprintf(value, sizeof value, "%lld", (long long)(int64_t)(v ^ LEGACY_POS_BIAS));
  const char *name = c->name, *type = c->type_name, *val = value;
  if (od_keymark_format(info->text_form, 1, &name, &type, &val, out))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", is->cfg->name);
  return OD_OK;
}

int od_isnap_open(const od_pipeline_config *cfg, const char *name, const od_source_ops *src_ops, od_sink *sink,
                  od_schema *schema, od_pipeline_stats *stats, atomic_bool *stop, od_isnap **out, od_error *err) {
  *out = NULL;
  if (!incremental_ops(src_ops) || !od_sink_can(sink, OD_SINK_MARKS | OD_SINK_TEXT_MARKS)) return OD_OK;
  od_isnap *is = calloc(1, sizeof *is);
  if (!is) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  *is = (od_isnap){.cfg = cfg, .src_ops = src_ops, .iops = incremental_ops(src_ops), .schema = schema,
                   .stats = stats, .stop = stop};
  snprintf(is->prefix, sizeof is->prefix, "odsync:%s", cfg->name);
  snprintf(is->name, sizeof is->name, "%s", name);
  pthread_mutex_init(&is->mu, NULL);
  od_cond_init(&is->cv);
  od_arena_init(&is->arena, 1u << 20);
  od_keyset_init(&is->set);
  int rc = od_isnap_chunk_rows(cfg, &is->chunk_rows, err);
  /* Pending requests of earlier sessions. Only pipelines that ever had one list their tables. */
  char key[512];
  uint64_t any = 0, v = 0;
  mark_key(is, NULL, "any", key, sizeof key);
  if (!rc) rc = od_sink_get_mark(sink, key, &any, err);
  if (!rc && any) {
    od_snapshot_info info;
    od_source *s;
    rc = open_tables(is, &info, &s, err);
    for (int i = 0; !rc && i < info.ntables; i++) {
      mark_key(is, info.tables[i].name, "requested", key, sizeof key);
      if ((rc = od_sink_get_mark(sink, key, &v, err)) || !v) continue;
      if (grow((void **)&is->todo, &is->todo_cap, is->ntodo + 1, sizeof *is->todo)) {
        rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
        break;
      }
      req *r = &is->todo[is->ntodo++];
      memset(r, 0, sizeof *r);
      snprintf(r->name, sizeof r->name, "%s", info.tables[i].name);
      mark_key(is, r->name, "pos", key, sizeof key);
      if ((rc = od_sink_get_text_mark(sink, key, &r->pos, err))) break;
      if (!r->pos && (rc = od_sink_get_mark(sink, key, &v, err))) break;
      if (!r->pos && v && (rc = legacy_pos(is, &info.tables[i], &info, v, &r->pos, err))) break;
      od_info("pipeline %s: incremental snapshot of %s is pending from an earlier run", cfg->name, r->name);
    }
  }
  if (!rc && pthread_create(&is->thread, NULL, worker_main, is) != 0)
    rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: cannot start the incremental snapshot thread", cfg->name);
  if (rc) {
    od_isnap_close(is);
    return rc;
  }
  is->started = true;
  *out = is;
  return OD_OK;
}

void od_isnap_close(od_isnap *is) {
  if (!is) return;
  if (is->started) {
    pthread_mutex_lock(&is->mu);
    is->quit = true;
    pthread_cond_broadcast(&is->cv);
    pthread_mutex_unlock(&is->mu);
    pthread_join(is->thread, NULL);
  }
  atomic_store(&is->stats->isnap_active, 0);
  for (int i = 0; i < is->nsrcs; i++) is->src_ops->close(is->srcs[i]);
  free(is->srcs);
  od_arena_destroy(&is->arena);
  pthread_mutex_destroy(&is->mu);
  pthread_cond_destroy(&is->cv);
  for (int i = 0; i < is->ntodo; i++) free(is->todo[i].pos);
  for (int i = 0; i < is->nnew; i++) free(is->newreq[i].pos);
  for (int i = 0; i < is->nmarks; i++) free(is->marks[i].text);
  free(is->todo);
  free(is->rows);
  od_keyset_free(&is->set);
  od_keybuf_free(&is->kb);
  free(is->rels);
  free(is->marks);
  free(is->newreq);
  free(is->pre);
  free(is->win);
  free(is);
}
