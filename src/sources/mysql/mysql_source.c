/* sources/mysql/mysql_source.c — the MariaDB source (`type: mysql`): the vtable, the binlog
 * connection and the translation of the stream's transactions into the pipeline's handler calls.
 *
 * Reads the binlog as a replica through MariaDB Connector/C's replication API, which here only
 * connects and hands back each event's raw bytes (decoding is binlog*.c's and my_stream.c's). It
 * announces itself GTID-aware (@mariadb_slave_capability=4) and resumes at a checkpoint's GTID list
 * with @slave_connect_state and strict mode (file "" position 4), or at file:offset when the list is
 * empty. A binlog the server no longer has (purged) is a fatal OD_EGAP naming the recovery.
 * MariaDB keeps no replica position, so ack() only records what is durable.
 * Ownership: owns its settings, catalog, connection, replication handle and stream (whose
 * relations live until close()); borrows the config.
 * Never touches: sinks, the pipeline's queue, row bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>
#include <mariadb_rpl.h>

#include "core/adapter.h"
#include "odsync/source.h"
#include "sources/mysql/my_conn.h"
#include "sources/mysql/my_position.h"
#include "sources/mysql/my_source.h"
#include "sources/mysql/my_stream.h"

#define MAX_EVENTS_PER_POLL 8192



extern const od_source_ops od_source_mysql;

/* ---- stream callbacks: the catalog, and the pipeline's handler ---- */

static bool cb_captured(void *ctx, const char *db, const char *table) {
  my_source *s = ctx;
  return my_catalog_captured(s->cat, db, table);
}
static int cb_describe(void *ctx, my_table *t, od_error *err) {
  my_source *s = ctx;
  return my_catalog_describe(s->cat, t, err);
}
static int cb_shape(void *ctx, const char *db, const char *table, my_table **out, od_error *err) {
  my_source *s = ctx;
  return my_catalog_shape(s->cat, db, table, out, err);
}
static int cb_schema_changed(void *ctx, const char *db, const char *sql, size_t len, od_error *err) {
  (void)err;
  my_source *s = ctx;
  od_debug("%s: DDL in %s: %.*s", s->set.where, db[0] ? db : "(no db)", (int)(len > 200 ? 200 : len), sql);
  my_catalog_forget(s->cat);
  return OD_OK;
}
static int cb_relation(void *ctx, od_relation *rel, od_error *err) {
  my_source *s = ctx;
  od_debug("%s: relation %s.%s version %u (%u columns, %s)", s->set.where, rel->schema, rel->name, rel->version,
           rel->ncolumns, rel->has_primary_key ? "primary key" : "no primary key");
  return s->outer->relation ? s->outer->relation(s->outer->ctx, rel, err) : OD_OK;
}
static void fill_txn(my_source *s, const my_txn *t) {
  s->txn.xid = t->xid ? t->xid : t->gtid.seq;
  s->txn.start = t->start;
  s->txn.end = t->end;
  s->txn.commit_time = t->commit_time;
  s->txn.origin = NULL;
}
static int cb_begin(void *ctx, const my_txn *t, od_error *err) {
  my_source *s = ctx;
  fill_txn(s, t);
  s->txn.end = od_pos_none();
  return s->outer->begin(s->outer->ctx, &s->txn, err);
}
static int cb_change(void *ctx, const my_txn *t, const od_change *c, od_error *err) {
  (void)t;
  my_source *s = ctx;
  return s->outer->change(s->outer->ctx, &s->txn, c, err);
}
static int cb_commit(void *ctx, const my_txn *t, od_error *err) {
  my_source *s = ctx;
  fill_txn(s, t);
  return s->outer->commit(s->outer->ctx, &s->txn, err);
}
static int cb_idle(void *ctx, const od_pos *pos, od_error *err) {
  my_source *s = ctx;
  return s->outer->idle ? s->outer->idle(s->outer->ctx, pos, err) : OD_OK;
}

/* ---- vtable ---- */

static int my_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  my_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &od_source_mysql;
  s->pipeline = pipeline;
  int rc = my_settings_load(&s->set, cfg, pipeline, err);
  if (rc) {
    free(s);
    return rc;
  }
  if (!(s->cat = my_catalog_new(&s->set))) {
    my_settings_free(&s->set);
    free(s);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  *out = &s->base;
  return OD_OK;
}

