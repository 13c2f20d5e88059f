/* sources/mysql/my_stream.c — a MariaDB binlog stream turned into transactions (see my_stream.h).
 *
 * Owns: the position bookkeeping (file, offset, GTID state), transaction boundaries (GTID …
 * XID / COMMIT, standalone DDL groups), the table-id map, DDL statements (TRUNCATE of a captured
 * table becomes a truncate change; every DDL tells the source its cached shapes are stale), and the
 * od_change of each row.
 * Never touches: connections, information_schema, the pipeline.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sources/mysql/my_position.h"
#include "sources/mysql/my_stream.h"

struct my_tmap {
  uint64_t id;
  my_table *t;       /* NULL when not captured */
  od_relation *rel;
  uint8_t *raw;      /* the TABLE_MAP body, to skip re-parsing an identical one */
  size_t raw_len;
  bool captured;
};

/* ---- GTID sets ---- */

int my_gtidset_parse(my_gtidset *s, const char *text, od_error *err) {
  memset(s, 0, sizeof *s);
  const char *p = text ? text : "";
  while (*p) {
    unsigned long long d, sv, seq;
    int n = 0;
    if (sscanf(p, "%llu-%llu-%llu%n", &d, &sv, &seq, &n) != 3 || d > 0xFFFFFFFFULL || sv > 0xFFFFFFFFULL)
      return OD_FAIL(err, OD_EINVAL, "malformed GTID list '%s' (expected domain-server-sequence,...)", text);
    my_gtid g = {(uint32_t)d, (uint32_t)sv, seq, 0};
    int rc = my_gtidset_add(s, &g, err);
    if (rc) return rc;
    p += n;
    if (*p == ',') p++;
    else if (*p) return OD_FAIL(err, OD_EINVAL, "malformed GTID list '%s' (expected domain-server-sequence,...)", text);
  }
  return OD_OK;
}

void my_gtidset_format(const my_gtidset *s, char *buf, size_t size) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->n && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s%u-%u-%llu", i ? "," : "", s->g[i].domain, s->g[i].server,
                          (unsigned long long)s->g[i].seq);
}

int my_gtidset_add(my_gtidset *s, const my_gtid *g, od_error *err) {
  int i = 0;
  while (i < s->n && s->g[i].domain < g->domain) i++;
  if (i < s->n && s->g[i].domain == g->domain) {
    s->g[i] = *g;
    s->g[i].flags = 0;
    return OD_OK;
  }
  if (s->n == MY_MAX_DOMAINS)
    return OD_FAIL(err, OD_EUNSUPPORTED, "more than %d GTID domains: not supported", MY_MAX_DOMAINS);
  memmove(&s->g[i + 1], &s->g[i], (size_t)(s->n - i) * sizeof s->g[0]);
  s->g[i] = *g;
  s->g[i].flags = 0;
  s->n++;
  return OD_OK;
}

/* ---- positions ---- */

static int pos_at(const my_stream *s, uint64_t off, od_pos *out, od_error *err) {
  char g[OD_POS_MAX + 1];
  my_gtidset_format(&s->state, g, sizeof g);
  return my_pos_make(s->file, off, g, out, err);
}

int my_stream_position(const my_stream *s, od_pos *out, od_error *err) { return pos_at(s, s->pos, out, err); }

/* ---- lifecycle ---- */

int my_stream_init(my_stream *s, const my_stream_cb *cb, const char *file, uint64_t pos, const char *gtids,
                   bool checksum, od_error *err) {
  memset(s, 0, sizeof *s);
  s->cb = *cb;
  my_format_init(&s->fmt, checksum);
  snprintf(s->file, sizeof s->file, "%s", file ? file : "");
  s->pos = pos;
  int rc = my_gtidset_parse(&s->state, gtids, err);
  if (rc) return rc;
  if (!(s->rels = my_relcache_new())) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  return OD_OK;
}

static void tmap_clear(my_tmap *m);

int my_stream_reset(my_stream *s, const char *file, uint64_t pos, const char *gtids, bool checksum, od_error *err) {
  my_stream_forget_tables(s);
  my_format_init(&s->fmt, checksum);
  snprintf(s->file, sizeof s->file, "%s", file ? file : "");
  s->pos = pos;
  s->in_txn = s->begun = s->standalone = false;
  s->index = 0;
  s->last_idle = od_pos_none();
  return my_gtidset_parse(&s->state, gtids, err);
}

static void tmap_clear(my_tmap *m) {
  my_table_free(m->t);
  free(m->raw);
  memset(m, 0, sizeof *m);
}

void my_stream_forget_tables(my_stream *s) {
  for (int i = 0; i < s->nmaps; i++) tmap_clear(&s->maps[i]);
  s->nmaps = 0;
}

