/* sinks/sqlite_table.c — the SQLite sink's per-relation-version state.
 *
 * Owns: one sq_rel per od_relation version seen (found by pointer in a chained hash): the target
 * table's name, the CREATE TABLE that makes a missing table (sqlite_schema.c evolves an existing
 * one),
 * and every prepared statement for that version (insert/upsert of one row and of SQ_INSERT_MANY
 * rows, keyed delete, truncate, and up to SQ_MAX_VARIANTS update/delete variants keyed by which
 * values are UNCHANGED, evicted LRU).
 * Statements are built here once; applying a row only binds and steps them.
 * Never touches: transactions, the checkpoint, value conversion (sqlite_types.c).
 * The od_relation is borrowed: it outlives the sink (see odsync/change.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sinks/sqlite_internal.h"


static char *buf_strdup(const od_sqlbuf *b) {
  if (b->oom) return NULL;
  char *p = malloc(b->len + 1);
  if (p) memcpy(p, b->p ? b->p : "", b->len + 1);
  return p;
}

/* ---- statements ---------------------------------------------------------------------------- */

static int prepare(sq_sink *s, sq_rel *r, const char *what, sqlite3_stmt **out, od_error *err) {
  if (s->sql.oom)
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: %s: out of memory", s->path, r->target, what);
  int rc = sqlite3_prepare_v3(s->db, s->sql.p, (int)s->sql.len, SQLITE_PREPARE_PERSISTENT, out, NULL);
  if (rc != SQLITE_OK) return sq_fail(s, r->target, what, rc, err);
  s->stats.prepared++;
  return OD_OK;
}

static int exec_sql(sq_sink *s, sq_rel *r, const char *what, od_error *err) {
  if (s->sql.oom)
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: %s: out of memory", s->path, r->target, what);
  int rc = sqlite3_exec(s->db, s->sql.p, NULL, NULL, NULL);
  if (rc != SQLITE_OK) return sq_fail(s, r->target, what, rc, err);
  return OD_OK;
}

int sq_prepare_sql(sq_sink *s, sq_rel *r, const char *what, sqlite3_stmt **out, od_error *err) {
  return prepare(s, r, what, out, err);
}

int sq_exec_sql(sq_sink *s, sq_rel *r, const char *what, od_error *err) { return exec_sql(s, r, what, err); }

static void add_col(od_sqlbuf *b, const sq_rel *r, int i) { od_sqlbuf_ident(b, r->rel->columns[i].name); }

/* INSERT of `rows` rows (?1..?n for the first, ?n+1.. for the second, ...), an upsert when keyed. */
static void build_insert(sq_sink *s, sq_rel *r, int rows) {
  const od_relation *rel = r->rel;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, r->qtarget);
  /* The alias keeps excluded.x meaning the proposed row when the table is called "excluded". */
  od_sqlbuf_add(b, " AS odsync_target (");
  for (int i = 0; i < rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ",");
    add_col(b, r, i);
  }
  od_sqlbuf_add(b, ") VALUES ");
  for (int k = 0, p = 1; k < rows; k++) {
    od_sqlbuf_add(b, k ? ",(" : "(");
    for (int i = 0; i < rel->ncolumns; i++) od_sqlbuf_addf(b, "%s?%d", i ? "," : "", p++);
    od_sqlbuf_add(b, ")");
  }
  if (r->keyed) {
    od_sqlbuf_add(b, " ON CONFLICT (");
    for (int k = 0; k < r->nkey; k++) {
      if (k) od_sqlbuf_add(b, ",");
      add_col(b, r, SQ_COL(r->key_plan[k]));
    }
    od_sqlbuf_add(b, ") DO ");
    /* Every non-key column; and float key columns too: the key 0 finds the row -0 (they are
     * equal), and the row must end up with the sign the source sent. */
    int nset = 0;
    for (int i = 0; i < rel->ncolumns; i++) {
      if (rel->columns[i].key && r->cls[i] != SQ_REAL) continue;
      od_sqlbuf_add(b, nset++ ? "," : "UPDATE SET ");
      add_col(b, r, i);
      od_sqlbuf_add(b, "=excluded.");
      add_col(b, r, i);
    }
    if (!nset) od_sqlbuf_add(b, "NOTHING");
  }
}

int sq_stmt_insert(sq_sink *s, sq_rel *r, sqlite3_stmt **out, od_error *err) {
  if (!r->insert) {
    build_insert(s, r, 1);
    int rc = prepare(s, r, "preparing insert", &r->insert, err);
    if (rc) return rc;
  }
  *out = r->insert;
  return OD_OK;
}

