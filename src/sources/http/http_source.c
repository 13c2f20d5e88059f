/* sources/http/http_source.c — the HTTP ingest source (`type: http`): its settings, its position
 * kind ("http:<sequence>") and the vtable that turns journal records into the pipeline's
 * transactions (one record = one request's accepted events = one source transaction).
 *
 * The listener starts with start() and stops with close(), so while the pipeline reconnects
 * (after a sink failure) clients get "connection refused" and retry. Nothing is lost: an event is
 * answered 2xx only once it is fsync'd in the journal, which is pruned only below what every sink
 * holds (ack).
 * Ownership: owns its settings, tables, journal and listener; borrows the config section.
 * Never touches: sinks, the pipeline's queue.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/seal.h"
#include "core/adapter.h"
#include "odsync/source.h"
#include "sources/http/http_internal.h"

#define MAX_RECORDS_PER_POLL 256

/* ---- the position kind: the journal sequence, big-endian (bytewise order) ---- */

static int pos_format(const od_pos *p, char *buf, size_t size) {
  int n = snprintf(buf, size, "%" PRIu64, od_pos_to_u64(p));
  return n < 0 || (size_t)n >= size ? -1 : n;
}
static int pos_parse(const char *body, od_pos *out) {
  char *end;
  if (!body[0] || body[0] == '-') return OD_EINVAL;
  unsigned long long v = strtoull(body, &end, 10);
  if (*end) return OD_EINVAL;
  *out = od_pos_from_u64(out->kind ? out->kind : &od_pos_http, v);
  return OD_OK;
}
static uint64_t pos_version(const od_pos *p) { return od_pos_to_u64(p); }
const od_pos_kind od_pos_http = {.name = "http", .format = pos_format, .parse = pos_parse, .version = pos_version};

/* ---- settings ---- */

typedef struct hs_source {
  od_source base;
  char where[600];  /* "FILE:L:C: pipelines[0].source" */
  char listen_where[700];
  char pipeline[128];
  char host[64];
  int port;
  char *token;
  long max_body, max_events, max_unacked, segment_bytes, retention_s, max_ids;
  char dir[4096];
  hs_tables tables;
  bool *announced; /* per table: relation reported this session */
  hs_journal *journal;
  hs_server *server;
  od_keyring *kr; /* owned: the `encryption:` keys sealing the journal, NULL without */
} hs_source;

static const char *const KEYS[] = {"listen", "token", "tables", "max_body_bytes", "max_batch_events",
                                   "max_unacked_bytes", "segment_bytes", "idempotency_retention_s",
                                   "idempotency_max_ids", NULL};