void my_stream_free(my_stream *s) {
  my_stream_forget_tables(s);
  free(s->maps);
  my_relcache_free(s->rels);
  my_valbuf_free(&s->vb);
  memset(s, 0, sizeof *s);
}

/* ---- transactions ---- */

static int ensure_begun(my_stream *s, od_error *err) {
  if (s->begun) return OD_OK;
  s->begun = true;
  return s->cb.begin ? s->cb.begin(s->cb.ctx, &s->txn, err) : OD_OK;
}

static int maybe_idle(my_stream *s, od_error *err) {
  if (s->in_txn || !s->cb.idle || !s->file[0]) return OD_OK;
  od_pos p;
  int rc = my_stream_position(s, &p, err);
  if (rc) return rc;
  if (!od_pos_is_none(&s->last_idle) && od_pos_mysql.compare(&p, &s->last_idle) <= 0) return OD_OK;
  s->last_idle = p;
  return s->cb.idle(s->cb.ctx, &p, err);
}

static int finish_txn(my_stream *s, const my_event *ev, od_error *err) {
  int rc = my_gtidset_add(&s->state, &s->txn.gtid, err);
  if (!rc) rc = pos_at(s, s->pos, &s->txn.end, err);
  if (rc) return rc;
  s->txn.commit_time = (int64_t)ev->timestamp * 1000000;
  bool begun = s->begun;
  s->in_txn = s->begun = s->standalone = false;
  if (begun) {
    s->last_idle = s->txn.end;
    return s->cb.commit ? s->cb.commit(s->cb.ctx, &s->txn, err) : OD_OK;
  }
  return maybe_idle(s, err);
}

static int on_gtid(my_stream *s, const my_event *ev, od_error *err) {
  if (s->in_txn)
    return OD_FAIL(err, OD_EPROTOCOL, "binlog %s:%u: GTID event inside transaction %u-%u-%llu", s->file, ev->log_pos,
                   s->txn.gtid.domain, s->txn.gtid.server, (unsigned long long)s->txn.gtid.seq);
  memset(&s->txn, 0, sizeof s->txn);
  int rc = my_gtid_parse(ev, &s->txn.gtid, err);
  if (!rc) rc = pos_at(s, s->pos - ev->size, &s->txn.start, err);
  if (rc) return rc;
  s->in_txn = true;
  s->begun = false;
  s->standalone = s->txn.gtid.flags & MY_GTID_STANDALONE;
  s->index = 0;
  return OD_OK;
}

/* ---- table maps and rows ---- */

static my_tmap *find_map(my_stream *s, uint64_t id) {
  for (int i = 0; i < s->nmaps; i++)
    if (s->maps[i].id == id) return &s->maps[i];
  return NULL;
}

static int on_table_map(my_stream *s, const my_event *ev, od_error *err) {
  uint64_t id = my_event_table_id(&s->fmt, ev);
  my_tmap *m = find_map(s, id);
  /* The same map as last time (MariaDB writes one per statement): nothing to parse or announce. */
  if (m && m->raw_len == ev->body_len && !memcmp(m->raw, ev->body, ev->body_len)) return OD_OK;
  my_table *t;
  int rc = my_table_map_parse(&s->fmt, ev, &t, err);
  if (rc) return rc;
  if (!m) {
    if (s->nmaps == s->capmaps) {
      int cap = s->capmaps ? s->capmaps * 2 : 16;
      my_tmap *v = realloc(s->maps, (size_t)cap * sizeof *v);
      if (!v) return my_table_free(t), OD_FAIL(err, OD_ENOMEM, "out of memory");
      s->maps = v;
      s->capmaps = cap;
    }
    m = &s->maps[s->nmaps++];
    memset(m, 0, sizeof *m);
  } else {
    tmap_clear(m);
  }
  m->id = id;
  m->captured = s->cb.captured ? s->cb.captured(s->cb.ctx, t->db, t->name) : true;
  if (!m->captured) {
    my_table_free(t);
  } else {
    m->t = t;
    if (!t->full_metadata && s->cb.describe && (rc = s->cb.describe(s->cb.ctx, t, err)) != OD_OK) goto fail;
  }
  if (!(m->raw = malloc(ev->body_len ? ev->body_len : 1))) {
    rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
    goto fail;
  }
  memcpy(m->raw, ev->body, ev->body_len);
  m->raw_len = ev->body_len;
  if (m->captured) {
    bool is_new;
    if ((rc = my_relcache_get(s->rels, m->t, &m->rel, &is_new, err)) != OD_OK) goto fail;
    if (is_new) {
      if ((rc = ensure_begun(s, err)) != OD_OK) return rc;
      if (s->cb.relation && (rc = s->cb.relation(s->cb.ctx, m->rel, err)) != OD_OK) return rc;
    }
  }
  return OD_OK;
fail:
  m->raw_len = 0; /* parse it again next time */
  free(m->raw);
  m->raw = NULL;
  return rc;
}

