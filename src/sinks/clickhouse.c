/* sinks/clickhouse.c — the ClickHouse sink (type "clickhouse"), over ClickHouse's HTTP interface.
 *
 * Owns: the HTTP client (clickhouse_http.c), the open batch (rows buffered per table until
 * commit, then one INSERT per table), the table `_odsync_checkpoint` in the sink database (the
 * pipeline's checkpoint row and its snapshot marks, ReplacingMergeTree by a write counter), and the
 * row versions (ch_row_version).
 *
 * ClickHouse cannot commit data and a checkpoint atomically, so this sink follows the
 * idempotent-replay contract: commit() inserts the batch's rows first and the checkpoint after
 * them; a crash between the two replays the batch from the previous checkpoint, and the replayed
 * rows carry the same versions as the first attempt, so ReplacingMergeTree(version) collapses them
 * (`SELECT ... FINAL`, or the view `<table>_current`, shows each key once).
 *
 * Never touches: the source, acknowledgements, retries (errors say whether they are retriable),
 * process exit. Change memory is borrowed for the length of apply(); relations for the sink's life.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "sinks/clickhouse_internal.h"

extern const od_sink_ops od_sink_clickhouse;
/* The same sink without OD_SINK_BULK_LOAD (bulk_load: false): snapshot chunks go through apply(). */
static const od_sink_ops ch_ops_no_bulk;

/* Row versions: ReplacingMergeTree keeps, per key, the row with the highest version. A row's
 * version is the 64-bit version of its transaction's start position (od_pos_kind.version; the
 * PostgreSQL LSN of the commit record), 0 for rows of the initial snapshot (older than every
 * streamed change). Transactions never share a start, and a later one starts later; inside one
 * transaction only its last change of a key is kept (clickhouse_table.c supersedes the earlier
 * rows of the batch), so no two stored rows of a key share a version. A replay delivers the same
 * changes with the same positions, so its rows carry the same versions and collapse with the
 * first delivery's. */
int ch_row_version(ch_sink *s, const od_change *c, uint64_t *out, od_error *err) {
  if (!c->txn_start || od_pos_is_none(c->txn_start)) {
    *out = 0;
    return OD_OK;
  }
  if (!c->txn_start->kind->version)
    return OD_FAIL(err, OD_EUNSUPPORTED, "clickhouse sink %s: positions of kind %s have no version number, which "
                   "ClickHouse's ReplacingMergeTree needs to order the rows of a key", s->http.name,
                   c->txn_start->kind->name);
  *out = c->txn_start->kind->version(c->txn_start);
  return OD_OK;
}

void ch_ident(od_sqlbuf *b, const char *name) {
  od_sqlbuf_add(b, "`");
  for (const char *p = name; *p; p++) {
    if (*p == '`' || *p == '\\') od_sqlbuf_add(b, "\\");
    od_sqlbuf_addn(b, p, 1);
  }
  od_sqlbuf_add(b, "`");
}

void ch_literal(od_sqlbuf *b, const char *p, size_t n) {
  od_sqlbuf_add(b, "'");
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\'' || p[i] == '\\') od_sqlbuf_add(b, "\\");
    od_sqlbuf_addn(b, p + i, 1);
  }
  od_sqlbuf_add(b, "'");
}

int ch_exec(ch_sink *s, const char *stmt, const char *table, const char *what, od_error *err) {
  char w[512];
  if (table)
    snprintf(w, sizeof w, "table %s: %s", table, what);
  else
    snprintf(w, sizeof w, "%s", what);
  return ch_http_exec(&s->http, stmt, NULL, 0, w, err);
}

/* ---- open / close -------------------------------------------------------------------------- */

static void ch_close(od_sink *base) {
  ch_sink *s = (ch_sink *)base;
  if (!s) return;
  if (s->http.requests)
    od_debug("clickhouse sink %s: %llu requests, %llu inserts, %llu rows, %llu bytes sent (%llu before compression)",
             s->http.name ? s->http.name : "", s->http.requests, (unsigned long long)s->inserts,
             (unsigned long long)s->rows_sent, s->http.bytes_sent, s->http.bytes_raw);
  ch_rels_free(s);
  ch_keyless_seqs_free(s);
  for (size_t i = 0; i < s->nmarks; i++) {
    free(s->marks[i].key);
    free(s->marks[i].text);
  }
  free(s->marks);
  ch_http_close(&s->http);
  od_sqlbuf_free(&s->sql);
  od_sqlbuf_free(&s->body);
  free(s->name);
  free(s->database);
  free(s->view_suffix);
  free(s->qckpt);
  free(s);
}

