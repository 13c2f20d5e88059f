/* postgres_mesh_ensure.c — session DDL of a mesh sink that locks a table only when it changes it.
 *
 * A mesh sink re-states its node's bookkeeping at every session start (columns added by later
 * versions, indexes, the triggers on the mesh tables). Run plainly, `ALTER TABLE ... ADD COLUMN IF
 * NOT EXISTS` takes an ACCESS EXCLUSIVE lock even when the column is there, `CREATE INDEX IF NOT
 * EXISTS` a SHARE lock, `CREATE OR REPLACE TRIGGER` a SHARE ROW EXCLUSIVE lock: a sink restarting
 * beside running sinks (which lock the mesh tables' rows, then the side tables) took those locks in
 * the other order and deadlocked with them, and with `odsync mesh join`'s snapshot reads of the seed.
 * The function made here, `_odsync_ensure(rel, kind, name, ddl)`, runs `ddl` only when:
 *   column:  rel has no column `name`;
 *   index:   rel has no index `name`;
 *   trigger: rel has no enabled trigger `name` whose comment is "odsync " || md5(ddl) — it is then
 *            (re)made, which enables it again, and commented so (COMMENT ON TRIGGER takes an ACCESS
 *            SHARE lock only). A trigger someone disabled is thus restored as before.
 * So a session after the first takes no lock on any table whose definition is already right.
 * Owns: nothing (it writes SQL into the caller's buffer). Never touches: the connection.
 */
#include "sinks/postgres_mesh_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void pgs_mesh_ensure_fn_ddl(const pgs_mesh *m, od_sqlbuf *b) {
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->ens_q);
  od_sqlbuf_add(b, "(rel regclass, kind text, obj text, ddl text) RETURNS void LANGUAGE plpgsql AS $odsync$ "
                   "DECLARE sig text := 'odsync ' || md5(ddl); BEGIN IF kind = 'column' THEN IF EXISTS (SELECT 1 "
                   "FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = obj AND NOT a.attisdropped) THEN "
                   "RETURN; END IF; ELSIF kind = 'index' THEN IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c "
                   "ON c.oid = i.indexrelid WHERE i.indrelid = rel AND c.relname = obj) THEN RETURN; END IF; ELSIF "
                   "kind = 'trigger' THEN IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname "
                   "= obj AND t.tgenabled = 'O' AND obj_description(t.oid, 'pg_trigger') = sig) THEN RETURN; END IF; "
                   "END IF; EXECUTE ddl; "
                   "IF kind = 'trigger' THEN EXECUTE format('COMMENT ON TRIGGER %I ON %s IS %L', obj, rel, sig); "
                   "END IF; END $odsync$; ");
}

/* A string literal of s (E'' with doubled backslashes when it has any: right whatever the
 * session's standard_conforming_strings). */
static void add_literal(od_sqlbuf *b, const char *s) {
  bool bs = strchr(s, '\\') != NULL;
  od_sqlbuf_add(b, bs ? "E'" : "'");
  for (const char *p = s; *p; p++) {
    if (*p == '\'' || (bs && *p == '\\')) od_sqlbuf_addn(b, p, 1);
    od_sqlbuf_addn(b, p, 1);
  }
  od_sqlbuf_add(b, "'");
}

/* SELECT ens('quoted_table'::regclass, kind, name, 'ddl_head quoted_table ddl_tail'). */
static void ensure_call(const pgs_mesh *m, od_sqlbuf *b, const char *table_q, const char *kind, const char *name,
                        const char *ddl_head, const char *ddl_tail) {
  od_sqlbuf ddl = {0};
  od_sqlbuf_add(&ddl, ddl_head);
  od_sqlbuf_add(&ddl, table_q);
  od_sqlbuf_add(&ddl, ddl_tail);
  od_sqlbuf_add(b, "SELECT ");
  od_sqlbuf_add(b, m->ens_q);
  od_sqlbuf_add(b, "(");
  add_literal(b, table_q);
  od_sqlbuf_addf(b, "::regclass, '%s', '%s', ", kind, name);
  if (ddl.oom) b->oom = true; /* the caller checks b->oom */
  else add_literal(b, ddl.p);
  od_sqlbuf_add(b, "); ");
  od_sqlbuf_free(&ddl);
}

void pgs_mesh_ensure_column(const pgs_mesh *m, od_sqlbuf *b, const char *table_q, const char *column,
                            const char *type) {
  char tail[160];
  snprintf(tail, sizeof tail, " ADD COLUMN IF NOT EXISTS %s %s", column, type);
  ensure_call(m, b, table_q, "column", column, "ALTER TABLE ", tail);
}

void pgs_mesh_ensure_index(const pgs_mesh *m, od_sqlbuf *b, const char *table_q, const char *index,
                           const char *using_cols) {
  char head[160], tail[200];
  snprintf(head, sizeof head, "CREATE INDEX IF NOT EXISTS %s ON ", index);
  snprintf(tail, sizeof tail, " %s", using_cols);
  ensure_call(m, b, table_q, "index", index, head, tail);
}
