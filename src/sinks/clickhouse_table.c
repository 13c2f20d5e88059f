/* clickhouse_table.c — per relation version of the ClickHouse sink: the target table (created as
 * ReplacingMergeTree(_odsync_version) ordered by the key, with the deleted flag), its view
 * `<table><view_suffix>` (FINAL, deleted rows hidden), schema changes (ADD / DROP / RENAME COLUMN,
 * widening), and the open batch's rows of that table: encoded once into a buffer, indexed by key
 * so an update's unchanged TOAST values come from the batch's own newer row, else from the
 * before-image (REPLICA IDENTITY FULL), else from the row the sink holds (SELECT ... FINAL per
 * table per batch, one per 192 KiB of keys) — never a placeholder. Then one INSERT ... FORMAT TabSeparated.
 * Tables without a key get the signed-row layout of clickhouse_keyless.c (its DDL and view here).
 *
 * Owns: every ch_rel and its buffers. Never touches: the checkpoint, the HTTP transport.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "sinks/clickhouse_internal.h"

#define COL_VERSION "_odsync_version"
#define COL_DELETED "_odsync_deleted"

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n);

static int oom(ch_sink *s, od_error *err) { return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: out of memory", s->http.name); }

static void rel_free(ch_rel *r) {
  free(r->table);
  free(r->qtable);
  free(r->kind);
  free(r->keys);
  free(r->rows);
  free(r->cells);
  free(r->index);
  od_sqlbuf_free(&r->data);
  od_sqlbuf_free(&r->bulk);
  free(r);
}

void ch_rels_free(ch_sink *s) {
  ch_rel *r = s->all;
  while (r) {
    ch_rel *n = r->next;
    rel_free(r);
    r = n;
  }
  s->all = NULL;
  od_relmap_free(&s->rels);
}

void ch_rel_clear(ch_rel *r) {
  r->nrows = 0;
  od_sqlbuf_reset(&r->data);
  if (r->index) memset(r->index, 0, r->index_cap * sizeof *r->index);
  r->any_fill = false;
  od_sqlbuf_reset(&r->bulk);
  r->bulk_rows = 0;
}

/* ---- DDL ----------------------------------------------------------------------------------- */

/* One column's declaration: key columns as their type, the others Nullable (pgoutput does not
 * say which columns are NOT NULL). */
static void col_type(const ch_rel *r, const od_column *c, char *out, size_t n) {
  char t[96];
  ch_type_of(c->type_oid, c->typmod, t, sizeof t);
  if (c->key && !r->keyless) /* a keyless table's columns may all be marked key (REPLICA IDENTITY FULL) */
    snprintf(out, n, "%s", t);
  else
    snprintf(out, n, "Nullable(%s)", t);
}

static void add_view_name(ch_sink *s, ch_rel *r, od_sqlbuf *b) {
  ch_ident(b, s->database);
  od_sqlbuf_add(b, ".");
  char name[512];
  snprintf(name, sizeof name, "%s%s", r->table, s->view_suffix);
  ch_ident(b, name);
}

static int make_view(ch_sink *s, ch_rel *r, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "DROP TABLE IF EXISTS ");
  add_view_name(s, r, b);
  int rc = ch_exec(s, b->p, r->table, "dropping its view", err);
  if (rc) return rc;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "CREATE VIEW ");
  add_view_name(s, r, b);
  od_sqlbuf_add(b, " AS SELECT ");
  for (uint16_t i = 0; i < r->rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ", ");
    ch_ident(b, r->rel->columns[i].name);
  }
  if (r->keyless) { /* each content as many times as its signed rows add up to */
    od_sqlbuf_add(b, " FROM (SELECT ");
    for (uint16_t i = 0; i < r->rel->ncolumns; i++) {
      ch_ident(b, r->rel->columns[i].name);
      od_sqlbuf_add(b, ", ");
    }
    od_sqlbuf_addf(b, "sum(" CH_COL_SIGN ") AS _odsync_copies FROM %s FINAL GROUP BY ", r->qtable);
    for (uint16_t i = 0; i < r->rel->ncolumns; i++) {
      if (i) od_sqlbuf_add(b, ", ");
      ch_ident(b, r->rel->columns[i].name);
    }
    od_sqlbuf_add(b, " HAVING _odsync_copies > 0) ARRAY JOIN range(toUInt64(_odsync_copies)) AS _odsync_copy");
  } else {
    od_sqlbuf_addf(b, " FROM %s FINAL WHERE " COL_DELETED " = 0", r->qtable);
  }
  return b->oom ? oom(s, err) : ch_exec(s, b->p, r->table, "creating its view", err);
}

static int create_table(ch_sink *s, ch_rel *r, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "CREATE TABLE IF NOT EXISTS %s (", r->qtable);
  for (uint16_t i = 0; i < r->rel->ncolumns; i++) {
    char t[128];
    col_type(r, &r->rel->columns[i], t, sizeof t);
    ch_ident(b, r->rel->columns[i].name);
    od_sqlbuf_addf(b, " %s, ", t);
  }
  if (r->keyless) {
    od_sqlbuf_add(b, CH_COL_HASH " UInt64, " COL_VERSION " UInt64, " CH_COL_SEQ " UInt64, " CH_COL_SIGN
                     " Int8) ENGINE = ReplacingMergeTree ORDER BY (" CH_COL_HASH ", " COL_VERSION ", " CH_COL_SEQ ")");
  } else {
    od_sqlbuf_add(b, COL_VERSION " UInt64, " COL_DELETED " UInt8) ENGINE = ReplacingMergeTree(" COL_VERSION ") ORDER BY (");
    for (int k = 0; k < r->nkey; k++) {
      if (k) od_sqlbuf_add(b, ", ");
      ch_ident(b, r->rel->columns[r->keys[k]].name);
    }
    od_sqlbuf_add(b, ")");
  }
  if (b->oom) return oom(s, err);
  int rc = ch_exec(s, b->p, r->table, "creating the table", err);
  if (!rc && r->keyless)
    od_info("clickhouse sink %s: created table %s (no key at the source: signed copies by content hash, "
            "clickhouse_keyless.c)", s->http.name, r->table);
  else if (!rc)
    od_info("clickhouse sink %s: created table %s (ReplacingMergeTree by " COL_VERSION ")", s->http.name, r->table);
  return rc;
}

