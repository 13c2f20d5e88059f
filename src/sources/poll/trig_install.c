/* sources/poll/trig_install.c — the objects `type: postgres_trigger` keeps in the source database,
 * created by `odsync install-triggers` and removed by `odsync uninstall-triggers`:
 *
 *   schema odsync
 *     changes (id identity, xid xid8 = the writing transaction, relid, op I/U/D/T, new_row jsonb, old_row jsonb)
 *     txns    (xid xid8 primary key, seq bigint unique, committed_at): one row per capturing transaction
 *     commit_seq (sequence)
 *     capture()  the trigger function (row triggers for INSERT/UPDATE/DELETE, statement trigger for TRUNCATE):
 *                stores the row as jsonb and, on the transaction's first change, a txns row
 *     stamp()    a DEFERRED constraint trigger on txns: at commit, takes the transaction-scoped
 *                advisory lock TRIG_LOCK_KEY in SHARED mode (writers never wait for each other) and the
 *                next commit_seq. The reader takes the same lock EXCLUSIVELY for an instant (the gate,
 *                trig_source.c): once it holds it, every sequence number handed out so far belongs to a
 *                transaction that has ended (docs/adapters/postgres_trigger.md has the argument).
 *   per captured table: triggers odsync_capture (row) and odsync_capture_truncate (statement).
 *
 * Both functions are SECURITY DEFINER (owned by the installing user; every name schema-qualified), so
 * writers need no privileges on schema odsync. Uninstall drops the triggers and the schema: the
 * catalog is as it was before the install.
 * Ownership: borrows the config; owns its connection for the call. Never touches sinks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/adapter.h"
#include "odsync/capture_admin.h"
#include "sources/poll/pq_util.h"

#include "sources/poll/trig_gate.h"

static const char install_sql[] =
    "CREATE SCHEMA IF NOT EXISTS odsync;"
    "CREATE TABLE IF NOT EXISTS odsync.changes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " xid xid8 NOT NULL DEFAULT pg_current_xact_id(), relid oid NOT NULL, op \"char\" NOT NULL,"
    " new_row jsonb, old_row jsonb);"
    "CREATE INDEX IF NOT EXISTS changes_xid ON odsync.changes (xid);"
    "CREATE TABLE IF NOT EXISTS odsync.txns (xid xid8 PRIMARY KEY, seq bigint UNIQUE, committed_at timestamptz);"
    "CREATE SEQUENCE IF NOT EXISTS odsync.commit_seq;"
    /* No SET clause on capture(): a function with one reverts set_config(..., true) at its exit, and
     * the flag must last the transaction. Every name is schema-qualified instead. */
    "CREATE OR REPLACE FUNCTION odsync.capture() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $f$\n"
    "BEGIN\n"
    "  IF pg_catalog.current_setting('odsync.txn', true) IS DISTINCT FROM pg_catalog.pg_current_xact_id()::text THEN\n"
    "    INSERT INTO odsync.txns (xid) VALUES (pg_catalog.pg_current_xact_id()) ON CONFLICT DO NOTHING;\n"
    "    PERFORM pg_catalog.set_config('odsync.txn', pg_catalog.pg_current_xact_id()::text, true);\n"
    "  END IF;\n"
    "  IF TG_OP = 'INSERT' THEN\n"
    "    INSERT INTO odsync.changes (relid, op, new_row) VALUES (TG_RELID, 'I', pg_catalog.to_jsonb(NEW));\n"
    "  ELSIF TG_OP = 'UPDATE' THEN\n"
    "    INSERT INTO odsync.changes (relid, op, new_row, old_row) VALUES (TG_RELID, 'U', pg_catalog.to_jsonb(NEW), pg_catalog.to_jsonb(OLD));\n"
    "  ELSIF TG_OP = 'DELETE' THEN\n"
    "    INSERT INTO odsync.changes (relid, op, old_row) VALUES (TG_RELID, 'D', pg_catalog.to_jsonb(OLD));\n"
    "  ELSE\n"
    "    INSERT INTO odsync.changes (relid, op) VALUES (TG_RELID, 'T');\n"
    "  END IF;\n"
    "  RETURN NULL;\n"
    "END $f$;"
    "CREATE OR REPLACE FUNCTION odsync.stamp() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
    " SET search_path = pg_catalog, pg_temp AS $f$\n"
    "BEGIN\n"
    "  PERFORM pg_advisory_xact_lock_shared(" TRIG_LOCK_KEY ");\n"
    "  UPDATE odsync.txns SET seq = nextval('odsync.commit_seq'), committed_at = clock_timestamp() WHERE xid = NEW.xid;\n"
    "  RETURN NULL;\n"
    "END $f$;"
    "DROP TRIGGER IF EXISTS odsync_stamp ON odsync.txns;"
    "CREATE CONSTRAINT TRIGGER odsync_stamp AFTER INSERT ON odsync.txns DEFERRABLE INITIALLY DEFERRED"
    " FOR EACH ROW EXECUTE FUNCTION odsync.stamp();";

