/* pg_source.c — the PostgreSQL source: config, the replication stream (START_REPLICATION,
 * XLogData, keepalives, standby status) and the vtable. Decoding is pgoutput.c's; catalog work
 * is pg_catalog.c's; the initial snapshot's reading is pg_snapshot.c's. Owns its two connections and its decoder; borrows the config.
 *
 * Positions sent in standby status: write = highest WAL position received; flush = apply =
 * the position the pipeline said is durable in the sink (never more, never below the slot's
 * own confirmed position). The server keeps every transaction that commits after `flush`.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "common/pg_dsn.h"
#include "core/log.h"
#include "core/clock.h"
#include "sources/pg/pg_ident.h"
#include "sources/pg/pg_internal.h"
#include "sources/pg/pg_mesh.h"
#include "sources/pg/pg_plugin.h"
#include "sources/pg/pg_stream.h"
#include "common/seal.h"

#define PG_EPOCH_OFFSET_US 946684800000000LL /* 2000-01-01 - 1970-01-01 */
#define MAX_MESSAGES_PER_POLL 8192
/* After a catch-up, the stream reads for this many intervals of the distance's reads (30 s by
 * default) before the next read of how far behind it is. */
#define BURST_COOLDOWN_READS 60

static uint64_t get_be64(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | u[i];
  return v;
}

static void put_be64(char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (char)(v & 0xff);
    v >>= 8;
  }
}

static const char *const allowed_keys[] = {"dsn", "slot", "publication", "tables", "status_interval_ms", "receive_timeout_ms", "slot_warn_retained_bytes",
                                           "reconnect_max_ms", "snapshot", "snapshot_workers",
                                           "snapshot_chunk_rows", "incremental_chunk_rows", "partitions",
                                           "catchup_lag_bytes", "catchup_exit_bytes", "catchup_batch_changes", "catchup_prefetch_bytes", "catchup_decoding_mem_bytes",
                                           "catchup_move_restart",
                                           "catchup_move_restart_timeout_ms", "mesh_node", "mesh_output_plugin",
                                           "stream_in_progress", "stream_memory_bytes", NULL};

/* snapshot: initial|never (default initial), snapshot_workers 1..16 (2), snapshot_chunk_rows (100000). */
static int snapshot_config(pg_source *s, const od_config_section *cfg, od_error *err) {
  const char *mode;
  long workers, rows;
  int rc;
  if ((rc = od_config_string(cfg, "snapshot", "initial", &mode, err)) ||
      (rc = od_config_int(cfg, "snapshot_workers", 2, 1, 16, &workers, err)) ||
      (rc = od_config_int(cfg, "snapshot_chunk_rows", 100000, 100, 100000000, &rows, err)))
    return rc;
  if (strcmp(mode, "initial") != 0 && strcmp(mode, "never") != 0) {
    return od_config_fail_key(cfg, "snapshot", err, ".snapshot '%s' must be initial or never", mode);
  }
  s->snap_cfg = (od_snapshot_config){.mode = strcmp(mode, "initial") == 0 ? OD_SNAPSHOT_INITIAL : OD_SNAPSHOT_NEVER,
                                     .workers = (int)workers,
                                     .chunk_rows = (uint32_t)rows};
  return OD_OK;
}

/* partitions: root|leaves (default root): how a publication odsync creates publishes partitioned
 * tables (publish_via_partition_root). */
static int partitions_config(pg_source *s, const od_config_section *cfg, od_error *err) {
  const char *v;
  int rc = od_config_string(cfg, "partitions", "root", &v, err);
  if (rc) return rc;
  if (strcmp(v, "root") != 0 && strcmp(v, "leaves") != 0) {
    return od_config_fail_key(cfg, "partitions", err,
                              ".partitions '%s' must be root (a partitioned table reaches the sink as one table named "
                              "after it) or leaves (one table per partition)", v);
  }
  s->via_root = strcmp(v, "root") == 0;
  return OD_OK;
}