static void disconnect(my_source *s) {
  if (s->ev) mariadb_free_rpl_event(s->ev);
  s->ev = NULL;
  if (s->rpl) mariadb_rpl_close(s->rpl);
  s->rpl = NULL;
  if (s->conn) mysql_close(s->conn);
  s->conn = NULL;
  my_catalog_disconnect(s->cat);
}

static void my_close_source(od_source *base) {
  my_source *s = (my_source *)base;
  if (!s) return;
  disconnect(s);
  if (s->stream_ready) my_stream_free(&s->stream); /* the relations too: the session is over */
  my_snap_free(s);
  my_catalog_free(s->cat);
  my_settings_free(&s->set);
  free(s);
}

static int my_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  my_source *s = (my_source *)base;
  int n = my_catalog_check(s->cat, problem, ctx, err);
  my_catalog_disconnect(s->cat);
  return n;
}

/* One-row, one-column query into buf. */
static int scalar(my_source *s, const char *sql, char *buf, size_t size, od_error *err) {
  if (mysql_query(s->conn, sql) != 0) return my_fail(&s->set, s->conn, sql, err);
  MYSQL_RES *r = mysql_store_result(s->conn);
  MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
  snprintf(buf, size, "%s", row && row[0] ? row[0] : "");
  mysql_free_result(r);
  return OD_OK;
}

static int purged(my_source *s, const char *msg, od_error *err) {
  char where[OD_POS_TEXT_MAX];
  const char *at = "the server's current position";
  if (!od_pos_is_none(&s->resume)) {
    int n = snprintf(where, sizeof where, "mysql:");
    if (od_pos_mysql.format(&s->resume, where + n, sizeof where - (size_t)n) > 0) at = where;
  }
  return OD_FAIL(err, OD_EGAP,
                 "%s: the binlog no longer holds %s, where pipeline %s resumes (server: %.120s). Recover by "
                 "re-seeding the sink: delete its tables and its _odsync_checkpoint row for pipeline %s (SQLite: a new "
                 "file) and restart. Keep binlogs longer than odsync may be stopped (binlog_expire_logs_seconds)",
                 s->set.where, at, s->pipeline, msg, s->pipeline);
}