static int ch_open(const od_config_section *cfg, const char *name, od_sink **out, od_error *err) {
  static const char *const keys[] = {"url", "database", "user", "password", "compression", "timeout_ms",
                                     "view_suffix", "tls_verify", "buffer_mib", "ca_file", "bulk_load", NULL};
  const char *url, *database, *user, *password, *compression, *suffix, *ca_file;
  long timeout_ms, buffer_mib;
  bool tls_verify, bulk_load;
  int rc = od_config_check_keys(cfg, keys, err);
  if (!rc) rc = od_config_string(cfg, "url", "http://127.0.0.1:8123", &url, err);
  if (!rc) rc = od_config_string(cfg, "database", "default", &database, err);
  if (!rc) rc = od_config_string(cfg, "user", "default", &user, err);
  if (!rc) rc = od_config_string(cfg, "password", NULL, &password, err);
  if (!rc) rc = od_config_string(cfg, "compression", "none", &compression, err);
  if (!rc) rc = od_config_int(cfg, "timeout_ms", 300000, 1000, 86400000, &timeout_ms, err);
  if (!rc) rc = od_config_string(cfg, "view_suffix", "_current", &suffix, err);
  if (!rc) rc = od_config_bool(cfg, "tls_verify", true, &tls_verify, err);
  if (!rc) rc = od_config_int(cfg, "buffer_mib", 64, 1, 65536, &buffer_mib, err);
  if (!rc) rc = od_config_string(cfg, "ca_file", NULL, &ca_file, err);
  if (!rc) rc = od_config_bool(cfg, "bulk_load", true, &bulk_load, err);
  if (rc) return rc;
  if (strcmp(compression, "none") != 0 && strcmp(compression, "gzip") != 0) {
    const od_config_entry *e = od_config_find(cfg, "compression");
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.compression: expected none or gzip", cfg->file, e->line, e->col,
                   cfg->path);
  }
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
    const od_config_entry *e = od_config_find(cfg, "url");
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.url: expected http://HOST:PORT or https://HOST:PORT "
                   "(ClickHouse's HTTP interface, default port 8123)", cfg->file, e->line, e->col, cfg->path);
  }
  if (!*database || !*suffix) {
    const char *k = !*database ? "database" : "view_suffix";
    return od_config_fail_key(cfg, k, err, ".%s: must not be empty", k);
  }
  ch_sink *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
  s->base.ops = bulk_load ? &od_sink_clickhouse : &ch_ops_no_bulk;
  s->name = strdup(name ? name : "");
  s->database = strdup(database);
  s->view_suffix = strdup(suffix);
  s->buffer_bytes = (size_t)buffer_mib << 20;
  od_sqlbuf_reset(&s->sql);
  ch_ident(&s->sql, database);
  od_sqlbuf_add(&s->sql, ".`_odsync_checkpoint`");
  s->qckpt = s->sql.oom ? NULL : strdup(s->sql.p);
  if (!s->name || !s->database || !s->view_suffix || !s->qckpt) {
    ch_close(&s->base);
    return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
  }
  ch_http_options ho = {.url = url, .user = user, .password = password, .database = "default",
                        .gzip = !strcmp(compression, "gzip"), .timeout_ms = timeout_ms, .tls_verify = tls_verify,
                        .ca_file = ca_file};
  if ((rc = ch_http_open(&s->http, &ho, err))) {
    ch_close(&s->base);
    return rc;
  }
  /* The client names the server with the sink's database, though statements run in "default"
   * until the database exists. */
  free(s->http.name);
  {
    const char *hp = strstr(url, "://") + 3;
    size_t hl = strcspn(hp, "/?");
    char name[300];
    snprintf(name, sizeof name, "%.*s/%s", (int)(hl > 200 ? 200 : hl), hp, database);
    s->http.name = strdup(name);
  }
  if (!s->http.name) {
    ch_close(&s->base);
    return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
  }
  if ((rc = ch_exec(s, "SELECT version()", NULL, "connecting", err))) goto fail;
  if (sscanf(s->http.resp.p ? s->http.resp.p : "", "%d.%d", &s->server_major, &s->server_minor) != 2)
    s->server_major = s->server_minor = 0;
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_add(&s->sql, "CREATE DATABASE IF NOT EXISTS ");
  ch_ident(&s->sql, database);
  if ((rc = ch_exec(s, s->sql.p, NULL, "creating the database", err))) goto fail;
  free(s->http.database);
  if (!(s->http.database = strdup(database))) {
    rc = OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
    goto fail;
  }
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_addf(&s->sql,
                 "CREATE TABLE IF NOT EXISTS %s (key String, position UInt64, text Nullable(String), "
                 "written UInt64, updated_at DateTime DEFAULT now()) "
                 "ENGINE = ReplacingMergeTree(written) ORDER BY key",
                 s->qckpt);
  if ((rc = ch_exec(s, s->sql.p, "_odsync_checkpoint", "creating the checkpoint table", err))) goto fail;
  *out = &s->base;
  return OD_OK;