static int valid_name(const char *s) {
  if (!s || !*s || strlen(s) > 63) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
  return 1;
}

/* tables: each entry parsed as PostgreSQL parses [schema.]table (quoted parts keep their case;
 * unquoted ones fold to lower case); a bad one fails at its FILE:LINE:COL. */
static int tables_config(pg_source *s, const od_config_section *cfg, od_error *err) {
  if (!s->ntables) return OD_OK;
  if (!(s->qtables = calloc((size_t)s->ntables, sizeof *s->qtables))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  const od_config_entry *e = od_config_find(cfg, "tables");
  for (int i = 0; i < s->ntables; i++) {
    char why[300];
    size_t at = 0;
    if (od_pg_parse_qname(s->tables[i], &s->qtables[i], why, sizeof why, &at) == 0) continue;
    int line = e && e->list_line ? e->list_line[i] : e ? e->line : cfg->line;
    int col = e && e->list_col ? e->list_col[i] : e ? e->col : cfg->col;
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.tables[%d] '%s' is not a table name as PostgreSQL reads it: %s "
                   "(at character %zu)", cfg->file, line, col, cfg->path, i, s->tables[i], why, at + 1);
  }
  return OD_OK;
}

/* stream_in_progress: on|off (default on; mesh sources: off, and on is refused), stream_memory_bytes
 * (16 MiB): the streamed transactions' records kept in memory before spilling to stream_dir. */
static int stream_config(pg_source *s, const od_config_section *cfg, const char *pipeline, od_error *err) {
  int rc;
  s->stream_set = od_config_find(cfg, "stream_in_progress") != NULL;
  if ((rc = od_config_bool(cfg, "stream_in_progress", !s->mesh, &s->stream_in_progress, err)) ||
      (rc = od_config_int(cfg, "stream_memory_bytes", 16L << 20, 0, 1L << 40, &s->stream_memory_bytes, err)))
    return rc;
  if (s->mesh && s->stream_in_progress) {
    return od_config_fail_key(cfg, "stream_in_progress", err,
                              ".stream_in_progress applies to sources without mesh_node (a mesh source reads protocol "
                              "version 1, through odsync_pgoutput or pgoutput): remove it or set it to off");
  }
  snprintf(s->stream_dir, sizeof s->stream_dir, "%s/pg_stream/%s", cfg->state_dir ? cfg->state_dir : "./odsync-state",
           pipeline);
  return s->stream_in_progress ? od_keyring_from_keys(cfg->encryption, cfg->file, &s->stream_kr, err) : OD_OK;
}