static int on_rows(my_stream *s, const my_event *ev, od_error *err) {
  my_rows r;
  int rc = my_rows_begin(&s->fmt, ev, &r, err);
  if (rc) return rc;
  my_tmap *m = find_map(s, r.table_id);
  if (!m) {
    my_rows_end(&r);
    return OD_FAIL(err, OD_EPROTOCOL, "binlog %s:%u: rows event for table id %llu without its TABLE_MAP", s->file,
                   ev->log_pos, (unsigned long long)r.table_id);
  }
  if (!m->captured) {
    my_rows_end(&r);
    return OD_OK;
  }
  if (!s->in_txn) {
    my_rows_end(&r);
    return OD_FAIL(err, OD_EPROTOCOL, "binlog %s:%u: rows event outside a transaction", s->file, ev->log_pos);
  }
  if ((rc = ensure_begun(s, err)) != OD_OK) goto out;
  od_tuple before, after;
  while ((rc = my_rows_next(&r, m->t, &s->vb, &before, &after, err)) == 1) {
    od_change c = {0};
    c.op = r.op;
    c.rel = m->rel;
    c.index = s->index++;
    if (r.op != OD_OP_DELETE) c.newtup = after;
    if (r.op != OD_OP_INSERT) {
      c.oldtup = before;
      c.old_kind = 'O';
    }
    if ((rc = s->cb.change(s->cb.ctx, &s->txn, &c, err)) != OD_OK) goto out;
  }
out:
  my_rows_end(&r);
  return rc < 0 ? rc : OD_OK;
}

/* ---- statements ---- */

static bool word(const char **p, const char *end, const char *w) {
  const char *q = *p;
  while (q < end && isspace((unsigned char)*q)) q++;
  size_t n = strlen(w);
  if ((size_t)(end - q) < n || strncasecmp(q, w, n) != 0) return false;
  if (q + n < end && (isalnum((unsigned char)q[n]) || q[n] == '_')) return false;
  *p = q + n;
  return true;
}

/* An identifier, `quoted` or bare, into out. */
static bool ident(const char **p, const char *end, char *out, size_t size) {
  const char *q = *p;
  while (q < end && isspace((unsigned char)*q)) q++;
  size_t n = 0;
  if (q < end && *q == '`') {
    for (q++; q < end; q++) {
      if (*q == '`') {
        if (q + 1 < end && q[1] == '`') q++;
        else break;
      }
      if (n + 1 < size) out[n++] = *q;
    }
    if (q >= end) return false;
    q++;
  } else {
    while (q < end && (isalnum((unsigned char)*q) || *q == '_' || *q == '$' || (unsigned char)*q >= 0x80)) {
      if (n + 1 < size) out[n++] = *q;
      q++;
    }
  }
  out[n] = '\0';
  *p = q;
  return n > 0;
}

static int on_truncate(my_stream *s, const char *db, const char *table, od_error *err) {
  if (s->cb.captured && !s->cb.captured(s->cb.ctx, db, table)) return OD_OK;
  od_relation *rel = my_relcache_find(s->rels, db, table);
  int rc;
  if (!rel) {
    my_table *t = NULL;
    if (!s->cb.shape) return OD_OK;
    if ((rc = s->cb.shape(s->cb.ctx, db, table, &t, err)) != OD_OK) return rc;
    if (!t) return OD_OK; /* gone again: nothing to empty */
    bool is_new;
    rc = my_relcache_get(s->rels, t, &rel, &is_new, err);
    my_table_free(t);
    if (rc) return rc;
    if ((rc = ensure_begun(s, err)) != OD_OK) return rc;
    if (is_new && s->cb.relation && (rc = s->cb.relation(s->cb.ctx, rel, err)) != OD_OK) return rc;
  }
  if ((rc = ensure_begun(s, err)) != OD_OK) return rc;
  od_change c = {0};
  c.op = OD_OP_TRUNCATE;
  c.rel = rel;
  c.index = s->index++;
  return s->cb.change(s->cb.ctx, &s->txn, &c, err);
}

static int on_statement(my_stream *s, const my_event *ev, const my_query *qp, od_error *err);

static int on_query(my_stream *s, const my_event *ev, od_error *err) {
  my_query q;
  int rc = my_query_parse(&s->fmt, ev, &q, err);
  if (!rc) rc = on_statement(s, ev, &q, err);
  my_query_free(&q);
  return rc;
}