typedef struct existing_col {
  char *name, *type;
} existing_col;

/* The columns the target table has now: name and type (TabSeparated answer parsed in place in
 * s->http.resp; valid until the next request). *n = 0 when the table does not exist. */
static int existing_columns(ch_sink *s, ch_rel *r, existing_col **out, int *n, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT name, type FROM system.columns WHERE database = ");
  ch_literal(b, s->database, strlen(s->database));
  od_sqlbuf_add(b, " AND table = ");
  ch_literal(b, r->table, strlen(r->table));
  od_sqlbuf_add(b, " FORMAT TabSeparated");
  if (b->oom) return oom(s, err);
  int rc = ch_exec(s, b->p, r->table, "reading its columns", err);
  if (rc) return rc;
  int cap = 16, k = 0;
  existing_col *cols = malloc((size_t)cap * sizeof *cols);
  if (!cols) return oom(s, err);
  char *p = s->http.resp.p;
  while (p && *p) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    char *tab = strchr(p, '\t');
    if (tab) {
      *tab = '\0';
      p[ch_tsv_unescape(p, strlen(p))] = '\0';
      tab[1 + ch_tsv_unescape(tab + 1, strlen(tab + 1))] = '\0';
      if (k == cap) {
        cap *= 2;
        existing_col *nc = realloc(cols, (size_t)cap * sizeof *nc);
        if (!nc) {
          free(cols);
          return oom(s, err);
        }
        cols = nc;
      }
      cols[k].name = p;
      cols[k].type = tab + 1;
      k++;
    }
    p = nl ? nl + 1 : NULL;
  }
  *out = cols;
  *n = k;
  return OD_OK;
}

static const existing_col *find_col(const existing_col *cols, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(cols[i].name, name)) return &cols[i];
  return NULL;
}

/* The previous version of the relation's column with the same attnum under another name. */
static const od_column *renamed_from(const od_relation *rel, const od_column *c) {
  if (!c->attnum) return NULL;
  for (const od_relation *p = rel->previous; p; p = p->previous)
    for (uint16_t i = 0; i < p->ncolumns; i++)
      if (p->columns[i].attnum == c->attnum) return strcmp(p->columns[i].name, c->name) ? &p->columns[i] : NULL;
  return NULL;
}

static int alter(ch_sink *s, ch_rel *r, const char *what, od_error *err) {
  if (s->sql.oom) return oom(s, err);
  int rc = ch_exec(s, s->sql.p, r->table, what, err);
  if (!rc) od_info("clickhouse sink %s: table %s: %s", s->http.name, r->table, what);
  return rc;
}

/* ClickHouse before 20.4 has no RENAME COLUMN: add the new column, copy the values with a
 * mutation, wait for it, drop the old column. */
static int rename_column(ch_sink *s, ch_rel *r, const char *from, const od_column *to, od_error *err) {
  char what[400];
  snprintf(what, sizeof what, "renaming column %s to %s", from, to->name);
  od_sqlbuf *b = &s->sql;
  int rc;
  if (s->server_major > 20 || (s->server_major == 20 && s->server_minor >= 4)) {
    od_sqlbuf_reset(b);
    od_sqlbuf_addf(b, "ALTER TABLE %s RENAME COLUMN ", r->qtable);
    ch_ident(b, from);
    od_sqlbuf_add(b, " TO ");
    ch_ident(b, to->name);
    return alter(s, r, what, err);
  }
  if (to->key && !r->keyless)
    return OD_FAIL(err, OD_ESCHEMA, "clickhouse sink %s: table %s: key column %s was renamed to %s; ClickHouse %d.%d "
                   "cannot rename a key column (recreate the table: drop it and re-snapshot)", s->http.name, r->table,
                   from, to->name, s->server_major, s->server_minor);
  char t[128];
  col_type(r, to, t, sizeof t);
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "ALTER TABLE %s ADD COLUMN ", r->qtable);
  ch_ident(b, to->name);
  od_sqlbuf_addf(b, " %s", t);
  if ((rc = ch_exec(s, b->p, r->table, what, err))) return rc;
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "ALTER TABLE %s UPDATE ", r->qtable);
  ch_ident(b, to->name);
  od_sqlbuf_add(b, " = ");
  ch_ident(b, from);
  od_sqlbuf_add(b, " WHERE 1");
  if ((rc = ch_exec(s, b->p, r->table, what, err))) return rc;
  for (int i = 0; i < 600; i++) { /* mutations run in the background: wait (60 s at most) */
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "SELECT count() FROM system.mutations WHERE is_done = 0 AND database = ");
    ch_literal(b, s->database, strlen(s->database));
    od_sqlbuf_add(b, " AND table = ");
    ch_literal(b, r->table, strlen(r->table));
    if ((rc = ch_exec(s, b->p, r->table, what, err))) return rc;
    if (atoi(s->http.resp.p ? s->http.resp.p : "1") == 0) break;
    if (i == 599)
      return OD_FAIL_RETRY(err, OD_ESINK, "clickhouse sink %s: table %s: %s: the copying mutation did not finish "
                           "within 60 s", s->http.name, r->table, what);
    usleep(100000);
  }
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "ALTER TABLE %s DROP COLUMN ", r->qtable);
  ch_ident(b, from);
  return alter(s, r, what, err);
}