static int admin_table(PGconn *c, const char *name, bool install, const char *where, od_error *err) {
  pq_table t;
  int rc = pq_describe(c, name, &t, where, err);
  if (rc) return rc;
  char sql[2048];
  if (install)
    snprintf(sql, sizeof sql,
             "DROP TRIGGER IF EXISTS odsync_capture ON %1$s; DROP TRIGGER IF EXISTS odsync_capture_truncate ON %1$s;"
             "CREATE TRIGGER odsync_capture AFTER INSERT OR UPDATE OR DELETE ON %1$s FOR EACH ROW "
             "EXECUTE FUNCTION odsync.capture();"
             "CREATE TRIGGER odsync_capture_truncate AFTER TRUNCATE ON %1$s FOR EACH STATEMENT "
             "EXECUTE FUNCTION odsync.capture();",
             t.qname);
  else
    snprintf(sql, sizeof sql,
             "DROP TRIGGER IF EXISTS odsync_capture ON %1$s; DROP TRIGGER IF EXISTS odsync_capture_truncate ON %1$s;",
             t.qname);
  pq_table_free(&t);
  return pq_cmd(c, sql, where, err);
}

int od_triggers_admin(const od_config_section *source, const char *pipeline, bool install, char *summary,
                      size_t size, od_error *err) {
  char where[160];
  snprintf(where, sizeof where, "pipeline %s: postgres_trigger source", pipeline);
  if (!source->type || strcmp(source->type, "postgres_trigger"))
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: %s-triggers needs a source of type postgres_trigger (this one is %s)",
                   source->file, source->line, source->col, source->path, install ? "install" : "uninstall",
                   source->type ? source->type : "untyped");
  const char *dsn;
  char *const *names;
  int n;
  int rc = od_config_require_string(source, "dsn", &dsn, err);
  if (!rc) rc = od_config_list(source, "tables", &names, &n, err);
  if (rc) return rc;
  PGconn *c;
  if ((rc = pq_connect(dsn, pipeline, where, &c, err))) return rc;
  rc = pq_cmd(c, "BEGIN", where, err);
  if (!rc && install) rc = pq_cmd(c, install_sql, where, err);
  for (int i = 0; i < n && !rc; i++) rc = admin_table(c, names[i], install, where, err);
  if (!rc && !install) rc = pq_cmd(c, "DROP SCHEMA IF EXISTS odsync CASCADE", where, err);
  if (!rc) rc = pq_cmd(c, "COMMIT", where, err);
  PQfinish(c);
  if (!rc)
    snprintf(summary, size, "%s: %s capture triggers on %d table(s)%s", where, install ? "installed" : "removed", n,
             install ? " and the change table odsync.changes" : " and dropped schema odsync");
  return rc;
}
