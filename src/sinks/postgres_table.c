/* sinks/postgres_table.c — the PostgreSQL sink's per-relation-version state.
 *
 * Owns: one pg_rel per od_relation version seen (found by pointer in a chained hash): the target
 * table's name (table_map, then `schema`, then the source's schema), the DDL that makes the
 * target fit the relation (CREATE SCHEMA/TABLE IF NOT EXISTS under one transaction-scoped advisory
 * lock so that several odsync sessions can race safely; an existing table is evolved by
 * postgres_schema.c under the same lock), the statements of older versions of a table (deallocated
 * once a newer version has its state), and the
 * SQL text and parameter plan of every statement shape: upsert/insert, keyed delete, truncate,
 * and up to PGS_MAX_VARIANTS update/delete variants keyed by which values are UNCHANGED
 * (evicted least recently used, with a pipelined DEALLOCATE).
 * Statements are prepared once per connection (pipelined); applying a row only sends Bind/Execute.
 * Never touches: transactions, the checkpoint, result interpretation (postgres_apply.c).
 * The od_relation is borrowed: it outlives the sink (see odsync/change.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "core/log.h"
#include "sinks/postgres_internal.h"

/* First OID of user-defined objects (FirstNormalObjectId): below it, types are built in. */
#define FIRST_USER_OID 16384u


int pgs_qualify(od_sqlbuf *b, const char *name, const char *def_schema) {
  const char *dot = strchr(name, '.');
  if (dot) {
    char *sch = strndup(name, (size_t)(dot - name));
    if (!sch) return b->oom = true, OD_ENOMEM;
    od_sqlbuf_ident(b, sch);
    free(sch);
    name = dot + 1;
  } else {
    od_sqlbuf_ident(b, def_schema);
  }
  od_sqlbuf_add(b, ".");
  od_sqlbuf_ident(b, name);
  return b->oom ? OD_ENOMEM : OD_OK;
}

static char *buf_strdup(const od_sqlbuf *b) {
  if (b->oom) return NULL;
  char *p = malloc(b->len + 1);
  if (p) memcpy(p, b->p ? b->p : "", b->len + 1);
  return p;
}

/* Built-in types without an equality operator: rows are matched on their text form. */
static bool needs_text_compare(uint32_t oid) {
  /* json, xml, jsonpath, refcursor, pg_snapshot, txid_snapshot (no '=' at all), geometric types
   * (box/circle '=' compares areas), and their arrays. */
  static const uint32_t oids[] = {114, 199, 142, 143, 600, 1017, 601, 1018, 602, 1019, 603, 1020,
                                  604, 1027, 628, 629, 718, 719, 5038, 5039, 2970, 2949, 4072, 4073,
                                  1790, 2201};
  for (size_t i = 0; i < sizeof oids / sizeof oids[0]; i++)
    if (oids[i] == oid) return true;
  return false;
}

/* ---- statements ---------------------------------------------------------------------------- */

static void add_col(od_sqlbuf *b, const pg_rel *r, int i) { od_sqlbuf_ident(b, r->rel->columns[i].name); }

/* Name the statement and queue its PREPARE (text in s->sql). */
static int prepare(pgs_sink *s, pg_rel *r, pgs_stmt *st, const char *what, od_error *err) {
  if (s->sql.oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: table %s: %s: out of memory", s->where,
                                 r->target, what);
  snprintf(st->name, sizeof st->name, "odsync_%u", ++s->stmt_seq);
  int rc = pgs_send_prepare(s, r, what, st->name, err);
  if (rc) st->name[0] = '\0';
  else s->stats.prepared++;
  return rc;
}

static int ensure_plan(pgs_sink *s, pg_rel *r, pgs_stmt *st, od_error *err) {
  if (st->plan) return OD_OK;
  st->plan = malloc(2 * (size_t)r->rel->ncolumns * sizeof(uint16_t) + sizeof(uint16_t));
  if (!st->plan) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: table %s: out of memory", s->where, r->target);
  return OD_OK;
}

static void add_column_list(od_sqlbuf *b, const pg_rel *r) {
  for (int i = 0; i < r->rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ",");
    add_col(b, r, i);
  }
}