/* Make the existing target table fit r->rel. */
static int evolve_table(ch_sink *s, ch_rel *r, existing_col *cols, int n, od_error *err) {
  bool changed = false;
  int rc = OD_OK;
  od_sqlbuf *b = &s->sql;
  /* Copy what we need from the answer: later requests overwrite it. */
  char **names = calloc((size_t)n + 1, sizeof *names), **types = calloc((size_t)n + 1, sizeof *types);
  if (!names || !types) {
    free(names);
    free(types);
    return oom(s, err);
  }
  for (int i = 0; i < n; i++) {
    names[i] = strdup(cols[i].name);
    types[i] = strdup(cols[i].type);
    if (!names[i] || !types[i]) rc = oom(s, err);
  }
  existing_col *have = cols;
  for (int i = 0; i < n; i++) have[i] = (existing_col){names[i], types[i]};
  for (uint16_t i = 0; !rc && i < r->rel->ncolumns; i++) {
    const od_column *c = &r->rel->columns[i];
    char t[128];
    col_type(r, c, t, sizeof t);
    const existing_col *e = find_col(have, n, c->name);
    if (!e) {
      const od_column *old = renamed_from(r->rel, c);
      existing_col *oe = old ? (existing_col *)find_col(have, n, old->name) : NULL;
      if (oe) {
        rc = rename_column(s, r, old->name, c, err);
        if (!rc) oe->name[0] = '\0'; /* gone */
        changed = true;
        continue;
      }
      od_sqlbuf_reset(b);
      od_sqlbuf_addf(b, "ALTER TABLE %s ADD COLUMN ", r->qtable);
      ch_ident(b, c->name);
      od_sqlbuf_addf(b, " %s", t);
      if (c->missing_value && (!c->key || r->keyless)) {
        /* Rows that existed before the column: the source fills them with this value. */
        od_value v = {.data = c->missing_value, .len = (uint32_t)strlen(c->missing_value), .kind = OD_VALUE_TEXT};
        od_sqlbuf enc = {0};
        const char *why = NULL;
        if (ch_encode(&enc, r->kind[i], &v, &why) == 0 && !enc.oom) {
          od_sqlbuf_add(b, " DEFAULT CAST(");
          ch_literal(b, enc.p, enc.len);
          od_sqlbuf_addf(b, ", '%s')", t);
        }
        od_sqlbuf_free(&enc);
      }
      char what[300];
      snprintf(what, sizeof what, "adding column %s %s%s", c->name, t,
               c->missing_value && (!c->key || r->keyless) ? " (rows that predate it: the source's default)" : "");
      rc = alter(s, r, what, err);
      changed = true;
    } else if (strcmp(e->type, t) != 0) {
      char want[128], have_t[128];
      snprintf(have_t, sizeof have_t, "%s", e->type);
      snprintf(want, sizeof want, "%s", t);
      /* Compare without the Nullable wrapper; a key column never becomes Nullable. */
      char *hb = have_t, *wb = want;
      bool hn = !strncmp(hb, "Nullable(", 9), wn = !strncmp(wb, "Nullable(", 9);
      if (hn) hb += 9, hb[strlen(hb) - 1] = '\0';
      if (wn) wb += 9, wb[strlen(wb) - 1] = '\0';
      if (!ch_type_widens(hb, wb) || (hn && !wn))
        rc = OD_FAIL(err, OD_ESCHEMA, "clickhouse sink %s: table %s: column %s changed from %s to %s, which is not a "
                     "widening ClickHouse can apply in place (see docs/adapters/clickhouse.md#schema-changes)",
                     s->http.name, r->table, c->name, e->type, t);
      else {
        od_sqlbuf_reset(b);
        od_sqlbuf_addf(b, "ALTER TABLE %s MODIFY COLUMN ", r->qtable);
        ch_ident(b, c->name);
        od_sqlbuf_addf(b, " %s", hn && !wn ? e->type : t);
        char what[300];
        snprintf(what, sizeof what, "widening column %s from %s to %s", c->name, e->type, t);
        rc = alter(s, r, what, err);
        changed = true;
      }
    }
  }
  for (int i = 0; !rc && i < n; i++) {
    const char *nm = have[i].name;
    if (!*nm || !strcmp(nm, COL_VERSION) || !strcmp(nm, COL_DELETED) ||
        (r->keyless && (!strcmp(nm, CH_COL_HASH) || !strcmp(nm, CH_COL_SEQ) || !strcmp(nm, CH_COL_SIGN))))
      continue;
    bool in_rel = false;
    for (uint16_t k = 0; k < r->rel->ncolumns && !in_rel; k++) in_rel = !strcmp(r->rel->columns[k].name, nm);
    if (in_rel) continue;
    od_sqlbuf_reset(b);
    od_sqlbuf_addf(b, "ALTER TABLE %s DROP COLUMN ", r->qtable);
    ch_ident(b, nm);
    char what[300];
    snprintf(what, sizeof what, "dropping column %s (dropped at the source)", nm);
    rc = alter(s, r, what, err);
    changed = true;
  }
  for (int i = 0; i < n; i++) {
    free(names[i]);
    free(types[i]);
  }
  free(names);
  free(types);
  if (!rc && changed) rc = make_view(s, r, err);
  return rc;
}