static int pg_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  int rc = od_config_check_keys(cfg, allowed_keys, err);
  if (rc) return rc;
  pg_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  extern const od_source_ops od_source_postgres;
  s->base.ops = &od_source_postgres;
  s->cfg = cfg;
  s->pipeline = pipeline;
  const char *slot, *pub;
  char def[64];
  snprintf(def, sizeof def, "odsync_%s", pipeline);
  for (char *p = def; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  if ((rc = od_config_string(cfg, "dsn", NULL, &s->dsn, err)) ||
      (rc = od_config_string(cfg, "slot", def, &slot, err)) ||
      (rc = od_config_string(cfg, "publication", def, &pub, err)) ||
      (rc = od_config_list(cfg, "tables", &s->tables, &s->ntables, err)) ||
      (rc = od_config_int(cfg, "status_interval_ms", 10000, 100, 60000, &s->status_interval_ms, err)) ||
      (rc = od_config_int(cfg, "receive_timeout_ms", 60000, 0, 3600000, &s->receive_timeout_ms, err)) ||
      (rc = od_config_int(cfg, "catchup_lag_bytes", 64L << 20, 0, 1L << 50, &s->catchup_lag_bytes, err)) ||
      (rc = od_config_int(cfg, "catchup_exit_bytes", 16L << 20, 0, 1L << 50, &s->catchup_exit_bytes, err)) ||
      (rc = od_config_int(cfg, "catchup_batch_changes", 100000, 100, 10000000, &s->catchup_batch, err)) ||
      (rc = od_config_int(cfg, "catchup_prefetch_bytes", 64L << 20, 0, 1L << 40, &s->catchup_prefetch_bytes, err)) ||
      (rc = od_config_int(cfg, "catchup_decoding_mem_bytes", 256L << 20, 0, 1L << 40, &s->catchup_decoding_mem, err)) ||
      (rc = od_config_bool(cfg, "catchup_move_restart", true, &s->catchup_move_restart, err)) ||
      (rc = od_config_int(cfg, "catchup_move_restart_timeout_ms", 2000, 100, 600000,
                          &s->catchup_move_restart_timeout_ms, err)) ||
      (rc = od_config_int(cfg, "slot_warn_retained_bytes", 1073741824L, 0, 1L << 50, &s->slot_warn_bytes, err)) ||
      (rc = snapshot_config(s, cfg, err)) || (rc = partitions_config(s, cfg, err)) ||
      (rc = tables_config(s, cfg, err)))
    goto fail;
  if (!s->dsn) {
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.dsn is required (a libpq connection string, e.g. "
                 "\"host=127.0.0.1 dbname=shop user=odsync password=${env:PGPASSWORD}\")",
                 cfg->file, cfg->line, cfg->col, cfg->path);
    goto fail;
  }
  const char *names[2][2] = {{"slot", slot}, {"publication", pub}};
  for (int i = 0; i < 2; i++) {
    if (!valid_name(names[i][1])) {
      rc = od_config_fail_key(cfg, names[i][0], err, ".%s '%s' must be 1-63 characters of a-z, 0-9 and _",
                              names[i][0], names[i][1]);
      goto fail;
    }
  }
  const char *mesh_node = NULL;
  if ((rc = od_config_string(cfg, "mesh_node", NULL, &mesh_node, err))) goto fail;
  if (mesh_node && *mesh_node && !(s->mesh = od_pg_mesh_new(mesh_node))) {
    rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = od_pg_plugin_config(s, cfg, err)) || (rc = stream_config(s, cfg, pipeline, err))) goto fail;
  snprintf(s->slot, sizeof s->slot, "%s", slot);
  snprintf(s->publication, sizeof s->publication, "%s", pub);
  char server[200];
  if ((rc = od_pg_dsn_describe(cfg, s->dsn, server, sizeof server, err))) goto fail;
  snprintf(s->where, sizeof s->where, "postgres %s", server);
  *out = &s->base;
  return OD_OK;
fail:
  od_pg_mesh_free(s->mesh);
  od_keyring_free(s->stream_kr);
  free(s->qtables);
  free(s);
  return rc;
}

static void disconnect(pg_source *s) {
  od_pg_catchup_close(s);
  PQfinish(s->repl);
  PQfinish(s->meta);
  s->repl = s->meta = NULL;
}

static void pg_close(od_source *base) {
  pg_source *s = (pg_source *)base;
  if (!s) return;
  if (s->mesh && s->decoder) { /* it streamed */
    uint64_t rows, bytes;
    od_pg_mesh_echo(s->mesh, &rows, &bytes);
    od_info("%s: mesh echo: %" PRIu64 " transactions applied here by other nodes' pipelines were dropped; %" PRIu64
            " of their row changes (%" PRIu64 " value bytes) were received (slot plugin %s)", s->where,
            od_pg_mesh_dropped(s->mesh), rows, bytes, s->plugin);
  }
  disconnect(s);
  od_pg_snapshot_free(s);       /* the snapshot's relations too */
  od_pgoutput_free(s->decoder); /* relations die with it: the pipeline's session is over */
  od_pg_strings_free(s);        /* their missing_value texts too */
  od_pg_mesh_free(s->mesh);
  od_pg_stream_free(s->stream);
  od_keyring_free(s->stream_kr);
  free(s->qtables);
  free(s);
}