int pgs_stmt_insert(pgs_sink *s, pg_rel *r, const pgs_stmt **out, od_error *err) {
  if (!r->insert.name[0]) {
    const od_relation *rel = r->rel;
    int rc = ensure_plan(s, r, &r->insert, err);
    if (rc) return rc;
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "INSERT INTO ");
    od_sqlbuf_add(b, r->qtarget);
    /* The alias keeps EXCLUDED unambiguous when the table itself is called "excluded". */
    od_sqlbuf_add(b, " AS odsync_target (");
    add_column_list(b, r);
    od_sqlbuf_add(b, ") VALUES (");
    for (int i = 0; i < rel->ncolumns; i++) {
      od_sqlbuf_addf(b, "%s$%d", i ? "," : "", i + 1);
      r->insert.plan[i] = (uint16_t)i;
    }
    r->insert.nplan = rel->ncolumns;
    od_sqlbuf_add(b, ")");
    if (r->keyed) {
      od_sqlbuf_add(b, " ON CONFLICT (");
      for (int k = 0; k < r->nkey; k++) {
        if (k) od_sqlbuf_add(b, ",");
        add_col(b, r, PGS_COL(r->key_plan[k]));
      }
      od_sqlbuf_add(b, ") DO ");
      if (r->nkey == rel->ncolumns) {
        od_sqlbuf_add(b, "NOTHING");
      } else {
        od_sqlbuf_add(b, "UPDATE SET ");
        bool first = true;
        for (int i = 0; i < rel->ncolumns; i++) {
          if (rel->columns[i].key) continue;
          if (!first) od_sqlbuf_add(b, ",");
          first = false;
          add_col(b, r, i);
          od_sqlbuf_add(b, "=EXCLUDED.");
          add_col(b, r, i);
        }
      }
    }
    if ((rc = prepare(s, r, &r->insert, "preparing insert", err))) return rc;
  }
  *out = &r->insert;
  return OD_OK;
}

/* The cast a parameter compared with a column needs. The reg* types (regclass, regtype, ...) have
 * no '=' of their own: `c = $1` resolves to oid = oid and would parse 'pg_class' as an oid. */
static const char *param_cast(uint32_t oid) {
  switch (oid) {
    case 24: return "::regproc";
    case 2202: return "::regprocedure";
    case 2203: return "::regoper";
    case 2204: return "::regoperator";
    case 2205: return "::regclass";
    case 2206: return "::regtype";
    case 3734: return "::regconfig";
    case 3769: return "::regdictionary";
    case 4089: return "::regnamespace";
    case 4096: return "::regrole";
    case 4191: return "::regcollation";
    default: return "";
  }
}

/* Append the cast of a parameter compared with column i: its target type for user-defined types
 * (an untyped `cp = $1` on a composite resolves to record = record, whose input fails: "input of
 * anonymous composite types is not implemented"), the reg* casts, else nothing. */
static void add_param_cast(od_sqlbuf *b, const pg_rel *r, int i) {
  if (r->ucast && r->ucast[i]) od_sqlbuf_addf(b, "::%s", r->ucast[i]);
  else od_sqlbuf_add(b, param_cast(r->rel->columns[i].type_oid));
}

static void add_key_match(od_sqlbuf *b, const pg_rel *r, pgs_stmt *st) {
  od_sqlbuf_add(b, " WHERE ");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, " AND ");
    int i = PGS_COL(r->key_plan[k]);
    add_col(b, r, i);
    st->plan[st->nplan++] = r->key_plan[k];
    od_sqlbuf_addf(b, "=$%d", st->nplan);
    add_param_cast(b, r, i);
  }
}

int pgs_stmt_delete_keyed(pgs_sink *s, pg_rel *r, const pgs_stmt **out, od_error *err) {
  if (!r->del_keyed.name[0]) {
    int rc = ensure_plan(s, r, &r->del_keyed, err);
    if (rc) return rc;
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "DELETE FROM ");
    od_sqlbuf_add(b, r->qtarget);
    r->del_keyed.nplan = 0;
    add_key_match(b, r, &r->del_keyed);
    if ((rc = prepare(s, r, &r->del_keyed, "preparing delete", err))) return rc;
  }
  *out = &r->del_keyed;
  return OD_OK;
}