static bool loopback(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static int parse_listen(hs_source *s, const od_config_section *cfg, od_error *err) {
  const char *listen;
  int rc = od_config_string(cfg, "listen", "127.0.0.1:7071", &listen, err);
  if (rc) return rc;
  const od_config_entry *e = od_config_find(cfg, "listen");
  snprintf(s->listen_where, sizeof s->listen_where, "%s:%d:%d: %s.listen %.100s", cfg->file ? cfg->file : "<config>",
           e ? e->line : cfg->line, e ? e->col : cfg->col, cfg->path ? cfg->path : "source", listen);
  const char *colon = strrchr(listen, ':');
  char host[64];
  if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
    return OD_FAIL(err, OD_ECONFIG, "%s: expected HOST:PORT, e.g. 127.0.0.1:7071 or [::1]:7071", s->listen_where);
  snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
  if (host[0] == '[') {
    size_t n = strlen(host);
    if (host[n - 1] != ']')
      return OD_FAIL(err, OD_ECONFIG, "%s: expected [IPv6]:PORT", s->listen_where);
    memmove(host, host + 1, n - 2);
    host[n - 2] = '\0';
  }
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  char *end;
  long port = strtol(colon + 1, &end, 10);
  struct in6_addr a6;
  if (*end || port < 1 || port > 65535)
    return OD_FAIL(err, OD_ECONFIG, "%s: the port must be 1..65535", s->listen_where);
  if (inet_pton(AF_INET, host, &a6) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
    return OD_FAIL(err, OD_ECONFIG, "%s: '%s' is not a numeric IP address (or localhost)", s->listen_where, host);
  snprintf(s->host, sizeof s->host, "%s", host);
  s->port = (int)port;
  return OD_OK;
}

static void hs_close(od_source *base);
extern const od_source_ops od_source_http;

static int hs_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  hs_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &od_source_http;
  snprintf(s->where, sizeof s->where, "%s:%d:%d: %s", cfg->file ? cfg->file : "<config>", cfg->line, cfg->col,
           cfg->path ? cfg->path : "source");
  snprintf(s->pipeline, sizeof s->pipeline, "%s", pipeline);
  int rc = od_config_check_keys(cfg, KEYS, err);
  if (!rc) rc = parse_listen(s, cfg, err);
  const char *token = NULL;
  if (!rc) rc = od_config_string(cfg, "token", NULL, &token, err);
  if (!rc && token && !token[0])
    rc = OD_FAIL(err, OD_ECONFIG, "%s.token is empty (is the environment variable it names set?)", s->where);
  if (!rc && token && !(s->token = strdup(token))) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (!rc && !s->token && !loopback(s->host))
    rc = OD_FAIL(err, OD_ECONFIG, "%s: listening beyond loopback needs a token (token: ${env:NAME}); without one "
                 "anyone who reaches the port could write to the sinks", s->listen_where);
  if (!rc) rc = od_config_int(cfg, "max_body_bytes", 8L << 20, 1024, 1L << 30, &s->max_body, err);
  if (!rc) rc = od_config_int(cfg, "max_batch_events", 10000, 1, 1000000, &s->max_events, err);
  if (!rc) rc = od_config_int(cfg, "max_unacked_bytes", 256L << 20, 1024, 1L << 40, &s->max_unacked, err);
  if (!rc) rc = od_config_int(cfg, "segment_bytes", 64L << 20, 4096, 1L << 32, &s->segment_bytes, err);
  if (!rc) rc = od_config_int(cfg, "idempotency_retention_s", 7L * 86400, 60, 366L * 86400, &s->retention_s, err);
  if (!rc) rc = od_config_int(cfg, "idempotency_max_ids", 1000000, 1000, 100000000, &s->max_ids, err);
  const od_config_entry *te = rc ? NULL : od_config_find(cfg, "tables");
  if (!rc && (!te || !te->list || te->nlist == 0))
    rc = OD_FAIL(err, OD_ECONFIG, "%s: missing required key 'tables'; expected a list of declarations such as "
                 "- \"public.orders (id bigint key, customer text not null, amount numeric(12,2))\"", s->where);
  if (!rc) {
    char **where = calloc((size_t)te->nlist, sizeof *where);
    bool oom = !where;
    for (int i = 0; !oom && i < te->nlist; i++) {
      if (!(where[i] = malloc(700))) {
        oom = true;
        break;
      }
      snprintf(where[i], 700, "%s:%d:%d: %s.tables[%d]", cfg->file ? cfg->file : "<config>",
               te->list_line ? te->list_line[i] : te->line, te->list_col ? te->list_col[i] : te->col,
               cfg->path ? cfg->path : "source", i);
    }
    rc = oom ? OD_FAIL(err, OD_ENOMEM, "out of memory")
             : hs_tables_parse(te->list, te->nlist, (const char *const *)where, &s->tables, err);
    for (int i = 0; where && i < te->nlist; i++) free(where[i]);
    free(where);
  }
  if (!rc && !(s->announced = calloc((size_t)s->tables.n, sizeof *s->announced)))
    rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (!rc) snprintf(s->dir, sizeof s->dir, "%s/http/%s", cfg->state_dir ? cfg->state_dir : "./odsync-state", pipeline);
  if (!rc) rc = od_keyring_from_keys(cfg->encryption, cfg->file, &s->kr, err);
  if (rc) {
    hs_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return OD_OK;
}

/* The journal directory must be writable (fatal); the port should be free (a warning: odsync may be
 * running already when check is run). */
static int hs_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  (void)err;
  hs_source *s = (hs_source *)base;
  char msg[2000];
  int fatal = 0;
  if (hs_mkdirs(s->dir) || access(s->dir, W_OK)) {
    snprintf(msg, sizeof msg, "%s: the journal directory %.600s cannot be created or written (%s); fix state_dir or "
             "its permissions", s->where, s->dir, strerror(errno));
    problem(ctx, true, msg);
    fatal++;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len = sizeof(struct sockaddr_in);
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, s->host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)s->port);
  } else {
    inet_pton(AF_INET6, s->host, &in6->sin6_addr);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)s->port);
    len = sizeof *in6;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0) {
    int e = errno;
    snprintf(msg, sizeof msg, "%s: cannot bind: %s%s", s->listen_where, strerror(e),
             e == EADDRINUSE ? " (odsync may already be running with this pipeline; otherwise choose another port)" : "");
    problem(ctx, e != EADDRINUSE, msg);
    fatal += e != EADDRINUSE;
  }
  if (fd >= 0) close(fd);
  od_info("http source %s: %d table(s) declared; journal in %.300s; clients post to http://%s:%d/v1/events%s",
          s->pipeline, s->tables.n, s->dir, s->host, s->port, s->token ? " with the bearer token" : "");
  return fatal;
}