fail:
  ch_close(&s->base);
  return rc;
}

/* ---- the checkpoint table ------------------------------------------------------------------ */

/* A row of _odsync_checkpoint: the checkpoint (text = the position's text form, position = its
 * version number, for people) or a mark (position = an integer mark, or text = a text mark). */
typedef struct ck_row {
  bool found;
  uint64_t position;
  bool has_text;
  char *text; /* malloc'd when has_text */
} ck_row;

static int ck_read(ch_sink *s, const char *key, ck_row *out, od_error *err) {
  memset(out, 0, sizeof *out);
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_addf(&s->sql, "SELECT position, text FROM %s FINAL WHERE key = ", s->qckpt);
  ch_literal(&s->sql, key, strlen(key));
  od_sqlbuf_add(&s->sql, " FORMAT TabSeparated");
  if (s->sql.oom) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
  int rc = ch_exec(s, s->sql.p, "_odsync_checkpoint", "reading the checkpoint", err);
  if (rc) return rc;
  char *line = s->http.resp.p;
  if (!line || !*line) return OD_OK;
  char *t1 = strchr(line, '\t');
  if (!t1)
    return OD_FAIL(err, OD_EPROTOCOL, "clickhouse sink %s: table _odsync_checkpoint: unexpected answer for key %s",
                   s->http.name, key);
  char *nl = strchr(t1 + 1, '\n');
  if (nl) *nl = '\0';
  out->found = true;
  out->position = strtoull(line, NULL, 10);
  size_t tl = strlen(t1 + 1);
  if (!(tl == 2 && t1[1] == '\\' && t1[2] == 'N')) {
    out->has_text = true;
    tl = ch_tsv_unescape(t1 + 1, tl);
    out->text = malloc(tl + 1);
    if (!out->text) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
    memcpy(out->text, t1 + 1, tl);
    out->text[tl] = '\0';
  }
  return OD_OK;
}

/* A strictly increasing version for rows of _odsync_checkpoint (wall clock in ns, never repeated). */
static uint64_t next_written(ch_sink *s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  s->last_written = now > s->last_written ? now : s->last_written + 1;
  return s->last_written;
}

static void ck_add_row(ch_sink *s, const char *key, uint64_t position, const char *text) {
  od_sqlbuf *b = &s->body;
  ch_tsv_escape(b, key, strlen(key));
  od_sqlbuf_addf(b, "\t%llu\t", (unsigned long long)position);
  if (text)
    ch_tsv_escape(b, text, strlen(text));
  else
    od_sqlbuf_add(b, "\\N");
  od_sqlbuf_addf(b, "\t%llu\n", (unsigned long long)next_written(s));
}