int pgs_stmt_truncate(pgs_sink *s, pg_rel *r, const pgs_stmt **out, od_error *err) {
  if (!r->truncate.name[0]) {
    od_sqlbuf_reset(&s->sql);
    od_sqlbuf_add(&s->sql, "TRUNCATE TABLE ");
    od_sqlbuf_add(&s->sql, r->qtarget);
    r->truncate.nplan = 0;
    int rc = prepare(s, r, &r->truncate, "preparing truncate", err);
    if (rc) return rc;
  }
  *out = &r->truncate;
  return OD_OK;
}

static bool bit(const uint64_t *m, int i) { return (m[i / 64] >> (i % 64)) & 1; }

/* Types whose '=' holds only between values of identical text form (in one session). For every
 * other type two values can be equal yet differ (numeric 1.0 = 1.00, float8 -0 = 0, interval
 * '1 day' = '24:00:00', bpchar trailing blanks, arrays/ranges/records of those). */
static bool eq_is_identity(uint32_t oid) {
  switch (oid) {
    case OD_PGT_BOOL: case OD_PGT_BYTEA: case OD_PGT_INT8: case OD_PGT_INT2: case OD_PGT_INT4: case OD_PGT_TEXT:
    case OD_PGT_OID: case OD_PGT_VARCHAR: case OD_PGT_UUID: case OD_PGT_DATE: case OD_PGT_TIME: case OD_PGT_TIMESTAMP:
    case OD_PGT_TIMESTAMPTZ: case 3220 /* pg_lsn */:
      return true;
    default:
      return false;
  }
}