static int pg_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  pg_source *s = (pg_source *)base;
  int n = od_pg_check(s, problem, ctx, err);
  disconnect(s);
  return n;
}

/* ---- decoder callbacks: pass through, adding primary keys for REPLICA IDENTITY FULL ---- */

static int wrap_begin(void *ctx, const od_txn_info *t, od_error *err) {
  pg_source *s = ctx;
  if (s->mesh) od_pg_mesh_begin(s->mesh);
  return s->outer->begin(s->outer->ctx, t, err);
}
static int wrap_change(void *ctx, const od_txn_info *t, const od_change *c, od_error *err) {
  pg_source *s = ctx;
  if (s->mesh) return od_pg_mesh_change(s->mesh, t, c, s->outer, err); /* mesh: no echo, stamps */
  return s->outer->change(s->outer->ctx, t, c, err);
}
static int wrap_commit(void *ctx, const od_txn_info *t, od_error *err) {
  pg_source *s = ctx;
  s->catchup_last_end = od_pg_lsn(&t->end);
  s->commits_delivered++;
  if (s->mesh) {
    int rc = od_pg_mesh_commit(s->mesh, t, s->outer, err); /* a dropped transaction's vector update */
    if (rc) return rc;
    od_txn_info c = *t;
    c.commit_time = od_pg_mesh_commit_time(s->mesh, t);
    return s->outer->commit(s->outer->ctx, &c, err);
  }
  return s->outer->commit(s->outer->ctx, t, err);
}
static int wrap_relation(void *ctx, od_relation *rel, od_error *err) {
  pg_source *s = ctx;
  int rc = od_pg_fill_keys(s, rel, err);
  if (rc) return rc;
  od_debug("%s: relation %s.%s version %u (%u columns, replica identity %c)", s->where, rel->schema,
           rel->name, rel->version, rel->ncolumns, rel->replica_identity);
  return s->outer->relation ? s->outer->relation(s->outer->ctx, rel, err) : OD_OK;
}

static int start_streaming(pg_source *s, od_lsn start, od_error *err);
int od_pg_start_streaming(pg_source *s, od_lsn start, od_error *err) { return start_streaming(s, start, err); }

/* A mesh node's persisted clock (_odsync_hlc, written by the mesh sinks that apply into this node,
 * in the checkpoint table's schema, public): the hlc of every transaction the stream delivers from
 * its start on is computed from it and what the stream shows (pg_mesh.h). */