static int sync_table(ch_sink *s, ch_rel *r, od_error *err) {
  existing_col *cols = NULL;
  int n = 0;
  int rc = existing_columns(s, r, &cols, &n, err);
  if (rc) return rc;
  if (n == 0) {
    free(cols);
    rc = create_table(s, r, err);
    return rc ? rc : make_view(s, r, err);
  }
  bool keyed_layout = find_col(cols, n, COL_VERSION) && find_col(cols, n, COL_DELETED);
  bool keyless_layout = find_col(cols, n, COL_VERSION) && find_col(cols, n, CH_COL_HASH) &&
                        find_col(cols, n, CH_COL_SEQ) && find_col(cols, n, CH_COL_SIGN);
  if (!keyed_layout && !keyless_layout) {
    free(cols);
    return OD_FAIL(err, OD_ESCHEMA, "clickhouse sink %s: table %s exists without the columns " COL_VERSION " and "
                   COL_DELETED " (or, for a table without a key, " CH_COL_HASH ", " COL_VERSION ", " CH_COL_SEQ
                   ", " CH_COL_SIGN "); it was not created by odsync (rename it or drop it)", s->http.name, r->table);
  }
  if (r->keyless != keyless_layout) {
    free(cols);
    return OD_FAIL(err, OD_ESCHEMA, "clickhouse sink %s: table %s was created for a source table %s a key, and the "
                   "source table now has %s; its rows cannot be carried over in place: drop the ClickHouse table (and "
                   "its view) and re-copy the table with odsync snapshot", s->http.name, r->table,
                   keyless_layout ? "without" : "with", r->keyless ? "none" : "one");
  }
  rc = evolve_table(s, r, cols, n, err);
  free(cols);
  if (!rc) {
    /* The view may be missing (first run after it was dropped): create it when absent. */
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "EXISTS TABLE ");
    add_view_name(s, r, b);
    rc = ch_exec(s, b->p, r->table, "looking for its view", err);
    if (!rc && (!s->http.resp.p || s->http.resp.p[0] != '1')) rc = make_view(s, r, err);
  }
  return rc;
}

/* A hash of a relation's shape: its identity, version and every column's name, type and key flag. */
static uint64_t rel_sig(const od_relation *rel) {
  uint64_t h = 0xcbf29ce484222325ull;
  uint32_t head[3] = {rel->oid, rel->version, rel->ncolumns};
  h = hash_bytes(h, (const char *)head, sizeof head);
  h = hash_bytes(h, rel->schema, strlen(rel->schema));
  h = hash_bytes(h, rel->name, strlen(rel->name));
  for (uint16_t i = 0; i < rel->ncolumns; i++) {
    const od_column *c = &rel->columns[i];
    int32_t t[3] = {(int32_t)c->type_oid, c->typmod, c->key};
    h = hash_bytes(h, c->name, strlen(c->name));
    h = hash_bytes(h, (const char *)t, sizeof t);
  }
  return h;
}

static bool take_node(od_relmap_node *n, void *ctx) {
  if (n != ctx) return false;
  return true; /* unlinked; the caller frees it */
}

/* Forget a state whose relation is gone (its address now names another relation). */
static void forget(ch_sink *s, ch_rel *stale) {
  od_relmap_remove_if(&s->rels, take_node, stale);
  for (ch_rel **pp = &s->all; *pp; pp = &(*pp)->next)
    if (*pp == stale) {
      *pp = stale->next;
      break;
    }
  rel_free(stale);
}

int ch_rel_get(ch_sink *s, const od_relation *rel, ch_rel **out, od_error *err) {
  od_relmap_node *n = od_relmap_find(&s->rels, rel);
  ch_rel *found = (ch_rel *)n;
  if (found && found->checked == s->txn_seq) { /* checked in this batch: its relation is alive */
    *out = found;
    return OD_OK;
  }
  uint64_t sig = rel_sig(rel);
  if (found && found->sig == sig) {
    found->checked = s->txn_seq;
    *out = found;
    return OD_OK;
  }
  /* The initial snapshot's relations are freed when it ends, while this sink instance streams on:
   * a later relation may reuse the address. Its rows were committed with the snapshot. */
  if (n) forget(s, (ch_rel *)n);
  ch_rel *r = calloc(1, sizeof *r);
  if (!r) return oom(s, err);
  r->rel = rel;
  r->sig = sig;
  r->checked = s->txn_seq;
  r->ncol = rel->ncolumns;
  char name[300];
  if (rel->schema && *rel->schema && strcmp(rel->schema, "public") != 0)
    snprintf(name, sizeof name, "%s_%s", rel->schema, rel->name);
  else
    snprintf(name, sizeof name, "%s", rel->name);
  r->table = strdup(name);
  od_sqlbuf q = {0};
  ch_ident(&q, s->database);
  od_sqlbuf_add(&q, ".");
  ch_ident(&q, name);
  r->qtable = q.oom ? NULL : q.p;
  if (q.oom) od_sqlbuf_free(&q);
  r->kind = calloc(rel->ncolumns + 1u, 1);
  r->keys = calloc(rel->ncolumns + 1u, sizeof *r->keys);
  if (!r->table || !r->qtable || !r->kind || !r->keys) {
    rel_free(r);
    return oom(s, err);
  }
  for (uint16_t i = 0; i < rel->ncolumns; i++) {
    char t[96];
    r->kind[i] = (uint8_t)ch_type_of(rel->columns[i].type_oid, rel->columns[i].typmod, t, sizeof t);
    if (rel->columns[i].key) r->keys[r->nkey++] = i;
  }
  /* No key, or REPLICA IDENTITY FULL without a primary key (every column marked key): rows are
   * signed copies of a content (clickhouse_keyless.c), never versioned per key. */
  if (!r->nkey || rel->match_full_row) {
    r->keyless = true;
    r->nkey = 0;
  }
  /* Rows of an older shape of the same table go in before its table changes. */
  int rc = OD_OK;
  for (ch_rel *o = s->all; o && !rc; o = o->next)
    if ((o->nrows || o->bulk_rows) && !strcmp(o->table, r->table)) rc = ch_rel_flush(s, o, err);
  if (!rc) rc = sync_table(s, r, err);
  if (rc) {
    rel_free(r);
    return rc;
  }
  if (!od_relmap_insert(&s->rels, &r->node, rel)) {
    rel_free(r);
    return oom(s, err);
  }
  r->next = s->all;
  s->all = r;
  *out = r;
  return OD_OK;
}