/* " WHERE ctid = (SELECT ctid FROM t WHERE <every old value not UNCHANGED> LIMIT 1)". */
static int add_row_match(pgs_sink *s, pg_rel *r, pgs_stmt *st, const uint64_t *oldm, od_error *err) {
  od_sqlbuf *b = &s->sql;
  int before = st->nplan;
  od_sqlbuf_add(b, " WHERE ctid = (SELECT ctid FROM ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " WHERE ");
  for (int i = 0; i < r->rel->ncolumns; i++) {
    if (bit(oldm, i)) continue;
    if (st->nplan > before) od_sqlbuf_add(b, " AND ");
    add_col(b, r, i);
    st->plan[st->nplan++] = (uint16_t)(i | PGS_FROM_MATCH);
    if (r->text_cmp[i]) od_sqlbuf_addf(b, "::text IS NOT DISTINCT FROM $%d::text", st->nplan);
    else {
      od_sqlbuf_addf(b, " IS NOT DISTINCT FROM $%d", st->nplan);
      add_param_cast(b, r, i);
    }
  }
  if (st->nplan == before)
    return OD_FAIL(err, OD_ESINK, "postgres sink %s: table %s: the old row has no value to match on", s->where,
                   r->target);
  /* Of several rows equal to the old row, take one whose values also have the old row's exact
   * text form (the parameter parsed as the column's type, printed by the same session), so that
   * the source's 1.00 is not served by the target's 1.0. */
  int nmatch = st->nplan, npref = 0;
  for (int p = before; p < nmatch; p++) {
    int i = PGS_COL(st->plan[p]);
    if (r->text_cmp[i] || eq_is_identity(r->rel->columns[i].type_oid)) continue;
    od_sqlbuf_add(b, npref++ ? " AND " : " ORDER BY (");
    add_col(b, r, i);
    od_sqlbuf_addf(b, "::text IS NOT DISTINCT FROM $%d::text", p + 1);
  }
  if (npref) od_sqlbuf_add(b, ") DESC");
  od_sqlbuf_add(b, " LIMIT 1)");
  return OD_OK;
}

/* SQL and plan of a variant from the masks in r->scratch. 0 ok, 1 when an update has nothing to
 * set, or an od status. */
static int build_variant(pgs_sink *s, pg_rel *r, pgs_variant *v, int kind, od_error *err) {
  const od_relation *rel = r->rel;
  const uint64_t *newm = r->scratch, *oldm = r->scratch + r->mask_words;
  pgs_stmt *st = &v->st;
  od_sqlbuf *b = &s->sql;
  int rc = ensure_plan(s, r, st, err);
  if (rc) return rc;
  st->nplan = 0;
  od_sqlbuf_reset(b);
  if (kind == PGS_V_DELETE) {
    od_sqlbuf_add(b, "DELETE FROM ");
    od_sqlbuf_add(b, r->qtarget);
    if ((rc = add_row_match(s, r, st, oldm, err))) return rc;
    return prepare(s, r, st, "preparing delete", err);
  }
  if (kind == PGS_V_UPSERT_ROW) od_sqlbuf_add(b, "WITH u AS (");
  od_sqlbuf_add(b, "UPDATE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " SET ");
  for (int i = 0; i < rel->ncolumns; i++) {
    if (bit(newm, i)) continue;
    if (st->nplan) od_sqlbuf_add(b, ",");
    add_col(b, r, i);
    st->plan[st->nplan++] = (uint16_t)i;
    od_sqlbuf_addf(b, "=$%d", st->nplan);
  }
  if (st->nplan == 0) return 1;
  if (r->keyed) {
    add_key_match(b, r, st);
  } else if ((rc = add_row_match(s, r, st, oldm, err))) {
    return rc;
  }
  if (kind == PGS_V_UPSERT_ROW) {
    /* The full new row: when no row matched, insert it (one statement, so order is kept). */
    od_sqlbuf_add(b, " RETURNING 1) INSERT INTO ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " (");
    add_column_list(b, r);
    od_sqlbuf_add(b, ") SELECT ");
    for (int i = 0; i < rel->ncolumns; i++) od_sqlbuf_addf(b, "%s$%d", i ? "," : "", i + 1);
    od_sqlbuf_add(b, " WHERE NOT EXISTS (SELECT 1 FROM u)");
  }
  return prepare(s, r, st, "preparing update", err);
}

int pgs_variant_get(pgs_sink *s, pg_rel *r, int kind, const od_tuple *nt, const od_tuple *ot,
                    const pgs_variant **out, od_error *err) {
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

  uint64_t clock = ++s->clock;
  pgs_variant *free_slot = NULL, *lru = NULL;
  for (int i = 0; i < PGS_MAX_VARIANTS; i++) {
    pgs_variant *v = &r->variants[i];
    if (!v->kind) {
      if (!free_slot) free_slot = v;
    } else if (v->kind == kind && memcmp(v->mask, r->scratch, bytes) == 0) {
      v->last_use = clock;
      *out = v;
      return OD_OK;
    } else if (!lru || v->last_use < lru->last_use) {
      lru = v;
    }
  }
  pgs_variant *slot = free_slot ? free_slot : lru;
  if (slot->kind && slot->st.name[0]) {
    /* Queued after every execute that still uses it: the pipeline keeps order. */
    char sql[48];
    snprintf(sql, sizeof sql, "DEALLOCATE %s", slot->st.name);
    int rc = pgs_send_utility(s, r, "deallocating a statement", sql, err);
    if (rc) return rc;
  }
  slot->kind = 0;
  slot->st.name[0] = '\0';
  if (!slot->mask && !(slot->mask = malloc(bytes)))
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: table %s: out of memory", s->where, r->target);
  int rc = build_variant(s, r, slot, kind, err);
  if (rc == 1) {
    *out = NULL;
    return OD_OK;
  }
  if (rc) return rc;
  memcpy(slot->mask, r->scratch, bytes);
  slot->kind = (uint8_t)kind;
  slot->new_unchanged = new_unchanged;
  slot->last_use = clock;
  *out = slot;
  return OD_OK;
}

/* ---- relation states ----------------------------------------------------------------------- */

static void rel_free(pg_rel *r) {
  if (!r) return;
  free(r->insert.plan);
  free(r->del_keyed.plan);
  free(r->truncate.plan);
  for (int i = 0; i < PGS_MAX_VARIANTS; i++) {
    free(r->variants[i].mask);
    free(r->variants[i].st.plan);
  }
  free(r->target);
  free(r->qtarget);
  free(r->tschema);
  free(r->tname);
  free(r->text_cmp);
  for (int i = 0; r->ucast && i < r->nucast; i++) free(r->ucast[i]);
  free(r->ucast);
  free(r->key_plan);
  free(r->scratch);
  pgs_bulk_free(r->bulk);
  free(r);
}

static void free_node(od_relmap_node *n) { rel_free((pg_rel *)n); }

void pgs_rels_drop(pgs_sink *s, bool only_current_txn) {
  od_relmap_drop(&s->rels, !only_current_txn, s->txn_seq, free_node);
}

bool pgs_type_as_text(uint32_t oid) {
  switch (oid) {
    case OD_PGT_PG_DDL_COMMAND:
    case OD_PGT_PG_NODE_TREE:
    case OD_PGT_PG_NDISTINCT:
    case OD_PGT_PG_DEPENDENCIES:
    case OD_PGT_PG_BRIN_BLOOM_SUMMARY:
    case OD_PGT_PG_BRIN_MINMAX_MULTI_SUMMARY:
    case OD_PGT_PG_MCV_LIST:
      return true;
    default:
      return oid >= FIRST_USER_OID;
  }
}

/* The SQL type a created column gets: the source's spelling for built-in types, text for
 * user-defined ones (enum, domain, composite, their arrays), which may not exist on the target,
 * and for the built-in types that cannot be written (pgs_type_as_text). */
int pgs_add_type(pgs_sink *s, const pg_rel *r, int i, od_error *err) {
  const od_column *c = &r->rel->columns[i];
  if (pgs_type_as_text(c->type_oid)) {
    od_sqlbuf_add(&s->sql, "text");
    return OD_OK;
  }
  if (c->type_name[0]) {
    od_sqlbuf_add(&s->sql, c->type_name);
    return OD_OK;
  }
  char oid[16], mod[16];
  snprintf(oid, sizeof oid, "%u", c->type_oid);
  snprintf(mod, sizeof mod, "%d", c->typmod);
  const char *p[] = {oid, mod};
  PGresult *res = pgs_exec(s, r->target, "naming a column type", "SELECT format_type($1::oid, $2::int)", 2, p, err);
  if (!res) return err->code;
  od_sqlbuf_add(&s->sql, PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "text");
  PQclear(res);
  return OD_OK;
}

static int exec_buf(pgs_sink *s, pg_rel *r, const char *what, od_error *err) {
  if (s->sql.oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: table %s: out of memory", s->where, r->target);
  PGresult *res = pgs_exec(s, r->target, what, s->sql.p, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  return OD_OK;
}

/* Make the target fit the relation: create schema and table, or evolve the existing table
 * (postgres_schema.c). */
static int make_table(pgs_sink *s, pg_rel *r, const char *schema_q, od_error *err) {
  const od_relation *rel = r->rel;
  bool exists = false;
  int rc = pgs_ensure_begin(s, err);
  if (!rc && s->start_over == rel) { /* the source table was dropped and re-created: so is the target */
    od_sqlbuf_reset(&s->sql);
    od_sqlbuf_add(&s->sql, "DROP TABLE IF EXISTS ");
    od_sqlbuf_add(&s->sql, r->qtarget);
    rc = exec_buf(s, r, "dropping the target of a table re-created at the source", err);
    if (!rc) rc = pgs_clear_columns(s, r, err);
    if (!rc) od_info("postgres sink %s: table %s starts over (dropped and re-created at the source)", s->where, r->target);
  }
  if (!rc) rc = pgs_evolve_table(s, r, false, &exists, err);
  if (rc || exists) return rc;
  /* Someone else may be creating it too: serialize, then look again. */
  PGresult *res = pgs_exec(s, r->target, "taking the DDL lock", PGS_DDL_LOCK, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  if ((rc = pgs_evolve_table(s, r, true, &exists, err)) || exists) return rc;
  if ((rc = pgs_clear_columns(s, r, err))) return rc;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "CREATE SCHEMA IF NOT EXISTS ");
  od_sqlbuf_add(b, schema_q);
  rc = exec_buf(s, r, "creating the schema", err);
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " (");
  for (int i = 0; !rc && i < rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ", ");
    add_col(b, r, i);
    od_sqlbuf_add(b, " ");
    rc = pgs_add_type(s, r, i, err);
    /* Key columns of a table whose key comes later are NOT NULL from the start, so that adding
     * the primary key does not scan the table once more to check it. */
    if (r->keyed && s->defer_key && rel->columns[i].key) od_sqlbuf_add(b, " NOT NULL");
  }
  /* A table created for a snapshot load gets its key when the load is done (postgres_load.c). */
  if (r->keyed && !s->defer_key) {
    od_sqlbuf_add(b, ", PRIMARY KEY (");
    for (int k = 0; k < r->nkey; k++) {
      if (k) od_sqlbuf_add(b, ", ");
      add_col(b, r, PGS_COL(r->key_plan[k]));
    }
    od_sqlbuf_add(b, ")");
  }
  od_sqlbuf_add(b, ")");
  if (!rc) rc = exec_buf(s, r, "creating the table", err);
  if (!rc)
    od_info("postgres sink %s: created table %s%s", s->where, r->target,
            r->keyed && s->defer_key ? " (its primary key is built once the initial snapshot is in)" : "");
  /* Record the columns' attnums and types (a table without columns gets them added here). */
  if (!rc) rc = pgs_evolve_table(s, r, true, &exists, err);
  return rc;
}

void pgs_target_of(const pgs_sink *s, const char *rschema, const char *rname, const char **schema,
                   const char **table, char *sbuf, size_t scap) {
  *schema = s->schema ? s->schema : rschema;
  *table = rname;
  for (int i = 0; i < s->nmap; i++) {
    const char *f = s->map_from[i], *dot = strchr(f, '.');
    if (strncmp(f, rschema, (size_t)(dot - f)) != 0 || rschema[dot - f] != '\0' ||
        strcmp(dot + 1, rname) != 0)
      continue;
    const char *to = s->map_to[i], *tdot = strchr(to, '.');
    if (tdot) {
      snprintf(sbuf, scap, "%.*s", (int)(tdot - to), to);
      *schema = sbuf;
      *table = tdot + 1;
    } else {
      *table = to;
    }
    return;
  }
}

/* r->ucast: the target's type of every column whose source type is user-defined, read from the
 * target's catalog by the column's name (a source type OID means nothing on the target). */
static int read_user_casts(pgs_sink *s, pg_rel *r, od_error *err) {
  const od_relation *rel = r->rel;
  bool any = false;
  for (int i = 0; i < rel->ncolumns; i++) any = any || rel->columns[i].type_oid >= FIRST_USER_OID;
  if (!any) return OD_OK;
  if (!(r->ucast = calloc((size_t)rel->ncolumns, sizeof *r->ucast)))
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  r->nucast = rel->ncolumns;
  const char *p[] = {r->qtarget};
  PGresult *res = pgs_exec(s, r->target, "reading the column types",
                           "SELECT a.attname, pg_catalog.format_type(a.atttypid, -1) FROM pg_catalog.pg_attribute a "
                           "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                           1, p, err);
  if (!res) return err->code;
  int rc = OD_OK;
  for (int t = 0; t < PQntuples(res) && rc == OD_OK; t++)
    for (int i = 0; i < rel->ncolumns; i++) {
      if (rel->columns[i].type_oid < FIRST_USER_OID || r->ucast[i] || strcmp(rel->columns[i].name, PQgetvalue(res, t, 0)))
        continue;
      if (!(r->ucast[i] = strdup(PQgetvalue(res, t, 1)))) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      break;
    }
  PQclear(res);
  return rc;
}

static int rel_create(pgs_sink *s, const od_relation *rel, pg_rel **out, od_error *err) {
  if (rel->ncolumns == 0 || rel->ncolumns > 1600 || !rel->name || !*rel->name || !rel->schema)
    return OD_FAIL(err, OD_ESINK, "postgres sink %s: table %s.%s: relation has %d columns; expected 1..1600 "
                   "and a name", s->where, rel->schema ? rel->schema : "", rel->name ? rel->name : "",
                   rel->ncolumns);
  pg_rel *r = calloc(1, sizeof *r);
  if (!r) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  r->rel = rel;
  r->node.born = s->txn_seq;
  int n = rel->ncolumns;
  r->mask_words = ((size_t)n + 63) / 64;
  char sbuf[256];
  const char *schema, *table;
  pgs_target_of(s, rel->schema, rel->name, &schema, &table, sbuf, sizeof sbuf);

  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "%s.%s", schema, table);
  r->target = buf_strdup(b);
  od_sqlbuf_reset(b);
  od_sqlbuf_ident(b, schema);
  char *schema_q = buf_strdup(b);
  od_sqlbuf_add(b, ".");
  od_sqlbuf_ident(b, table);
  r->qtarget = buf_strdup(b);
  r->tschema = strdup(schema);
  r->tname = strdup(table);
  r->text_cmp = calloc((size_t)n, sizeof *r->text_cmp);
  r->key_plan = malloc((size_t)n * sizeof(uint16_t));
  r->scratch = malloc(2 * r->mask_words * sizeof(uint64_t));
  if (!r->target || !r->qtarget || !r->tschema || !r->tname || !schema_q || !r->text_cmp || !r->key_plan || !r->scratch) {
    free(schema_q);
    rel_free(r);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  for (int i = 0; i < n; i++) {
    r->text_cmp[i] = needs_text_compare(rel->columns[i].type_oid);
    if (rel->columns[i].key) r->key_plan[r->nkey++] = (uint16_t)(i | PGS_FROM_MATCH);
  }
  /* Under REPLICA IDENTITY FULL the key flags are a real key only when the source replaced them
   * with the primary key; otherwise rows are matched on the full old row. */
  r->keyed = r->nkey > 0 && !rel->match_full_row;

  /* Parameter arrays big enough for any statement of this relation (new row + match row). */
  if (s->pcap < 2 * n + 2) {
    int cap = 2 * n + 2;
    const char **pv = realloc(s->pvals, (size_t)cap * sizeof *pv);
    if (pv) s->pvals = pv;
    int *pl = realloc(s->plens, (size_t)cap * sizeof *pl);
    if (pl) s->plens = pl;
    if (!pv || !pl) {
      free(schema_q);
      rel_free(r);
      return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    }
    s->pcap = cap;
  }
  int rc = pgs_owner_claim(s, r, err);
  if (rc == OD_OK) rc = make_table(s, r, schema_q, err);
  if (rc == OD_OK) rc = read_user_casts(s, r, err);
  free(schema_q);
  if (rc == OD_OK) rc = pgs_rels_forget_table(s, r, err);
  if (rc == OD_OK && !od_relmap_insert(&s->rels, &r->node, rel)) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  if (rc) {
    rel_free(r);
    return rc;
  }
  *out = r;
  return OD_OK;
}

/* DEALLOCATE a prepared statement now (outside pipeline mode). */
static int deallocate(pgs_sink *s, const pg_rel *r, pgs_stmt *st, od_error *err) {
  if (!st->name[0]) return OD_OK;
  char sql[48];
  snprintf(sql, sizeof sql, "DEALLOCATE %s", st->name);
  st->name[0] = '\0';
  PGresult *res = pgs_exec(s, r->target, "deallocating a statement of an older table version", sql, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  return OD_OK;
}

typedef struct forget_ctx {
  pgs_sink *s;
  const pg_rel *keep;
  int rc;
  od_error *err;
} forget_ctx;

/* Older versions of keep's table: deallocate their statements, then free them. After a failure
 * the rest are kept (the session is ending anyway). */
static bool forget_one(od_relmap_node *n, void *ctx) {
  forget_ctx *f = ctx;
  pg_rel *r = (pg_rel *)n;
  if (f->rc || r == f->keep || strcmp(r->qtarget, f->keep->qtarget) != 0) return false;
  pgs_sink *s = f->s;
  int rc = deallocate(s, r, &r->insert, f->err);
  if (!rc) rc = deallocate(s, r, &r->del_keyed, f->err);
  if (!rc) rc = deallocate(s, r, &r->truncate, f->err);
  if (!rc) rc = pgs_bulk_forget(s, r, f->err);
  for (int v = 0; !rc && v < PGS_MAX_VARIANTS; v++)
    if (r->variants[v].kind) rc = deallocate(s, r, &r->variants[v].st, f->err);
  f->rc = rc;
  rel_free(r);
  return true;
}

int pgs_rels_forget_table(pgs_sink *s, const pg_rel *keep, od_error *err) {
  forget_ctx f = {s, keep, OD_OK, err};
  od_relmap_remove_if(&s->rels, forget_one, &f);
  return f.rc;
}

bool pgs_rel_known(const pgs_sink *s, const od_relation *rel) { return od_relmap_find(&s->rels, rel) != NULL; }

bool pgs_rel_table_in_segment(const pgs_sink *s, const od_relation *rel) {
  OD_RELMAP_FOREACH(&s->rels, n) {
    const pg_rel *r = (const pg_rel *)n;
    if (r->seg == s->seg && r->rel != rel && strcmp(r->rel->name, rel->name) == 0 &&
        strcmp(r->rel->schema, rel->schema) == 0)
      return true;
  }
  return false;
}

int pgs_rel_get(pgs_sink *s, const od_relation *rel, pg_rel **out, od_error *err) {
  od_relmap_node *n = od_relmap_find(&s->rels, rel);
  if (n) {
    *out = (pg_rel *)n;
    return OD_OK;
  }
  return rel_create(s, rel, out, err);
}