/* Marks of the batch and, when pos is given, the checkpoint: one INSERT, after the batch's rows. */
static int ck_write(ch_sink *s, const od_pos *pos, od_error *err) {
  od_sqlbuf_reset(&s->body);
  for (size_t i = 0; i < s->nmarks; i++) ck_add_row(s, s->marks[i].key, s->marks[i].value, s->marks[i].text);
  if (pos) {
    char text[OD_POS_TEXT_MAX];
    od_pos_to_text(pos, text, sizeof text);
    ck_add_row(s, s->name, pos->kind && pos->kind->version ? pos->kind->version(pos) : 0, text);
  }
  if (!s->body.len) return OD_OK;
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_addf(&s->sql, "INSERT INTO %s (key, position, text, written) FORMAT TabSeparated", s->qckpt);
  if (s->sql.oom || s->body.oom) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
  return ch_http_exec(&s->http, s->sql.p, s->body.p, s->body.len, "table _odsync_checkpoint: writing the checkpoint",
                      err);
}

static void marks_clear(ch_sink *s) {
  for (size_t i = 0; i < s->nmarks; i++) {
    free(s->marks[i].key);
    free(s->marks[i].text);
  }
  s->nmarks = 0;
}

/* ---- the vtable ---------------------------------------------------------------------------- */

static int ch_read_position(od_sink *base, od_pos *out, od_error *err) {
  ch_sink *s = (ch_sink *)base;
  ck_row r;
  int rc = ck_read(s, s->name, &r, err);
  if (rc) return rc;
  *out = od_pos_none();
  if (r.found && r.has_text) rc = od_pos_from_text(r.text, out, err);
  if (rc) od_error_prefix(err, "clickhouse sink %s: table _odsync_checkpoint, key %s: ", s->http.name, s->name);
  free(r.text);
  return rc;
}