static int my_start(od_source *base, const od_pos *from, od_error *err) {
  my_source *s = (my_source *)base;
  disconnect(s);
  int rc = my_catalog_require(s->cat, err); /* binlog on, ROW, FULL: else a clear error naming the setting */
  if (rc) return rc;
  if ((rc = my_connect(&s->set, &s->conn, err))) return rc;
  char checksum[32], gtids[OD_POS_MAX + 1] = "", file[256] = "", sql[512];
  uint64_t offset = 4;
  if ((rc = scalar(s, "SELECT @@global.binlog_checksum", checksum, sizeof checksum, err))) return rc;
  if (od_pos_is_none(from)) {
    /* A new pipeline: the server's current end of the binlog. */
    if ((rc = scalar(s, "SELECT @@global.gtid_binlog_pos", gtids, sizeof gtids, err))) return rc;
    if (mysql_query(s->conn, "SHOW MASTER STATUS") != 0) return my_fail(&s->set, s->conn, "SHOW MASTER STATUS", err);
    MYSQL_RES *r = mysql_store_result(s->conn);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    if (row && row[0] && row[1]) {
      snprintf(file, sizeof file, "%s", row[0]);
      offset = strtoull(row[1], NULL, 10);
    }
    mysql_free_result(r);
    if (!file[0]) return OD_FAIL(err, OD_ESOURCE, "%s: SHOW MASTER STATUS is empty: is log_bin on?", s->set.where);
    if ((rc = my_pos_make(file, offset, gtids, &s->resume, err))) return rc;
  } else {
    if (from->kind != &od_pos_mysql)
      return OD_FAIL(err, OD_EINVAL, "%s: the sink's checkpoint is a %s position, not a mysql one: this sink was "
                     "filled from another source", s->set.where, from->kind->name);
    my_pos_parts(from, file, sizeof file, &offset, gtids, sizeof gtids);
    s->resume = *from;
  }
  for (const char *g = gtids; *g; g++)
    if (!((*g >= '0' && *g <= '9') || *g == '-' || *g == ',')) return OD_FAIL(err, OD_EINVAL, "bad GTID list");
  snprintf(sql, sizeof sql,
           "SET @master_binlog_checksum = @@global.binlog_checksum, @mariadb_slave_capability = 4, "
           "@master_heartbeat_period = %lld, @slave_connect_state = '%s', @slave_gtid_strict_mode = 1, "
           "@slave_gtid_ignore_duplicates = 0",
           (long long)s->set.heartbeat_ms * 1000000LL, gtids);
  if ((rc = my_exec(&s->set, s->conn, sql, err))) return rc;
  if (!(s->rpl = mariadb_rpl_init(s->conn))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  /* With a GTID list the server finds the place itself (file "", position 4). */
  const char *dump_file = gtids[0] ? "" : file;
  unsigned long dump_pos = gtids[0] ? 4 : (unsigned long)offset;
  unsigned int flags = 0;
  mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FILENAME, dump_file, strlen(dump_file));
  mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_START, dump_pos);
  mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_SERVER_ID, s->set.server_id);
  mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FLAGS, flags);
  if (mariadb_rpl_open(s->rpl) != 0) {
    if (mysql_errno(s->conn) == 1236) return purged(s, mysql_error(s->conn), err);
    return my_fail(&s->set, s->conn, "starting the binlog dump", err);
  }
  bool crc = !strcmp(checksum, "CRC32");
  if (s->stream_ready) {
    rc = my_stream_reset(&s->stream, file, offset, gtids, crc, err);
  } else {
    my_stream_cb cb = {.ctx = s, .captured = cb_captured, .describe = cb_describe, .shape = cb_shape,
                       .schema_changed = cb_schema_changed, .relation = cb_relation, .begin = cb_begin,
                       .change = cb_change, .commit = cb_commit, .idle = cb_idle};
    rc = my_stream_init(&s->stream, &cb, file, offset, gtids, crc, err);
    s->stream_ready = rc == OD_OK;
  }
  if (rc) return rc;
  od_info("%s: reading the binlog from %s%s%s%s:%llu (server id %u)", s->set.where, gtids[0] ? "GTID " : "", gtids,
          gtids[0] ? " @ " : "", file, (unsigned long long)offset, s->set.server_id);
  return OD_OK;
}

static int my_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  my_source *s = (my_source *)base;
  if (!s->rpl) return OD_FAIL(err, OD_EINVAL, "%s: poll before start", s->set.where);
  s->outer = h;
  /* The server sends a heartbeat every heartbeat_ms when idle, so a fetch never blocks for long. */
  int64_t deadline = od_mono_us() + (int64_t)timeout_ms * 1000;
  for (int n = 0; n < MAX_EVENTS_PER_POLL; n++) {
    if (!(s->ev = mariadb_rpl_fetch(s->rpl, s->ev))) {
      unsigned e = mysql_errno(s->conn);
      if (e == 1236) return purged(s, mysql_error(s->conn), err);
      if (e == 0) return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: the server ended the binlog stream", s->set.where);
      return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: binlog stream: %s (error %u)", s->set.where, mysql_error(s->conn), e);
    }
    const uint8_t *buf = s->ev->raw_data;
    size_t len = s->ev->raw_data_size;
    if (len == (size_t)s->ev->event_length + 1) buf++, len--; /* the packet's OK byte */
    int rc = my_stream_event(&s->stream, buf, len, err);
    if (rc) return od_error_prefix(err, "%s: ", s->set.where), rc;
    if (od_mono_us() >= deadline) break;
  }
  return OD_OK;
}

static int my_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)force;
  (void)err;
  my_source *s = (my_source *)base;
  if (durable && !od_pos_is_none(durable)) s->durable = *durable; /* MariaDB keeps no replica position */
  return OD_OK;
}

const od_source_ops od_source_mysql = {
    .type = "mysql",
    .position = &od_pos_mysql,
    .open = my_open,
    .check = my_check,
    .start = my_start,
    .poll = my_poll,
    .ack = my_ack,
    .close = my_close_source,
    .snapshot = &my_snapshot_ops,
};