/* ---- the batch's rows ---------------------------------------------------------------------- */

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  return (h ^ 0xff) * 0x100000001b3ull;
}

static uint64_t row_key_hash(const ch_rel *r, size_t row) {
  uint64_t h = 0xcbf29ce484222325ull;
  const ch_cell *c = &r->cells[row * r->rel->ncolumns];
  for (int k = 0; k < r->nkey; k++) h = hash_bytes(h, r->data.p + c[r->keys[k]].off, c[r->keys[k]].len);
  /* FNV's multiplications move entropy only upwards, and the index uses the low bits: mix the
   * high bits down (murmur3's finalizer), else keys like "12345" cluster in the linear probing. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

static bool same_key(const ch_rel *r, size_t a, size_t b) {
  const ch_cell *ca = &r->cells[a * r->rel->ncolumns], *cb = &r->cells[b * r->rel->ncolumns];
  for (int k = 0; k < r->nkey; k++) {
    const ch_cell *x = &ca[r->keys[k]], *y = &cb[r->keys[k]];
    if (x->len != y->len || memcmp(r->data.p + x->off, r->data.p + y->off, x->len)) return false;
  }
  return true;
}

/* Index entries: the row + 1 in the low 32 bits (0 = empty), the key hash's high 32 bits above,
 * so that a probe compares keys only when the hashes agree (comparing means reading another row's
 * cells: a cache miss per probe, a tenth of the sink's CPU before the tag). */
#define ENT_ROW(e) ((uint32_t)(e) - 1)
#define ENT_TAG(h) ((h) >> 32 << 32)
static bool ent_is(const ch_rel *r, uint64_t e, uint64_t tag, size_t row) {
  return (e & ~(uint64_t)UINT32_MAX) == tag && same_key(r, ENT_ROW(e), row);
}

/* The latest row of the batch with row's key (other than row itself), or CH_NONE. */
static uint32_t index_find(const ch_rel *r, size_t row) {
  if (!r->index_cap || !r->nkey) return CH_NONE;
  uint64_t h = row_key_hash(r, row), tag = ENT_TAG(h);
  size_t mask = r->index_cap - 1, i = h & mask;
  for (; r->index[i]; i = (i + 1) & mask)
    if (ENT_ROW(r->index[i]) != row && ent_is(r, r->index[i], tag, row)) return ENT_ROW(r->index[i]);
  return CH_NONE;
}

static int index_put(ch_sink *s, ch_rel *r, size_t row, od_error *err) {
  if (!r->nkey) return OD_OK;
  if ((r->nrows + 1) * 2 > r->index_cap) {
    size_t cap = r->index_cap ? r->index_cap * 2 : 1024;
    while ((r->nrows + 1) * 2 > cap) cap *= 2;
    uint64_t *ni = calloc(cap, sizeof *ni);
    if (!ni) return oom(s, err);
    free(r->index);
    r->index = ni;
    r->index_cap = cap;
    for (size_t k = 0; k < r->nrows; k++) /* rows before `row`; later rows replace earlier ones */
      if (k != row) {
        uint64_t h = row_key_hash(r, k), tag = ENT_TAG(h);
        size_t m = cap - 1, i = h & m;
        for (; r->index[i]; i = (i + 1) & m)
          if (ent_is(r, r->index[i], tag, k)) break;
        r->index[i] = tag | ((uint64_t)k + 1);
      }
  }
  uint64_t h = row_key_hash(r, row), tag = ENT_TAG(h);
  size_t m = r->index_cap - 1, i = h & m;
  for (; r->index[i]; i = (i + 1) & m)
    if (ent_is(r, r->index[i], tag, row)) break;
  /* An earlier change of the key in the same transaction: only the last one is stored, so that
   * no two rows of a key share a version (snapshot rows, version 0, are one per key anyway). */
  if (r->index[i] && r->rows[ENT_ROW(r->index[i])].version == r->rows[row].version)
    r->rows[ENT_ROW(r->index[i])].superseded = true;
  r->index[i] = tag | ((uint64_t)row + 1);
  return OD_OK;
}

int ch_row_new(ch_sink *s, ch_rel *r, uint64_t version, bool deleted, size_t *out, od_error *err) {
  size_t nc = r->rel->ncolumns;
  if (r->nrows == r->rows_cap) {
    size_t cap = r->rows_cap ? r->rows_cap * 2 : 256;
    ch_row *nr = realloc(r->rows, cap * sizeof *nr);
    if (!nr) return oom(s, err);
    r->rows = nr;
    ch_cell *ncl = realloc(r->cells, cap * nc * sizeof *ncl + 1);
    if (!ncl) return oom(s, err);
    r->cells = ncl;
    r->rows_cap = cap;
  }
  size_t row = r->nrows++;
  r->rows[row] = (ch_row){.version = version, .deleted = deleted, .superseded = false, .fill_key = CH_NONE};
  for (size_t i = 0; i < nc; i++) r->cells[row * nc + i] = (ch_cell){0, 0};
  *out = row;
  return OD_OK;
}

static int bad_value(ch_sink *s, ch_rel *r, uint16_t col, const char *why, od_error *err) {
  return OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s: column %s (%s): a value cannot be stored: %s",
                 s->http.name, r->table, r->rel->columns[col].name, r->rel->columns[col].type_name, why);
}