static int on_statement(my_stream *s, const my_event *ev, const my_query *qp, od_error *err) {
  my_query q = *qp;
  int rc;
  const char *p = q.sql, *end = q.sql + q.sql_len;
  if (word(&p, end, "BEGIN") || word(&p, end, "XA") || word(&p, end, "SAVEPOINT")) return OD_OK;
  p = q.sql;
  if (word(&p, end, "COMMIT") || word(&p, end, "ROLLBACK")) return s->in_txn ? finish_txn(s, ev, err) : OD_OK;
  char db[256];
  snprintf(db, sizeof db, "%.*s", (int)q.db_len, q.db);
  /* DDL. Cached shapes are stale whatever it changed. */
  my_stream_forget_tables(s);
  if (s->cb.schema_changed && (rc = s->cb.schema_changed(s->cb.ctx, db, q.sql, q.sql_len, err)) != OD_OK) return rc;
  p = q.sql;
  if (s->in_txn && word(&p, end, "TRUNCATE")) {
    word(&p, end, "TABLE");
    char a[256], b[256];
    if (ident(&p, end, a, sizeof a)) {
      const char *tdb = db, *tname = a;
      if (p < end && *p == '.') {
        p++;
        if (!ident(&p, end, b, sizeof b)) return OD_OK;
        tdb = a;
        tname = b;
      }
      if ((rc = on_truncate(s, tdb, tname, err)) != OD_OK) return rc;
    }
  }
  if (s->in_txn && s->standalone) return finish_txn(s, ev, err);
  return OD_OK;
}

int my_stream_event(my_stream *s, const uint8_t *buf, size_t len, od_error *err) {
  if (len > 4 && buf[4] == MY_EV_FORMAT) return my_format_parse(&s->fmt, buf, len, err);
  my_event ev;
  int rc = my_event_parse(&s->fmt, buf, len, &ev, err);
  if (rc) return rc;
  if (ev.type == MY_EV_ROTATE) {
    my_rotate r;
    if ((rc = my_rotate_parse(&ev, &r, err)) != OD_OK) return rc;
    /* The artificial rotate a dump starts with names where it is; never move back in the same file. */
    if (strcmp(r.file, s->file) != 0 || r.pos > s->pos) {
      snprintf(s->file, sizeof s->file, "%s", r.file);
      s->pos = r.pos;
    }
    return maybe_idle(s, err);
  }
  /* Artificial events (log_pos 0) and heartbeats do not move the position. */
  if (ev.log_pos != 0 && ev.type != MY_EV_HEARTBEAT) s->pos = ev.log_pos;
  switch (ev.type) {
    case MY_EV_GTID: return on_gtid(s, &ev, err);
    case MY_EV_TABLE_MAP: return s->in_txn ? on_table_map(s, &ev, err) : OD_OK;
    case MY_EV_WRITE_V1: case MY_EV_UPDATE_V1: case MY_EV_DELETE_V1: case MY_EV_WRITE_V2: case MY_EV_UPDATE_V2:
    case MY_EV_DELETE_V2: case MY_EV_WRITE_COMPRESSED_V1: case MY_EV_UPDATE_COMPRESSED_V1:
    case MY_EV_DELETE_COMPRESSED_V1: case MY_EV_WRITE_COMPRESSED_V2: case MY_EV_UPDATE_COMPRESSED_V2:
    case MY_EV_DELETE_COMPRESSED_V2:
      return on_rows(s, &ev, err);
    case MY_EV_XID:
      if (!s->in_txn) return OD_OK;
      if ((rc = my_xid_parse(&ev, &s->txn.xid, err)) != OD_OK) return rc;
      return finish_txn(s, &ev, err);
    case MY_EV_QUERY: case MY_EV_QUERY_COMPRESSED: return on_query(s, &ev, err);
    case MY_EV_HEARTBEAT: return maybe_idle(s, err);
    case MY_EV_MYSQL_GTID: case MY_EV_MYSQL_ANON_GTID: {
      /* MySQL's events decode (binlog_mysql.c), but the source follows MariaDB's GTIDs only. */
      my_mysql_gtid g;
      if ((rc = my_mysql_gtid_parse(&s->fmt, &ev, &g, err)) != OD_OK) return rc;
      return OD_FAIL(err, OD_EUNSUPPORTED,
                     "binlog %s:%u: a MySQL %sGTID event (transaction %llu): this server is MySQL, and odsync's "
                     "mysql source reads MariaDB's binlog only (docs/adapters/mysql-source.md, \"MySQL\")",
                     s->file, ev.log_pos, g.anonymous ? "anonymous " : "", (unsigned long long)g.gno);
    }
    default: return OD_OK; /* GTID_LIST, BINLOG_CHECKPOINT, ANNOTATE_ROWS, STOP, ... */
  }
}