static int ch_begin(od_sink *base, od_error *err) {
  ch_sink *s = (ch_sink *)base;
  if (s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: begin inside an open batch", s->http.name);
  s->in_txn = true;
  s->txn_seq++;
  return OD_OK;
}

/* Bytes the open batch holds in memory (encoded values, cells, rows). */
size_t ch_batch_bytes(const ch_sink *s) {
  size_t n = 0;
  for (const ch_rel *r = s->all; r; r = r->next)
    n += r->data.len + r->bulk.len + r->nrows * (sizeof(ch_row) + r->ncol * sizeof(ch_cell));
  return n;
}

int ch_flush_all(ch_sink *s, od_error *err) {
  for (ch_rel *r = s->all; r; r = r->next) {
    int rc = ch_rel_flush(s, r, err);
    if (rc) return rc;
  }
  return OD_OK;
}

static int ch_apply(od_sink *base, const od_change *changes, size_t n, od_error *err) {
  ch_sink *s = (ch_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: apply outside a batch", s->http.name);
  for (size_t i = 0; i < n; i++) {
    const od_change *c = &changes[i];
    if (c->op == OD_OP_MESSAGE || !c->rel) continue;
    ch_rel *r;
    int rc = ch_rel_get(s, c->rel, &r, err);
    if (!rc) rc = c->op == OD_OP_TRUNCATE ? ch_rel_truncate(s, r, err) : ch_rel_change(s, r, c, err);
    if (rc) return rc;
  }
  /* A source transaction larger than memory should hold (it streams through many chunks into one
   * open sink transaction): insert what is buffered now. Safe under the replay contract: the
   * checkpoint still comes after the last row, and replayed rows collapse (same versions; a later
   * row of the same key and transaction, with an equal version, is inserted later and wins). */
  size_t held = ch_batch_bytes(s);
  if (held >= s->buffer_bytes) {
    od_debug("clickhouse sink %s: the open batch holds %zu MiB: inserting it before its commit", s->http.name,
             held >> 20);
    return ch_flush_all(s, err);
  }
  return OD_OK;
}

static int commit_with(ch_sink *s, const od_pos *pos, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: commit without begin", s->http.name);
  int rc = OD_OK;
  /* Oldest relation versions first: rows of a table's older shape go in before its newer one. */
  size_t n = 0, k = 0;
  for (ch_rel *r = s->all; r; r = r->next) n++;
  ch_rel **order = malloc((n ? n : 1) * sizeof *order);
  if (!order) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: out of memory", s->http.name);
  for (ch_rel *r = s->all; r; r = r->next)
    if (r->nrows || r->bulk_rows) order[k++] = r;
  while (k > 0 && !rc) rc = ch_rel_flush(s, order[--k], err);
  free(order);
  if (rc) return rc;
  /* The checkpoint goes in after every row of the batch: replaying from the previous one is
   * harmless (same versions). */
  if ((rc = ck_write(s, pos, err))) return rc;
  ch_keyless_seqs_commit(s);
  marks_clear(s);
  s->in_txn = false;
  return OD_OK;
}

static int ch_commit(od_sink *base, const od_pos *pos, od_error *err) { return commit_with((ch_sink *)base, pos, err); }
static int ch_commit_data(od_sink *base, od_error *err) { return commit_with((ch_sink *)base, NULL, err); }

static void ch_rollback(od_sink *base) {
  ch_sink *s = (ch_sink *)base;
  for (ch_rel *r = s->all; r; r = r->next) ch_rel_clear(r);
  ch_keyless_seqs_rollback(s);
  marks_clear(s);
  s->in_txn = false;
}

static int add_mark(ch_sink *s, const char *key, uint64_t value, const char *text, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: set_mark outside a batch", s->http.name);
  if (s->nmarks == s->marks_cap) {
    size_t cap = s->marks_cap ? s->marks_cap * 2 : 8;
    ch_mark *m = realloc(s->marks, cap * sizeof *m);
    if (!m) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
    s->marks = m;
    s->marks_cap = cap;
  }
  ch_mark *m = &s->marks[s->nmarks];
  m->key = strdup(key);
  m->text = text ? strdup(text) : NULL;
  m->value = value;
  if (!m->key || (text && !m->text)) {
    free(m->key);
    free(m->text);
    return OD_FAIL(err, OD_ENOMEM, "clickhouse sink: out of memory");
  }
  s->nmarks++;
  return OD_OK;
}

static int ch_set_mark(od_sink *base, const char *key, uint64_t value, od_error *err) {
  return add_mark((ch_sink *)base, key, value, NULL, err);
}

static int ch_get_mark(od_sink *base, const char *key, uint64_t *out, od_error *err) {
  ck_row r;
  int rc = ck_read((ch_sink *)base, key, &r, err);
  if (rc) return rc;
  *out = r.found && !r.has_text ? r.position : 0;
  free(r.text);
  return OD_OK;
}

static int ch_set_text_mark(od_sink *base, const char *key, const char *text, od_error *err) {
  return add_mark((ch_sink *)base, key, 0, text, err);
}

static int ch_get_text_mark(od_sink *base, const char *key, char **out, od_error *err) {
  ck_row r;
  int rc = ck_read((ch_sink *)base, key, &r, err);
  if (rc) return rc;
  *out = r.found && r.has_text ? r.text : NULL;
  if (!*out) free(r.text);
  return OD_OK;
}

#define CH_OPS_SLOTS                                                                                   \
  .type = "clickhouse", .max_writers = 1, .open = ch_open, .read_position = ch_read_position, .begin = ch_begin, \
  .apply = ch_apply, .commit = ch_commit, .commit_data = ch_commit_data, .rollback = ch_rollback,              \
  .close = ch_close, .set_mark = ch_set_mark, .get_mark = ch_get_mark, .set_text_mark = ch_set_text_mark,      \
  .get_text_mark = ch_get_text_mark

/* Idempotent replay: no atomic checkpoint. */
const od_sink_ops od_sink_clickhouse = {
    CH_OPS_SLOTS,
    .caps = OD_SINK_MARKS | OD_SINK_TEXT_MARKS | OD_SINK_BULK_LOAD | OD_SINK_LINGER,
    .load_prepare = ch_load_prepare,
    .load = ch_load,
    .load_finish = ch_load_finish,
};

static const od_sink_ops ch_ops_no_bulk = {
    CH_OPS_SLOTS,
    .caps = OD_SINK_MARKS | OD_SINK_TEXT_MARKS | OD_SINK_LINGER,
};