int sq_stmt_insert_many(sq_sink *s, sq_rel *r, sqlite3_stmt **out, int *rows, od_error *err) {
  if (!r->insert_many && r->many_rows == 0) {
    /* As many rows as SQLite's parameter limit allows, up to SQ_INSERT_MANY. */
    int limit = sqlite3_limit(s->db, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
    int k = limit / r->rel->ncolumns;
    if (k > SQ_INSERT_MANY) k = SQ_INSERT_MANY;
    r->many_rows = k < 2 ? -1 : k;
    if (k >= 2) {
      build_insert(s, r, k);
      int rc = prepare(s, r, "preparing insert", &r->insert_many, err);
      if (rc) return rc;
    }
  }
  *out = r->insert_many;
  *rows = r->many_rows;
  return OD_OK;
}

int sq_stmt_delete_keyed(sq_sink *s, sq_rel *r, sqlite3_stmt **out, od_error *err) {
  if (!r->del_keyed) {
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "DELETE FROM ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " WHERE ");
    for (int k = 0; k < r->nkey; k++) {
      if (k) od_sqlbuf_add(b, " AND ");
      add_col(b, r, SQ_COL(r->key_plan[k]));
      od_sqlbuf_addf(b, "=?%d", k + 1);
    }
    int rc = prepare(s, r, "preparing delete", &r->del_keyed, err);
    if (rc) return rc;
  }
  *out = r->del_keyed;
  return OD_OK;
}

int sq_stmt_truncate(sq_sink *s, sq_rel *r, sqlite3_stmt **out, od_error *err) {
  if (!r->truncate) {
    od_sqlbuf_reset(&s->sql);
    od_sqlbuf_add(&s->sql, "DELETE FROM ");
    od_sqlbuf_add(&s->sql, r->qtarget);
    int rc = prepare(s, r, "preparing truncate", &r->truncate, err);
    if (rc) return rc;
  }
  *out = r->truncate;
  return OD_OK;
}

static bool bit(const uint64_t *m, int i) { return (m[i / 64] >> (i % 64)) & 1; }

/* Build the SQL and plan of a variant from the masks in r->scratch. Returns 0 ok, 1 when an
 * update has nothing to set, or an od status. */
static int build_variant(sq_sink *s, sq_rel *r, sq_variant *v, int kind, od_error *err) {
  const od_relation *rel = r->rel;
  const uint64_t *newm = r->scratch, *oldm = r->scratch + r->mask_words;
  od_sqlbuf *b = &s->sql;
  int np = 0;
  od_sqlbuf_reset(b);
  if (kind == SQ_V_UPDATE || kind == SQ_V_UPDATE_KEEP) {
    /* OR REPLACE (keyed): a key-changing update replayed after a resumed snapshot may meet a row
     * that already holds the new key (docs/SNAPSHOTS.md); the source's key is unique, so in
     * ordinary streaming this never replaces anything. */
    od_sqlbuf_add(b, r->keyed ? "UPDATE OR REPLACE " : "UPDATE ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " SET ");
    for (int i = 0; i < rel->ncolumns; i++) {
      if (bit(newm, i)) continue;
      /* A kept key already holds its value; a float key is set again for its sign (-0 = 0). */
      if (kind == SQ_V_UPDATE_KEEP && rel->columns[i].key && r->cls[i] != SQ_REAL && r->cls[i] != SQ_REAL_AFF)
        continue;
      if (np) od_sqlbuf_add(b, ",");
      add_col(b, r, i);
      v->plan[np++] = (uint16_t)i;
      od_sqlbuf_addf(b, "=?%d", np);
    }
    if (np == 0) return 1;
  } else {
    od_sqlbuf_add(b, "DELETE FROM ");
    od_sqlbuf_add(b, r->qtarget);
  }
  int nset = np;
  if (r->keyed) {
    od_sqlbuf_add(b, " WHERE ");
    for (int k = 0; k < r->nkey; k++) {
      if (k) od_sqlbuf_add(b, " AND ");
      add_col(b, r, SQ_COL(r->key_plan[k]));
      v->plan[np++] = r->key_plan[k];
      od_sqlbuf_addf(b, "=?%d", np);
    }
  } else {
    /* One row equal (NULL-safe) to the old row, skipping old values that are UNCHANGED. `IS`
     * equates -0.0 and 0.0; floats (in columns that keep the sign) also match on their sign, so
     * of two rows that differ only there, the one the source changed is changed. */
    od_sqlbuf_add(b, " WHERE rowid = (SELECT rowid FROM ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " WHERE ");
    for (int i = 0; i < rel->ncolumns; i++) {
      if (bit(oldm, i)) continue;
      if (np > nset) od_sqlbuf_add(b, " AND ");
      add_col(b, r, i);
      v->plan[np++] = (uint16_t)(i | SQ_FROM_MATCH);
      od_sqlbuf_addf(b, " IS ?%d", np);
      if (r->cls[i] == SQ_REAL) {
        od_sqlbuf_add(b, " AND odsync_signbit(");
        add_col(b, r, i);
        od_sqlbuf_addf(b, ") = odsync_signbit(?%d)", np);
      }
    }
    if (np == nset)
      return OD_FAIL(err, OD_ESINK, "sqlite sink %s: table %s: the old row has no value to match on",
                     s->path, r->target);
    od_sqlbuf_add(b, " LIMIT 1)");
  }
  v->nplan = np;
  return prepare(s, r, kind == SQ_V_DELETE ? "preparing delete" : "preparing update", &v->stmt, err);
}

int sq_variant_get(sq_sink *s, sq_rel *r, int kind, const od_tuple *nt, const od_tuple *ot,
                   sq_variant **out, od_error *err) {
  size_t w = r->mask_words, bytes = 2 * w * sizeof(uint64_t);
  memset(r->scratch, 0, bytes);
  bool new_unchanged = false;
  for (int i = 0; nt && i < nt->ncolumns; i++)
    if (nt->values[i].kind == OD_VALUE_UNCHANGED) {
      r->scratch[i / 64] |= 1ull << (i % 64);
      new_unchanged = true;
    }
  for (int i = 0; ot && i < ot->ncolumns; i++)
    if (ot->values[i].kind == OD_VALUE_UNCHANGED) r->scratch[w + i / 64] |= 1ull << (i % 64);

  s->clock++;
  sq_variant *free_slot = NULL, *lru = NULL;
  for (int i = 0; i < SQ_MAX_VARIANTS; i++) {
    sq_variant *v = &r->variants[i];
    if (!v->stmt) {
      if (!free_slot) free_slot = v;
    } else if (v->kind == kind && memcmp(v->mask, r->scratch, bytes) == 0) {
      v->last_use = s->clock;
      *out = v;
      return OD_OK;
    } else if (!lru || v->last_use < lru->last_use) {
      lru = v;
    }
  }
  sq_variant *slot = free_slot ? free_slot : lru; /* a free slot, else the least recently used */
  if (slot->stmt) {
    sqlite3_finalize(slot->stmt);
    slot->stmt = NULL;
  }
  if (!slot->mask) {
    slot->mask = malloc(bytes);
    slot->plan = malloc(2 * (size_t)r->rel->ncolumns * sizeof(uint16_t));
    if (!slot->mask || !slot->plan)
      return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: out of memory", s->path, r->target);
  }
  int rc = build_variant(s, r, slot, kind, err);
  if (rc == 1) {
    *out = NULL;
    return OD_OK;
  }
  if (rc) return rc;
  memcpy(slot->mask, r->scratch, bytes);
  slot->kind = (uint8_t)kind;
  slot->new_unchanged = new_unchanged;
  slot->last_use = s->clock;
  *out = slot;
  return OD_OK;
}

/* ---- relation states ----------------------------------------------------------------------- */

static void rel_free(sq_rel *r) {
  if (!r) return;
  sqlite3_finalize(r->insert);
  sqlite3_finalize(r->insert_many);
  sqlite3_finalize(r->del_keyed);
  sqlite3_finalize(r->truncate);
  for (int i = 0; i < SQ_MAX_VARIANTS; i++) {
    sqlite3_finalize(r->variants[i].stmt);
    free(r->variants[i].mask);
    free(r->variants[i].plan);
  }
  free(r->target);
  free(r->qtarget);
  free(r->cls);
  free(r->ident_plan);
  free(r->key_plan);
  free(r->scratch);
  free(r);
}

static void free_node(od_relmap_node *n) { rel_free((sq_rel *)n); }

void sq_rels_drop(sq_sink *s, bool only_current_txn) {
  od_relmap_drop(&s->rels, !only_current_txn, s->txn_seq, free_node);
}

/* CREATE TABLE IF NOT EXISTS, then make an existing table fit this version (sqlite_schema.c). */
static int make_table(sq_sink *s, sq_rel *r, od_error *err) {
  const od_relation *rel = r->rel;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  if (s->start_over == rel) { /* the source table was dropped and re-created: so is ours */
    od_sqlbuf_add(b, "DROP TABLE IF EXISTS ");
    od_sqlbuf_add(b, r->qtarget);
    int rc = exec_sql(s, r, "dropping the table of a table re-created at the source", err);
    if (rc) return rc;
    sqlite3_stmt *st;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "DELETE FROM _odsync_columns WHERE tbl = ?1");
    if ((rc = sq_prepare_sql(s, r, "writing _odsync_columns", &st, err))) return rc;
    sqlite3_bind_text(st, 1, r->target, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    sqlite3_finalize(st);
    if (src != SQLITE_DONE) return sq_fail(s, r->target, "writing _odsync_columns", src, err);
    od_info("sqlite sink %s: table %s starts over (dropped and re-created at the source)", s->path, r->target);
    od_sqlbuf_reset(b);
  }
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " (");
  for (int i = 0; i < rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ", ");
    add_col(b, r, i);
    od_sqlbuf_addf(b, " %s", sq_class_decl(r->cls[i]));
  }
  if (r->keyed) {
    od_sqlbuf_add(b, ", PRIMARY KEY (");
    for (int k = 0; k < r->nkey; k++) {
      if (k) od_sqlbuf_add(b, ", ");
      add_col(b, r, SQ_COL(r->key_plan[k]));
    }
    od_sqlbuf_add(b, ")");
  }
  od_sqlbuf_add(b, ")");
  int rc = exec_sql(s, r, "creating table", err);
  if (rc) return rc;
  return sq_evolve_table(s, r, err);
}

static int rel_create(sq_sink *s, const od_relation *rel, sq_rel **out, od_error *err) {
  const char *schema = rel->schema ? rel->schema : "";
  const char *name = rel->name ? rel->name : "";
  if (rel->ncolumns == 0 || rel->ncolumns >= 0x8000 || !*name)
    return OD_FAIL(err, OD_ESINK, "sqlite sink %s: table %s.%s: relation has %d columns; SQLite tables "
                   "need between 1 and 32767 columns and a name",
                   s->path, schema, name, rel->ncolumns);
  sq_rel *r = calloc(1, sizeof *r);
  if (!r) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  r->rel = rel;
  r->node.born = s->txn_seq;
  int n = rel->ncolumns;
  r->mask_words = ((size_t)n + 63) / 64;

  od_sqlbuf *b = &s->sql;
  r->target = sq_target_of(schema, name);
  od_sqlbuf_reset(b);
  od_sqlbuf_ident(b, r->target ? r->target : "");
  r->qtarget = buf_strdup(b);
  r->cls = malloc((size_t)n);
  r->ident_plan = malloc((size_t)n * sizeof(uint16_t));
  r->key_plan = malloc((size_t)n * sizeof(uint16_t));
  r->scratch = malloc(2 * r->mask_words * sizeof(uint64_t));
  if (!r->target || !r->qtarget || !r->cls || !r->ident_plan || !r->key_plan || !r->scratch) {
    rel_free(r);
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  }
  for (int i = 0; i < n; i++) {
    r->cls[i] = sq_class_of(rel->columns[i].type_oid);
    r->ident_plan[i] = (uint16_t)i;
    if (rel->columns[i].key) r->key_plan[r->nkey++] = (uint16_t)(i | SQ_FROM_MATCH);
  }
  /* Under REPLICA IDENTITY FULL pgoutput flags every column; the key flags are a real key only
   * when the source replaced them with the primary key (has_primary_key). */
  r->keyed = r->nkey > 0 && !rel->match_full_row;

  int rc = sq_owner_claim(s, r, err);
  if (rc == OD_OK) rc = make_table(s, r, err);
  if (rc == OD_OK && !od_relmap_insert(&s->rels, &r->node, rel))
    rc = OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  if (rc) {
    rel_free(r);
    return rc;
  }
  *out = r;
  return OD_OK;
}

int sq_rel_get(sq_sink *s, const od_relation *rel, sq_rel **out, od_error *err) {
  od_relmap_node *n = od_relmap_find(&s->rels, rel);
  if (n) {
    *out = (sq_rel *)n;
    return OD_OK;
  }
  return rel_create(s, rel, out, err);
}