static int hs_start(od_source *base, const od_pos *from, od_error *err) {
  hs_source *s = (hs_source *)base;
  int rc;
  if (!s->journal) {
    hs_journal_opts o = {.dir = s->dir, .segment_bytes = (uint64_t)s->segment_bytes,
                         .max_unacked = (uint64_t)s->max_unacked, .id_retention_s = s->retention_s,
                         .id_max = s->max_ids, .tables = &s->tables, .kr = s->kr};
    if ((rc = hs_journal_open(&o, &s->journal, err))) return rc;
  }
  if ((rc = hs_journal_seek(s->journal, od_pos_is_none(from) ? 0 : od_pos_to_u64(from), err))) return rc;
  memset(s->announced, 0, (size_t)s->tables.n * sizeof *s->announced);
  if (!s->server) {
    hs_server_opts so = {.host = s->host, .port = s->port, .token = s->token, .max_body = (size_t)s->max_body,
                         .max_events = (size_t)s->max_events, .where = s->listen_where, .pipeline = s->pipeline,
                         .tables = &s->tables, .journal = s->journal};
    if ((rc = hs_server_start(&so, &s->server, err))) return rc;
  }
  return OD_OK;
}

static int deliver(hs_source *s, const od_change_handler *h, uint64_t first, uint32_t count, int64_t at,
                   const char *payload, size_t len, od_error *err) {
  json_error_t je;
  json_t *arr = json_loadb(payload, len, 0, &je);
  if (!json_is_array(arr) || json_array_size(arr) != count) {
    json_decref(arr);
    return OD_FAIL(err, OD_EIO, "http source: journal record at sequence %" PRIu64 " in %s does not hold %u events",
                   first, s->dir, count);
  }
  od_txn_info txn = {.xid = first, .start = od_pos_from_u64(&od_pos_http, first),
                     .end = od_pos_from_u64(&od_pos_http, first + count), .commit_time = at};
  int rc = h->begin(h->ctx, &txn, err);
  for (size_t i = 0; !rc && i < count; i++) {
    json_t *ev = json_array_get(arr, i);
    od_change ch;
    void *scratch = NULL;
    rc = hs_event_change(&s->tables, ev, &ch, &scratch, err);
    if (!rc) {
      int t = 0;
      for (int k = 0; k < s->tables.n; k++)
        if (&s->tables.t[k].rel == ch.rel) t = k;
      if (!s->announced[t] && h->relation) {
        rc = h->relation(h->ctx, &s->tables.t[t].rel, err);
        s->announced[t] = true;
      }
      ch.index = (uint32_t)i;
      if (!rc) rc = h->change(h->ctx, &txn, &ch, err);
    }
    free(scratch);
  }
  if (!rc) rc = h->commit(h->ctx, &txn, err);
  json_decref(arr);
  return rc;
}

static int hs_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  hs_source *s = (hs_source *)base;
  int64_t until = od_mono_us() + 50000;
  for (int n = 0; n < MAX_RECORDS_PER_POLL; n++) {
    uint64_t first;
    uint32_t count;
    int64_t at;
    char *payload = NULL;
    size_t len;
    int rc = hs_journal_next(s->journal, n == 0 ? timeout_ms : 0, &first, &count, &at, &payload, &len, err);
    if (rc == OD_AGAIN) { /* everything committed is delivered: `first` is where the next record starts */
      if (h->idle) {
        od_pos idle = od_pos_from_u64(&od_pos_http, first);
        return h->idle(h->ctx, &idle, err);
      }
      return OD_OK;
    }
    if (rc) return rc;
    rc = deliver(s, h, first, count, at, payload, len, err);
    free(payload);
    if (rc) return rc;
    if (od_mono_us() > until) break;
  }
  return OD_OK;
}

static int hs_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)force;
  hs_source *s = (hs_source *)base;
  if (!s->journal || od_pos_is_none(durable)) return OD_OK;
  return hs_journal_ack(s->journal, od_pos_to_u64(durable), err);
}

static void hs_close(od_source *base) {
  hs_source *s = (hs_source *)base;
  if (!s) return;
  hs_server_stop(s->server); /* first: its requests wait on the journal */
  hs_journal_close(s->journal);
  hs_tables_free(&s->tables);
  free(s->announced);
  if (s->token) {
    memset(s->token, 0, strlen(s->token));
    free(s->token);
  }
  od_keyring_free(s->kr);
  free(s);
}

static int hs_tables_list(od_source *base, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                          void *ctx, od_error *err) {
  (void)err;
  hs_source *s = (hs_source *)base;
  for (int i = 0; i < s->tables.n; i++) fn(ctx, s->tables.t[i].rel.schema, s->tables.t[i].rel.name, true);
  return OD_OK;
}

const od_source_ops od_source_http = {
    .type = "http",
    .position = &od_pos_http,
    .open = hs_open,
    .check = hs_check,
    .start = hs_start,
    .poll = hs_poll,
    .ack = hs_ack,
    .close = hs_close,
    .tables = hs_tables_list,
    .snapshot = NULL,
};