static int mesh_seed(pg_source *s, od_error *err) {
  PGresult *r = od_pg_query(s, s->meta, "SELECT to_regclass('public._odsync_hlc') IS NOT NULL", 0, NULL, err);
  if (!r) return err->code;
  bool exists = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  if (!exists) return od_pg_mesh_seed(s->mesh, NULL, NULL, 0, err);
  r = od_pg_query(s, s->meta, "SELECT (extract(epoch FROM c) * 1000000)::int8, h.hlc FROM public._odsync_hlc h "
                  "CROSS JOIN LATERAL pg_xact_commit_timestamp(h.xmin) c WHERE c IS NOT NULL", 0, NULL, err);
  if (!r) return err->code;
  size_t n = (size_t)PQntuples(r);
  int64_t *at = n ? malloc(n * sizeof *at) : NULL, *hlc = n ? malloc(n * sizeof *hlc) : NULL;
  int rc = OD_OK;
  if (n && (!at || !hlc)) {
    rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  } else {
    for (size_t i = 0; i < n; i++) {
      at[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
      hlc[i] = strtoll(PQgetvalue(r, (int)i, 1), NULL, 10);
    }
    rc = od_pg_mesh_seed(s->mesh, at, hlc, n, err);
  }
  PQclear(r);
  free(at);
  free(hlc);
  return rc;
}

static int pg_start(od_source *base, const od_pos *from_pos, od_error *err) {
  pg_source *s = (pg_source *)base;
  od_lsn from = od_pg_lsn(from_pos);
  disconnect(s);
  s->received = s->durable = s->sent_flush = 0;
  s->burst_pending = false;
  s->burst.reads = 0;
  s->last_status_at = 0;
  s->last_watch_at = od_mono_us();
  int rc = od_pg_prepare_stream(s, from, err);
  if (rc) return rc;
  if (s->mesh && (rc = mesh_seed(s, err))) return rc;
  /* An invalidated slot is named as such before START_REPLICATION fails on it. */
  if ((rc = od_pg_slot_health_check(s, err))) return rc;
  s->last_health_at = od_mono_us();
  /* Keep the decoder (and the relation versions queued changes point to); forget any
   * transaction the previous connection left open. */
  if (s->decoder)
    od_pgoutput_reset(s->decoder);
  else if (!(s->decoder = od_pgoutput_new()))
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  /* The server streams every transaction in progress again from the slot's restart_lsn: what the
   * previous connection (or run: spill files are removed when the store opens) kept is dropped. */
  if (s->stream) od_pg_stream_reset(s->stream);
  od_lsn start = from > s->floor ? from : s->floor;
  s->received = start;
  s->durable = from;
  s->wrap = (od_change_handler){.ctx = s, .begin = wrap_begin, .change = wrap_change,
                                .commit = wrap_commit, .relation = wrap_relation};
  if ((rc = od_pg_catchup_enter(s, start, err))) return rc;
  return s->catchup ? OD_OK : start_streaming(s, start, err);
}

/* START_REPLICATION from `start`: the stream delivers every transaction that commits after it. */
static int stream_prepare(pg_source *s, od_error *err) {
  s->stream_v2 = false;
  if (!s->stream_in_progress) return OD_OK;
  if (PQserverVersion(s->repl) < 140000) {
    if (!s->stream_fallback_logged)
      od_info("%s: stream_in_progress%s: the server is PostgreSQL %d.%d, which streams transactions in progress from "
              "version 14 on; large transactions are decoded whole by the server before they are sent (protocol "
              "version 1)", s->where, s->stream_set ? " on" : " (default on)", PQserverVersion(s->repl) / 10000,
              PQserverVersion(s->repl) % 10000 / 100);
    s->stream_fallback_logged = true;
    return OD_OK;
  }
  int rc = od_pg_stream_ensure(s, err);
  if (rc) return rc;
  s->stream_v2 = true;
  return OD_OK;
}

int od_pg_stream_ensure(pg_source *s, od_error *err) {
  if (!s->stream) {
    od_pg_xact_store_opts o = {.dir = s->stream_dir, .mem_budget = (size_t)s->stream_memory_bytes, .kr = s->stream_kr};
    int rc = od_pg_stream_open(&o, &s->stream, err);
    if (rc) return od_error_prefix(err, "%s: stream_in_progress: ", s->where);
  }
  od_pg_stream_reset(s->stream);
  return OD_OK;
}

static int start_streaming(pg_source *s, od_lsn start, od_error *err) {
  char *slot = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
  char sql[512];
  int rc = stream_prepare(s, err);
  if (rc) {
    PQfreemem(slot);
    return rc;
  }
  snprintf(sql, sizeof sql,
           "START_REPLICATION SLOT %s LOGICAL %X/%X (proto_version '%s', publication_names '\"%s\"'%s%s%s)",
           slot ? slot : "", OD_LSN_ARGS(start), s->stream_v2 ? "2" : "1", s->publication,
           PQserverVersion(s->repl) >= 140000 ? ", messages 'true'" : "", s->stream_v2 ? ", streaming 'on'" : "",
           od_pg_plugin_options(s, false));
  PQfreemem(slot);
  PGresult *r = PQexec(s->repl, sql);
  if (PQresultStatus(r) != PGRES_COPY_BOTH) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->repl));
    msg[strcspn(msg, "\n")] = '\0';
    PQclear(r);
    if (od_pg_slot_lost_message(msg)) return od_pg_slot_lost(s, msg, err);
    if (strstr(msg, OD_PG_PLUGIN_ODSYNC))
      return OD_FAIL_RETRY(err, OD_ESOURCE, "%s: START_REPLICATION failed: %s: slot %s was created with the output "
                           "plugin odsync_pgoutput, which this server cannot load now: put odsync_pgoutput.so back "
                           "into pg_config --pkglibdir (or dynamic_library_path), and into output_plugin_libraries "
                           "where the server has that setting (docs/MULTI_MASTER.md \"The echo\")",
                           s->where, msg, s->slot);
    if (strstr(msg, "is active for PID"))
      return OD_FAIL_RETRY(err, OD_EBUSY, "%s: replication slot %s is in use by another process (%s): is another "
                           "odsync running pipeline %s?", s->where, s->slot, msg, s->pipeline);
    return OD_FAIL_RETRY(err, OD_ESOURCE, "%s: START_REPLICATION failed: %s", s->where, msg);
  }
  PQclear(r);
  s->last_status_at = 0;
  s->last_recv_at = od_mono_us();
  s->ping_sent = false;
  od_pg_spill_phase(s);
  return OD_OK;
}

