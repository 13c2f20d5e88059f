/* sinks/postgres_dlq.c — the PostgreSQL sink's poison-row support (OD_SINK_DEAD_LETTERS): one
 * savepoint inside the sink transaction (buffered set-based changes, postgres_bulk.c, are sent
 * before SET and at RELEASE, so a rejected change surfaces at RELEASE at the latest), and the
 * table _odsync_dead_letters in the checkpoint table's schema (created on first use), written in
 * the open transaction so a dead letter commits with the rest of its source transaction and the
 * checkpoint.
 * Owns: that table's SQL. Never touches: the checkpoint, the data tables (ROLLBACK TO forgets the
 * table states of this transaction, as a rollback does, so they are looked at again).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/postgres_internal.h"
#include "sinks/postgres_mesh.h"

/* The quoted table name: _odsync_columns' schema, our name. */
static const char *dl_table(pgs_sink *s, char *buf, size_t size) {
  const char *dot = strrchr(s->cols_q, '.');
  int n = dot ? (int)(dot - s->cols_q) : 0;
  snprintf(buf, size, "%.*s%s\"_odsync_dead_letters\"", n, s->cols_q, dot ? "." : "");
  return buf;
}

static int run(pgs_sink *s, const char *what, const char *sql, int n, const char *const *params, od_error *err) {
  char t[300];
  PGresult *r = pgs_exec(s, dl_table(s, t, sizeof t), what, sql, n, params, err);
  if (!r) return err->code;
  PQclear(r);
  return OD_OK;
}

static int ensure_table(pgs_sink *s, od_error *err) {
  char t[300], sql[1024];
  snprintf(sql, sizeof sql,
           "CREATE TABLE IF NOT EXISTS %s (id bigserial PRIMARY KEY, pipeline text NOT NULL, position text NOT NULL, "
           "source_table text, op text, change jsonb NOT NULL, error text, code text, attempts integer NOT NULL, "
           "created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())",
           dl_table(s, t, sizeof t));
  return run(s, "creating the dead-letter table", sql, 0, NULL, err);
}

int pgs_savepoint(od_sink *base, int op, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: savepoint outside a transaction", s->where);
  int rc = OD_OK;
  switch (op) {
    case OD_SAVEPOINT_SET:
      if ((rc = pgs_mesh_flush(s, err)) || (rc = pgs_bulk_flush_now(s, err)) || (rc = pgs_ensure_begin(s, err))) return rc;
      return run(s, "SAVEPOINT", "SAVEPOINT od_row", 0, NULL, err);
    case OD_SAVEPOINT_RELEASE:
      if ((rc = pgs_mesh_flush(s, err)) || (rc = pgs_bulk_flush_now(s, err))) return rc;
      return run(s, "RELEASE SAVEPOINT", "RELEASE SAVEPOINT od_row", 0, NULL, err);
    case OD_SAVEPOINT_ROLLBACK:
      pgs_load_abort(s);
      pgs_mesh_discard(s);     /* a mesh sink's changes held back since SET */
      pgs_bulk_discard_all(s); /* only what came after SET: SET sent the rest */
      pgs_rels_drop(s, true);  /* tables made since may be gone again: look at them anew */
      if ((rc = run(s, "ROLLBACK TO SAVEPOINT", "ROLLBACK TO SAVEPOINT od_row", 0, NULL, err))) return rc;
      return run(s, "RELEASE SAVEPOINT", "RELEASE SAVEPOINT od_row", 0, NULL, err);
  }
  return OD_FAIL(err, OD_EINVAL, "postgres sink %s: unknown savepoint operation %d", s->where, op);
}

int pgs_put_dead_letter(od_sink *base, const od_dead_letter *dl, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: dead letter outside a transaction", s->where);
  int rc = pgs_ensure_begin(s, err);
  if (rc || (rc = ensure_table(s, err))) return rc;
  char t[300], sql[1024], attempts[16], id[32];
  snprintf(attempts, sizeof attempts, "%d", dl->attempts);
  snprintf(id, sizeof id, "%lld", (long long)dl->id);
  const char *p[8] = {dl->error ? dl->error : "", dl->code ? dl->code : "", attempts};
  if (dl->id > 0) {
    snprintf(sql, sizeof sql, "UPDATE %s SET error = $1, code = $2, attempts = $3::integer, updated_at = now() "
             "WHERE id = $4::bigint", dl_table(s, t, sizeof t));
    p[3] = id;
    return run(s, "updating a dead letter", sql, 4, p, err);
  }
  snprintf(sql, sizeof sql, "INSERT INTO %s (error, code, attempts, pipeline, position, source_table, op, change) "
           "VALUES ($1, $2, $3::integer, $4, $5, $6, $7, $8::jsonb)", dl_table(s, t, sizeof t));
  p[3] = dl->pipeline;
  p[4] = dl->position;
  p[5] = dl->table ? dl->table : "";
  p[6] = dl->op ? dl->op : "";
  p[7] = dl->change;
  return run(s, "writing a dead letter", sql, 8, p, err);
}

int pgs_list_dead_letters(od_sink *base, const char *pipeline, int64_t id,
                          int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  char t[300], sql[1024], idt[32];
  dl_table(s, t, sizeof t);
  const char *q[] = {t};
  PGresult *r = pgs_exec(s, t, "looking up the dead-letter table", "SELECT to_regclass($1) IS NOT NULL", 1, q, err);
  if (!r) return err->code;
  bool exists = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (!exists) return OD_OK;
  snprintf(idt, sizeof idt, "%lld", (long long)id);
  snprintf(sql, sizeof sql,
           "SELECT id, pipeline, position, source_table, op, change::text, error, code, attempts, "
           "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM %s "
           "WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::bigint = 0 OR id = $2::bigint) ORDER BY id", t);
  const char *p[] = {pipeline, idt};
  if (!(r = pgs_exec(s, t, "reading dead letters", sql, 2, p, err))) return err->code;
  int rc = OD_OK;
  for (int i = 0; i < PQntuples(r) && !rc; i++) {
    od_dead_letter dl = {.id = strtoll(PQgetvalue(r, i, 0), NULL, 10), .pipeline = PQgetvalue(r, i, 1),
                         .position = PQgetvalue(r, i, 2), .table = PQgetvalue(r, i, 3), .op = PQgetvalue(r, i, 4),
                         .change = PQgetvalue(r, i, 5), .error = PQgetvalue(r, i, 6), .code = PQgetvalue(r, i, 7),
                         .attempts = atoi(PQgetvalue(r, i, 8)), .created_at = PQgetvalue(r, i, 9)};
    rc = each(ctx, &dl);
  }
  PQclear(r);
  return rc;
}

int pgs_drop_dead_letter(od_sink *base, int64_t id, bool *found, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  *found = false;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: dead letter outside a transaction", s->where);
  int rc = pgs_ensure_begin(s, err);
  if (rc || (rc = ensure_table(s, err))) return rc;
  char t[300], sql[512], idt[32];
  snprintf(idt, sizeof idt, "%lld", (long long)id);
  snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = $1::bigint", dl_table(s, t, sizeof t));
  const char *p[] = {idt};
  PGresult *r = pgs_exec(s, t, "removing a dead letter", sql, 1, p, err);
  if (!r) return err->code;
  *found = atoi(PQcmdTuples(r)) > 0;
  PQclear(r);
  return OD_OK;
}