int ch_put_value(ch_sink *s, ch_rel *r, size_t row, uint16_t col, const od_value *v, od_error *err) {
  ch_cell *c = &r->cells[row * r->rel->ncolumns + col];
  size_t before = r->data.len;
  const char *why = NULL;
  if (ch_encode(&r->data, r->kind[col], v, &why) != 0) return bad_value(s, r, col, why, err);
  if (r->data.oom) return oom(s, err);
  c->off = (uint32_t)before;
  c->len = (uint32_t)(r->data.len - before);
  return OD_OK;
}

static int put_null(ch_sink *s, ch_rel *r, size_t row, uint16_t col, od_error *err) {
  od_value v = {.kind = OD_VALUE_NULL};
  return ch_put_value(s, r, row, col, &v, err);
}

/* Copy cell (from, col) into (row, col); a cell still to fill stays to fill. */
static void copy_cell(ch_rel *r, size_t from, size_t row, uint16_t col) {
  r->cells[row * r->rel->ncolumns + col] = r->cells[from * r->rel->ncolumns + col];
}

static bool usable(const od_tuple *t, uint16_t i) {
  return t && i < t->ncolumns && t->values[i].kind != OD_VALUE_UNCHANGED;
}

/* Key values of the before-image differ from the after-image's (an update that moved the row). */
static bool key_moved(const ch_rel *r, const od_change *c) {
  if (!c->old_kind || !r->nkey) return false;
  for (int k = 0; k < r->nkey; k++) {
    uint16_t i = r->keys[k];
    if (!usable(&c->oldtup, i) || !usable(&c->newtup, i)) continue;
    const od_value *a = &c->oldtup.values[i], *b = &c->newtup.values[i];
    if (a->kind != b->kind || a->len != b->len || (a->len && memcmp(a->data, b->data, a->len))) return true;
  }
  return false;
}

/* A deleted-flag row for the key in `t` (non-key columns from t when it is a full before-image). */
static int add_delete(ch_sink *s, ch_rel *r, const od_change *c, const od_tuple *t, uint64_t version, size_t *out,
                      od_error *err) {
  size_t row;
  int rc = ch_row_new(s, r, version, true, &row, err);
  for (uint16_t i = 0; !rc && i < r->rel->ncolumns; i++) {
    if (usable(t, i) && (r->rel->columns[i].key || c->old_kind == 'O'))
      rc = ch_put_value(s, r, row, i, &t->values[i], err);
    else if (r->rel->columns[i].key)
      rc = OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s: a delete without the value of key column %s",
                   s->http.name, r->table, r->rel->columns[i].name);
    else
      rc = put_null(s, r, row, i, err);
  }
  *out = row;
  return rc;
}

int ch_rel_change(ch_sink *s, ch_rel *r, const od_change *c, od_error *err) {
  if (r->keyless) return ch_keyless_change(s, r, c, err);
  const od_relation *rel = r->rel;
  size_t row;
  uint64_t version;
  int rc = ch_row_version(s, c, &version, err);
  if (rc) return rc;
  if (c->op == OD_OP_DELETE) {
    if ((rc = add_delete(s, r, c, &c->oldtup, version, &row, err))) return rc;
    return index_put(s, r, row, err);
  }
  /* insert, snapshot read, update */
  uint32_t src = CH_NONE;        /* the batch row this change's unchanged values come from */
  size_t lookup_row = CH_NONE;   /* the row whose key names the sink row to fill from */
  if (c->op == OD_OP_UPDATE && key_moved(r, c)) {
    size_t del;
    if ((rc = add_delete(s, r, c, &c->oldtup, version, &del, err))) return rc;
    src = index_find(r, del);
    lookup_row = del;
    if ((rc = index_put(s, r, del, err))) return rc;
  }
  if ((rc = ch_row_new(s, r, version, false, &row, err))) return rc;
  bool pending_unchanged = false;
  for (uint16_t i = 0; i < rel->ncolumns; i++) {
    if (i < c->newtup.ncolumns && c->newtup.values[i].kind == OD_VALUE_UNCHANGED) {
      r->cells[row * rel->ncolumns + i].len = CH_FILL; /* decided below */
      pending_unchanged = true;
      continue;
    }
    if (i >= c->newtup.ncolumns) rc = put_null(s, r, row, i, err);
    else rc = ch_put_value(s, r, row, i, &c->newtup.values[i], err);
    if (rc) return rc;
  }
  if (pending_unchanged) {
    if (lookup_row == CH_NONE) {
      lookup_row = row;
      src = index_find(r, row);
    }
    for (uint16_t i = 0; i < rel->ncolumns; i++) {
      ch_cell *cell = &r->cells[row * rel->ncolumns + i];
      if (cell->len != CH_FILL) continue;
      if (c->old_kind == 'O' && usable(&c->oldtup, i)) { /* REPLICA IDENTITY FULL: the before-image */
        if ((rc = ch_put_value(s, r, row, i, &c->oldtup.values[i], err))) return rc;
      } else if (src != CH_NONE && !r->rows[src].deleted) { /* the batch's own newer row */
        copy_cell(r, src, row, i);
        if (r->cells[row * rel->ncolumns + i].len == CH_FILL) {
          r->rows[row].fill_key = r->rows[src].fill_key;
          r->any_fill = true;
        }
      } else if (src != CH_NONE) {
        return OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s: an update left column %s unchanged (TOAST) for a "
                       "row deleted earlier in the same batch", s->http.name, r->table, rel->columns[i].name);
      } else { /* the row the sink holds */
        r->rows[row].fill_key = (uint32_t)lookup_row;
        r->any_fill = true;
      }
    }
  }
  return index_put(s, r, row, err);
}