static int send_status_reply(pg_source *s, bool want_reply, od_error *err) {
  od_lsn flush = s->durable > s->floor ? s->durable : s->floor;
  od_lsn write = s->received > flush ? s->received : flush;
  char msg[34];
  msg[0] = 'r';
  put_be64(msg + 1, write);
  put_be64(msg + 9, flush);
  put_be64(msg + 17, flush);
  put_be64(msg + 25, (uint64_t)(od_now_us() - PG_EPOCH_OFFSET_US));
  msg[33] = want_reply ? 1 : 0; /* 1: the server answers at once with a keepalive */
  if (PQputCopyData(s->repl, msg, sizeof msg) <= 0 || PQflush(s->repl) < 0) {
    char m[400];
    snprintf(m, sizeof m, "%s", PQerrorMessage(s->repl));
    m[strcspn(m, "\n")] = '\0';
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: cannot send standby status: %s", s->where, m);
  }
  s->sent_flush = flush;
  s->last_status_at = od_mono_us();
  return OD_OK;
}

static int send_status(pg_source *s, od_error *err) { return send_status_reply(s, false, err); }
int od_pg_send_status(pg_source *s, od_error *err) { return send_status(s, err); }

static int pg_ack(od_source *base, const od_pos *durable_pos, bool force, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (!s->repl) return OD_OK;
  if (s->catchup) return od_pg_catchup_ack(s, od_pg_lsn(durable_pos), force, err);
  od_lsn durable = od_pg_lsn(durable_pos);
  if (durable > s->durable) s->durable = durable;
  od_lsn flush = s->durable > s->floor ? s->durable : s->floor;
  if (force || flush != s->sent_flush || od_mono_us() - s->last_status_at >= s->status_interval_ms * 1000)
    return send_status(s, err);
  return OD_OK;
}

static int handle_message(pg_source *s, char *buf, int len, od_error *err) {
  if (buf[0] == 'w') {
    if (len < 25) return OD_FAIL(err, OD_EPROTOCOL, "%s: XLogData message of %d bytes is too short", s->where, len);
    od_lsn start = get_be64(buf + 1);
    if (start > s->received) s->received = start;
    if (s->stream_v2) {
      bool handled = false;
      int rc = od_pg_stream_route(s->stream, s->decoder, buf + 25, (size_t)len - 25, &s->wrap, &handled, err);
      if (rc || handled) return rc ? od_error_prefix(err, "%s: ", s->where) : OD_OK;
    }
    /* libpq's copy is ours and freed after this: text values are terminated in place in it. */
    return od_pgoutput_decode_inplace(s->decoder, buf + 25, (size_t)len - 25, &s->wrap, err);
  }
  if (buf[0] == 'k') {
    if (len < 18) return OD_FAIL(err, OD_EPROTOCOL, "%s: keepalive of %d bytes is too short", s->where, len);
    od_lsn end = get_be64(buf + 1);
    bool reply = buf[17] != 0;
    if (end > s->received) s->received = end;
    if (!od_pgoutput_in_transaction(s->decoder) && !(s->stream_v2 && od_pg_stream_busy(s->stream)) &&
        s->outer->idle) {
      od_pos idle = od_pg_pos(end);
      int rc = s->outer->idle(s->outer->ctx, &idle, err);
      if (rc) return rc;
    }
    return reply ? send_status(s, err) : OD_OK;
  }
  return OD_FAIL(err, OD_EPROTOCOL, "%s: unexpected replication message type '%c'", s->where, buf[0]);
}

