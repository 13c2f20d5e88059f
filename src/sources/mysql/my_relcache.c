/* sources/mysql/my_relcache.c — odsync relations (od_relation) for MariaDB tables.
 *
 * Owns: one chain of immutable od_relation versions per captured table, built from a described
 * table map (my_table with names and keys) and my_column_describe; a new version (version + 1,
 * `previous` set) whenever a table map's shape differs from the current one. Every version lives
 * until my_relcache_free (the end of the source's session), so changes may point to them.
 * Never touches: row values, connections.
 */
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/my_relcache.h"

struct my_relcache {
  od_relation **rels; /* current version per table */
  int n, cap;
};

my_relcache *my_relcache_new(void) { return calloc(1, sizeof(my_relcache)); }

/* The relation's oid: the same for a table name in every session (the schema history compares oids
 * across sessions, and a new oid under a known name means "dropped and re-created": its sink table
 * starts over). FNV-1a over "db\0table"; MariaDB has no relation oid of its own to use. */
static uint32_t stable_oid(const char *db, const char *name) {
  uint32_t h = 2166136261u;
  for (const char *p = db; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  h = (h ^ 0u) * 16777619u;
  for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  return h ? h : 1;
}

static void free_rel(od_relation *r) {
  while (r) {
    od_relation *prev = r->previous;
    for (int i = 0; i < r->ncolumns; i++) free(r->columns[i].name);
    free(r->columns);
    free(r->schema);
    free(r->name);
    free(r);
    r = prev;
  }
}

void my_relcache_free(my_relcache *rc) {
  if (!rc) return;
  for (int i = 0; i < rc->n; i++) free_rel(rc->rels[i]);
  free(rc->rels);
  free(rc);
}

static od_relation *build(const my_table *t, od_error *err) {
  od_relation *r = calloc(1, sizeof *r);
  if (!r) goto oom;
  r->schema = strdup(t->db);
  r->name = strdup(t->name);
  r->columns = calloc((size_t)t->ncols, sizeof *r->columns);
  if (!r->schema || !r->name || !r->columns) goto oom;
  r->ncolumns = (uint16_t)t->ncols;
  for (int i = 0; i < t->ncols; i++) {
    const my_column *c = &t->cols[i];
    od_column *o = &r->columns[i];
    if (!c->name)
      return free_rel(r), OD_FAIL(err, OD_ESCHEMA, "table %s.%s: column %d has no name", t->db, t->name, i + 1),
             NULL;
    if (!(o->name = strdup(c->name))) goto oom;
    my_column_describe(c, o);
    o->key = t->has_key && c->key;
    o->attnum = (int16_t)(i + 1);
  }
  r->has_primary_key = t->has_key;
  r->replica_identity = t->has_key ? 'd' : 'f';
  return r;
oom:
  free_rel(r);
  OD_FAIL(err, OD_ENOMEM, "out of memory");
  return NULL;
}

static bool same_shape(const od_relation *a, const od_relation *b) {
  if (a->ncolumns != b->ncolumns || a->has_primary_key != b->has_primary_key) return false;
  for (int i = 0; i < a->ncolumns; i++) {
    const od_column *x = &a->columns[i], *y = &b->columns[i];
    if (strcmp(x->name, y->name) || x->type_oid != y->type_oid || x->typmod != y->typmod || x->key != y->key ||
        strcmp(x->type_name, y->type_name))
      return false;
  }
  return true;
}

int my_relcache_get(my_relcache *rc, const my_table *t, od_relation **out, bool *is_new, od_error *err) {
  *is_new = false;
  int slot = -1;
  for (int i = 0; i < rc->n; i++)
    if (!strcmp(rc->rels[i]->schema, t->db) && !strcmp(rc->rels[i]->name, t->name)) slot = i;
  od_relation *r = build(t, err);
  if (!r) return err->code;
  if (slot >= 0 && same_shape(rc->rels[slot], r)) {
    free_rel(r);
    *out = rc->rels[slot];
    return OD_OK;
  }
  if (slot >= 0) {
    r->oid = rc->rels[slot]->oid;
    r->version = rc->rels[slot]->version + 1;
    r->previous = rc->rels[slot];
    rc->rels[slot] = r;
  } else {
    if (rc->n == rc->cap) {
      int cap = rc->cap ? rc->cap * 2 : 16;
      od_relation **v = realloc(rc->rels, (size_t)cap * sizeof *v);
      if (!v) return free_rel(r), OD_FAIL(err, OD_ENOMEM, "out of memory");
      rc->rels = v;
      rc->cap = cap;
    }
    r->oid = stable_oid(t->db, t->name);
    r->version = 1;
    rc->rels[rc->n++] = r;
  }
  *out = r;
  *is_new = true;
  return OD_OK;
}

od_relation *my_relcache_find(my_relcache *rc, const char *db, const char *name) {
  for (int i = 0; i < rc->n; i++)
    if (!strcmp(rc->rels[i]->schema, db) && !strcmp(rc->rels[i]->name, name)) return rc->rels[i];
  return NULL;
}