/* ---- filling unchanged TOAST values from the sink ------------------------------------------ */

/* Append the key of row as SQL literals: "(v1, v2)" or "v1". */
static void key_literal(ch_rel *r, size_t row, od_sqlbuf *b) {
  if (r->nkey > 1) od_sqlbuf_add(b, "(");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    const ch_cell *c = &r->cells[row * r->rel->ncolumns + r->keys[k]];
    const char *p = r->data.p + c->off;
    if (r->kind[r->keys[k]] == CHK_INT)
      od_sqlbuf_addn(b, p, c->len);
    else { /* the TabSeparated field is already backslash-escaped: only quotes need escaping */
      od_sqlbuf_add(b, "'");
      for (uint32_t i = 0; i < c->len; i++) {
        if (p[i] == '\'') od_sqlbuf_add(b, "\\");
        od_sqlbuf_addn(b, p + i, 1);
      }
      od_sqlbuf_add(b, "'");
    }
  }
  if (r->nkey > 1) od_sqlbuf_add(b, ")");
}

/* Key lists of one SELECT stay under this many bytes: ClickHouse parses at most max_query_size
 * (256 KiB by default) of a query, and a lingering batch may need tens of thousands of keys. */
#define FILL_QUERY_MAX (192u << 10)

/* The query's head, up to "IN (". */
static void fill_query_head(ch_rel *r, od_sqlbuf *b) {
  const od_relation *rel = r->rel;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT ");
  for (size_t i = 0; i < rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ", ");
    ch_ident(b, rel->columns[i].name);
  }
  od_sqlbuf_addf(b, " FROM %s FINAL WHERE " COL_DELETED " = 0 AND ", r->qtable);
  if (r->nkey > 1) od_sqlbuf_add(b, "(");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    ch_ident(b, rel->columns[r->keys[k]].name);
  }
  if (r->nkey > 1) od_sqlbuf_add(b, ")");
  od_sqlbuf_add(b, " IN (");
}

/* Send the query in s->sql and parse its answer into extra rows of r (after the batch's rows,
 * never inserted). */
static int fill_query_run(ch_sink *s, ch_rel *r, od_error *err) {
  size_t nc = r->rel->ncolumns;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_add(b, ") FORMAT TabSeparated");
  if (b->oom) return oom(s, err);
  int rc = ch_exec(s, b->p, r->table, "reading the stored values of unchanged TOAST columns", err);
  if (rc) return rc;
  char *p = s->http.resp.p;
  size_t nrows_before = r->nrows;
  while (p && *p) {
    char *nl = strchr(p, '\n');
    size_t extra;
    if ((rc = ch_row_new(s, r, 0, false, &extra, err))) return rc;
    for (size_t i = 0; i < nc; i++) {
      char *end = strchr(p, '\t');
      if (!end || (nl && end > nl)) end = nl ? nl : p + strlen(p);
      size_t before = r->data.len;
      od_sqlbuf_addn(&r->data, p, (size_t)(end - p));
      if (r->data.oom) return oom(s, err);
      r->cells[extra * nc + i] = (ch_cell){(uint32_t)before, (uint32_t)(r->data.len - before)};
      p = *end == '\t' ? end + 1 : end;
    }
    p = nl ? nl + 1 : NULL;
  }
  od_debug("clickhouse sink %s: table %s: read %zu stored rows for unchanged TOAST values (%zu-byte query)",
           s->http.name, r->table, r->nrows - nrows_before, b->len);
  return OD_OK;
}

static int fill_from_sink(ch_sink *s, ch_rel *r, od_error *err) {
  const od_relation *rel = r->rel;
  size_t nc = rel->ncolumns;
  od_sqlbuf *b = &s->sql;
  size_t base = r->nrows;
  /* The keys to read, each once, in SELECTs of at most FILL_QUERY_MAX bytes of keys. */
  uint8_t *listed = calloc(base + 1, 1);
  if (!listed) return oom(s, err);
  int rc = OD_OK;
  size_t head = 0, listed_n = 0;
  for (size_t row = 0; row < base && !rc; row++) {
    uint32_t fk = r->rows[row].fill_key;
    if (fk == CH_NONE || listed[fk]) continue;
    listed[fk] = 1;
    if (!listed_n) {
      fill_query_head(r, b);
      head = b->len;
    } else {
      od_sqlbuf_add(b, ", ");
    }
    key_literal(r, fk, b);
    listed_n++;
    if (b->len - head >= FILL_QUERY_MAX) {
      rc = fill_query_run(s, r, err);
      listed_n = 0;
    }
  }
  if (!rc && listed_n) rc = fill_query_run(s, r, err);
  free(listed);
  if (rc) {
    r->nrows = base;
    return rc;
  }
  size_t found = r->nrows;
  /* The stored rows by key: open addressing over the extra rows (row + 1, 0 = empty). */
  size_t cap = 16;
  while (cap < 2 * (found - base) + 2) cap *= 2;
  uint32_t *by_key = calloc(cap, sizeof *by_key);
  if (!by_key) {
    r->nrows = base;
    return oom(s, err);
  }
  for (size_t e = base; e < found; e++) {
    size_t i = row_key_hash(r, e) & (cap - 1);
    while (by_key[i] && !same_key(r, by_key[i] - 1, e)) i = (i + 1) & (cap - 1);
    if (!by_key[i]) by_key[i] = (uint32_t)e + 1; /* FINAL gives one row per key: keep the first */
  }
  /* Resolve in batch order. */
  int res = OD_OK;
  for (size_t row = 0; row < base && !res; row++) {
    uint32_t fk = r->rows[row].fill_key;
    if (fk == CH_NONE) continue;
    size_t hit = CH_NONE;
    for (size_t i = row_key_hash(r, fk) & (cap - 1); by_key[i]; i = (i + 1) & (cap - 1))
      if (same_key(r, by_key[i] - 1, fk)) {
        hit = by_key[i] - 1;
        break;
      }
    for (size_t i = 0; i < nc; i++) {
      ch_cell *cell = &r->cells[row * nc + i];
      if (cell->len != CH_FILL) continue;
      if (hit == CH_NONE) {
        res = OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s: an update left column %s unchanged (a TOASTed "
                      "value PostgreSQL did not resend) and the sink holds no row for that key to take it from; set "
                      "REPLICA IDENTITY FULL on the source table (the before-image then carries it) or re-copy the "
                      "table with odsync snapshot", s->http.name, r->table, rel->columns[i].name);
        break;
      }
      *cell = r->cells[hit * nc + i];
    }
  }
  free(by_key);
  r->nrows = base; /* drop the extra rows */
  return res;
}