static int connection_lost(pg_source *s, od_error *err) {
  PGresult *r;
  char msg[400];
  snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->repl));
  while ((r = PQgetResult(s->repl))) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR) snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
    PQclear(r);
  }
  msg[strcspn(msg, "\n")] = '\0';
  /* pgoutput looks the publication up as of each change it decodes: once it was dropped (even if
   * created again since), every change written before that fails the same way on every retry. */
  if (strstr(msg, "publication") && strstr(msg, "does not exist"))
    return OD_FAIL(err, OD_ESOURCE,
                   "%s: replication stream ended: %s. Publication %s was dropped while slot %s still has changes "
                   "to decode through it; PostgreSQL looks a publication up as of each change, so re-creating it "
                   "does not help for changes written before (every retry would fail the same way). To start over: "
                   "SELECT pg_drop_replication_slot('%s'); empty the sink (its tables and its _odsync_checkpoint "
                   "row for pipeline %s), then run again (odsync creates the publication and the slot and copies "
                   "a new initial snapshot)",
                   s->where, msg, s->publication, s->slot, s->slot, s->pipeline);
  if (od_pg_slot_lost_message(msg)) return od_pg_slot_lost(s, msg, err);
  return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: replication stream ended: %s", s->where,
                       msg[0] ? msg : "the server closed the connection");
}

static int pg_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (!s->repl) return OD_FAIL(err, OD_EINVAL, "%s: poll before start", s->where);
  s->outer = h;
  /* A configured table dropped and re-created falls out of the publication: put it back. */
  if (s->ntables && od_mono_us() - s->last_watch_at >= s->status_interval_ms * 1000) {
    s->last_watch_at = od_mono_us();
    int rc = od_pg_watch_publication(s, err);
    if (rc) return rc;
  }
  /* Slot safety: retained WAL, wal_status, safe_wal_size (a failed read is retried next time). */
  if (od_mono_us() - s->last_health_at >= s->status_interval_ms * 1000) {
    s->last_health_at = od_mono_us();
    int rc = od_pg_slot_health_check(s, err);
    if (rc) return rc; /* an invalidated slot (fatal) or a lost connection (retriable) */
  }
  /* How far the stream is behind: every half second (or status interval, if shorter). */
  int64_t burst_every = s->status_interval_ms < 500 ? s->status_interval_ms * 1000 : 500000;
  if (!s->catchup && od_mono_us() - s->burst_checked_at >= burst_every) {
    s->burst_checked_at = od_mono_us();
    int rc = od_pg_burst_check(s, err);
    if (rc) return rc;
  }
  /* Fallen far behind while streaming: stop reading at a transaction boundary, then switch. */
  if (!s->catchup && od_pg_burst_ready(s)) return od_pg_burst_step(s, timeout_ms, err);
  if (s->catchup) {
    int rc = od_pg_catchup_poll(s, timeout_ms, err);
    if (rc || s->catchup) return rc;
    if ((rc = start_streaming(s, s->durable > s->floor ? s->durable : s->floor, err))) return rc;
    /* The stream reads a while before another switch (a transaction still open at the head is sent
     * by the stream; switching back at once would have the calls send it again). */
    s->burst_checked_at = od_mono_us() + BURST_COOLDOWN_READS * (s->status_interval_ms < 500 ? s->status_interval_ms : 500) * 1000LL;
    s->burst.reads = 0;
  }
  /* A committed streamed transaction is replayed before anything more is read, a bounded part per
   * poll, with standby status sent as due (the walsender's wal_sender_timeout counts our replies). */
  if (s->stream_v2 && od_pg_stream_replaying(s->stream)) {
    int rc = od_pg_stream_pump(s->stream, s->decoder, &s->wrap, MAX_MESSAGES_PER_POLL, err);
    if (rc) return od_error_prefix(err, "%s: ", s->where);
    s->last_recv_at = od_mono_us(); /* busy, not silent: what the server sent waits in the socket */
    if (od_mono_us() - s->last_status_at >= s->status_interval_ms * 1000) return send_status(s, err);
    return OD_OK;
  }
  int64_t deadline = od_mono_us() + (int64_t)timeout_ms * 1000;
  int handled = 0;
  for (;;) {
    char *buf = NULL;
    int n = PQgetCopyData(s->repl, &buf, 1);
    if (n > 0) {
      s->last_recv_at = od_mono_us();
      s->ping_sent = false;
      int rc = handle_message(s, buf, n, err);
      PQfreemem(buf);
      if (rc) return rc;
      if (++handled >= MAX_MESSAGES_PER_POLL || od_pg_burst_ready(s)) return OD_OK;
      if (s->stream_v2 && od_pg_stream_replaying(s->stream)) return OD_OK; /* the next poll replays it */
      continue;
    }
    if (n == -1 || n == -2) return connection_lost(s, err);
    if (handled) return OD_OK;
    /* Nothing buffered: wait for the socket, but not past the next status we owe the server. */
    int64_t now = od_mono_us();
    int64_t status_due = s->last_status_at + s->status_interval_ms * 1000;
    if (now >= status_due) {
      int rc = send_status(s, err);
      if (rc) return rc;
      continue;
    }
    /* A silent stream: half-way through receive_timeout_ms ask the server for a keepalive (it
     * answers at once, also when its wal_sender_timeout is 0); at the end, give the connection up
     * (a cut link or a vanished host would otherwise leave a reading socket waiting for ever). */
    if (s->receive_timeout_ms > 0) {
      int64_t silent = now - s->last_recv_at, limit = s->receive_timeout_ms * 1000;
      if (silent >= limit)
        return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: no message from the server for %.1f s (source.receive_timeout_ms "
                             "= %ld): the connection is presumed dead; reconnecting", s->where, (double)silent / 1e6,
                             s->receive_timeout_ms);
      if (!s->ping_sent && silent >= limit / 2) {
        int rc = send_status_reply(s, true, err);
        if (rc) return rc;
        s->ping_sent = true;
        continue;
      }
      int64_t next = s->last_recv_at + (s->ping_sent ? limit : limit / 2);
      if (next < status_due) status_due = next;
    }
    if (now >= deadline) return OD_OK;
    int64_t wait = (deadline < status_due ? deadline : status_due) - now;
    int fd = PQsocket(s->repl);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    struct timeval tv = {.tv_sec = wait / 1000000, .tv_usec = wait % 1000000};
    int sel = select(fd + 1, &rd, NULL, NULL, &tv);
    if (sel < 0 && errno != EINTR)
      return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: waiting for the replication socket: %s", s->where, strerror(errno));
    if (sel > 0 && !PQconsumeInput(s->repl)) return connection_lost(s, err);
  }
}

const od_source_ops od_source_postgres = {
    .type = "postgres",
    .position = &od_pg_position,
    .open = pg_open,
    .check = pg_check,
    .tables = od_pg_tables,
    .start = pg_start,
    .poll = pg_poll,
    .ack = pg_ack,
    .close = pg_close,
    .snapshot = &od_pg_snapshot_ops,
    .health = od_pg_health,
};