void ch_rel_insert_stmt(ch_sink *s, ch_rel *r) {
  od_sqlbuf *q = &s->sql;
  od_sqlbuf_reset(q);
  od_sqlbuf_addf(q, "INSERT INTO %s (", r->qtable);
  for (size_t i = 0; i < r->ncol; i++) {
    ch_ident(q, r->rel->columns[i].name);
    od_sqlbuf_add(q, ", ");
  }
  if (r->keyless)
    od_sqlbuf_add(q, CH_COL_HASH ", " COL_VERSION ", " CH_COL_SEQ ", " CH_COL_SIGN ") FORMAT TabSeparated");
  else
    od_sqlbuf_add(q, COL_VERSION ", " COL_DELETED ") FORMAT TabSeparated");
}

/* The bulk-loaded rows (clickhouse_load.c): one INSERT of the buffer as it is. */
static int flush_bulk(ch_sink *s, ch_rel *r, od_error *err) {
  if (!r->bulk_rows) return OD_OK;
  ch_rel_insert_stmt(s, r);
  if (s->sql.oom || r->bulk.oom) return oom(s, err);
  char what[400];
  snprintf(what, sizeof what, "table %s: bulk loading %zu snapshot rows", r->table, r->bulk_rows);
  int rc = ch_http_exec(&s->http, s->sql.p, r->bulk.p, r->bulk.len, what, err);
  if (rc) return rc;
  s->inserts++;
  s->rows_sent += r->bulk_rows;
  od_debug("clickhouse sink %s: table %s: bulk loaded %zu rows (%zu bytes)", s->http.name, r->table, r->bulk_rows,
           r->bulk.len);
  od_sqlbuf_reset(&r->bulk);
  r->bulk_rows = 0;
  return OD_OK;
}

int ch_rel_flush(ch_sink *s, ch_rel *r, od_error *err) {
  int rc = flush_bulk(s, r, err);
  if (rc || !r->nrows) return rc;
  if (r->any_fill && (rc = fill_from_sink(s, r, err))) return rc;
  const od_relation *rel = r->rel;
  size_t nc = rel->ncolumns;
  od_sqlbuf *b = &s->body;
  od_sqlbuf_reset(b);
  size_t sent = 0;
  for (size_t row = 0; row < r->nrows; row++) {
    if (r->rows[row].superseded) continue;
    sent++;
    const ch_cell *c = &r->cells[row * nc];
    for (size_t i = 0; i < nc; i++) {
      od_sqlbuf_addn(b, r->data.p + c[i].off, c[i].len);
      od_sqlbuf_add(b, "\t");
    }
    if (r->keyless)
      od_sqlbuf_addf(b, "%llu\t%llu\t%llu\t%d\n", (unsigned long long)ch_keyless_hash(r, row),
                     (unsigned long long)r->rows[row].version, (unsigned long long)r->rows[row].seq,
                     (int)r->rows[row].sign);
    else {
      ch_put_u64(b, r->rows[row].version);
      od_sqlbuf_add(b, r->rows[row].deleted ? "\t1\n" : "\t0\n");
    }
  }
  od_sqlbuf *q = &s->sql;
  ch_rel_insert_stmt(s, r);
  if (b->oom || q->oom) return oom(s, err);
  char what[400];
  snprintf(what, sizeof what, "table %s: inserting %zu rows", r->table, sent);
  rc = ch_http_exec(&s->http, q->p, b->p, b->len, what, err);
  if (rc) return rc;
  s->inserts++;
  s->rows_sent += sent;
  od_debug("clickhouse sink %s: table %s: inserted %zu rows (%zu bytes)", s->http.name, r->table, sent, b->len);
  ch_rel_clear(r);
  return OD_OK;
}

int ch_rel_truncate(ch_sink *s, ch_rel *r, od_error *err) {
  int rc = ch_rel_flush(s, r, err);
  if (rc) return rc;
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_addf(&s->sql, "TRUNCATE TABLE %s", r->qtable);
  if (s->sql.oom) return oom(s, err);
  rc = ch_exec(s, s->sql.p, r->table, "truncating", err);
  if (!rc && r->keyless) { /* the table is empty: snapshot rows may number from 0 again */
    ch_seq *q = ch_keyless_seq(s, r, err);
    if (!q) return OD_ENOMEM;
    q->next = 0;
  }
  return rc;
}
