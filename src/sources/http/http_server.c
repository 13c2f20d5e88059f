/* sources/http/http_server.c — the ingest listener: POST /v1/events (one event or an array),
 * GET /v1/health (next sequence, unacknowledged bytes, group commits since start); bearer-token auth; bodies validated (http_event.c) and appended durably
 * (http_journal.c) before the answer.
 *
 * Answers: 200 {"results":[{"correlation_id","seq"}...]} (a replay gets the same body, and the
 * header Odsync-Duplicates: n); 400 {"error","path"} naming the bad field; 401 (missing or wrong
 * token); 404; 405; 409 (an id reused for other content); 413 (body too large); 415 (not JSON);
 * 503 with Retry-After (backpressure, the journal cannot be written, or more request bodies in memory
 * than max(64 MiB, 4 x max_body_bytes) at once).
 * libmicrohttpd runs one thread per connection, so a request waiting for its group commit blocks
 * nobody else. Ownership: owns the daemon, the listening socket and each request's body buffer;
 * borrows the tables and the journal (which outlive it). Never touches: the pipeline, od_change.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/adapter.h"
#include "sources/http/http_internal.h"

#define MAX_CONNECTIONS 512
#define IDLE_TIMEOUT_S 60

struct hs_server {
  hs_server_opts o;
  _Atomic size_t buffered; /* bytes of request bodies held right now (all connections) */
  size_t buffered_max;     /* beyond it new bodies are answered 503: memory stays bounded */
  struct MHD_Daemon *mhd;
  int fd;
  char where[300];
};

typedef struct req {
  char *body;
  size_t len, cap;
  bool too_big, too_busy;
} req;

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, json_t *body, int retry_after,
                                 size_t duplicates) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) text = strdup("{\"error\":\"out of memory\"}");
  if (!text) return MHD_NO;
  size_t n = strlen(text);
  text[n] = '\0';
  char *withnl = realloc(text, n + 2);
  if (withnl) {
    text = withnl;
    text[n++] = '\n';
    text[n] = '\0';
  }
  struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  char num[32];
  if (retry_after > 0) {
    snprintf(num, sizeof num, "%d", retry_after);
    MHD_add_response_header(r, "Retry-After", num);
  }
  if (code == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"odsync ingest\"");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "POST");
  if (duplicates) {
    snprintf(num, sizeof num, "%zu", duplicates);
    MHD_add_response_header(r, "Odsync-Duplicates", num);
  }
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *msg, const char *path,
                                  int retry_after) {
  json_t *o = json_object();
  json_object_set_new(o, "error", json_string(msg));
  if (path) json_object_set_new(o, "path", json_string(path));
  return send_json(c, code, o, retry_after, 0);
}

/* Constant-time comparison of the Authorization header with "Bearer <token>". */
static bool authorized(const hs_server *s, struct MHD_Connection *c) {
  if (!s->o.token) return true;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
  h += 7;
  size_t a = strlen(h), b = strlen(s->o.token);
  unsigned char diff = (unsigned char)(a != b);
  for (size_t i = 0; i < b; i++) diff |= (unsigned char)(h[i < a ? i : 0] ^ s->o.token[i]);
  return diff == 0;
}

static enum MHD_Result ingest(hs_server *s, struct MHD_Connection *c, req *q) {
  const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (ct && strncasecmp(ct, "application/json", 16) != 0)
    return send_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json", NULL, 0);
  if (q->too_big) {
    char msg[160];
    snprintf(msg, sizeof msg, "the body is larger than max_body_bytes (%zu); split the batch", s->o.max_body);
    return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, msg, "$", 0);
  }
  if (q->too_busy)
    return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many request bodies in flight; retry later", NULL, 1);
  hs_batch b;
  char *path = NULL;
  od_error err;
  od_error_clear(&err);
  int rc = hs_batch_parse(s->o.tables, q->body ? q->body : "", q->len, s->o.max_events, &b, &path, &err);
  if (rc) {
    enum MHD_Result ret = send_error(c, rc == OD_EINVAL ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_SERVICE_UNAVAILABLE, err.msg,
                                     path, rc == OD_EINVAL ? 0 : 1);
    od_debug("http source %s: rejected a request: %s", s->o.pipeline, err.msg);
    free(path);
    return ret;
  }
  hs_append_result r;
  hs_journal_append(s->o.journal, &b, &r);
  enum MHD_Result ret;
  if (r.status == 200) {
    json_t *res = json_array();
    for (size_t i = 0; i < b.n; i++) {
      json_t *e = json_object();
      json_object_set_new(e, "correlation_id", json_string(b.ids[i]));
      json_object_set_new(e, "seq", json_integer((json_int_t)r.seqs[i]));
      json_array_append_new(res, e);
    }
    json_t *o = json_object();
    json_object_set_new(o, "results", res);
    ret = send_json(c, MHD_HTTP_OK, o, 0, r.duplicates);
  } else {
    const char *p = NULL;
    char pbuf[64] = "";
    if (r.status == 409) { /* the message starts with the path */
      snprintf(pbuf, sizeof pbuf, "%.*s", (int)strcspn(r.msg, ":"), r.msg);
      p = pbuf;
    }
    ret = send_error(c, (unsigned)r.status, r.msg, p, r.retry_after);
  }
  free(r.seqs);
  hs_batch_free(&b);
  return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  hs_server *s = cls;
  req *q = *con_cls;
  if (!q) {
    if (!(q = calloc(1, sizeof *q))) return MHD_NO;
    *con_cls = q;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!q->too_big && q->len + *upload_size > s->o.max_body) q->too_big = true;
    if (!q->too_big && !q->too_busy && atomic_load(&s->buffered) + *upload_size > s->buffered_max) q->too_busy = true;
    if (!q->too_big && !q->too_busy) {
      if (q->len + *upload_size + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 16384;
        while (cap < q->len + *upload_size + 1) cap *= 2;
        char *b = realloc(q->body, cap);
        if (!b) return MHD_NO;
        q->body = b;
        q->cap = cap;
      }
      memcpy(q->body + q->len, upload, *upload_size);
      q->len += *upload_size;
      atomic_fetch_add(&s->buffered, *upload_size);
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (!authorized(s, c)) return send_error(c, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token", NULL, 0);
  if (strcmp(url, "/v1/health") == 0) {
    if (strcmp(method, "GET") != 0) return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET", NULL, 0);
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    json_object_set_new(o, "next_seq", json_integer((json_int_t)hs_journal_next_seq(s->o.journal)));
    json_object_set_new(o, "unacked_bytes", json_integer((json_int_t)hs_journal_unacked(s->o.journal)));
    json_object_set_new(o, "group_commits", json_integer((json_int_t)hs_journal_groups(s->o.journal)));
    return send_json(c, MHD_HTTP_OK, o, 0, 0);
  }
  if (strcmp(url, "/v1/events") != 0)
    return send_error(c, MHD_HTTP_NOT_FOUND, "unknown path; POST events to /v1/events", NULL, 0);
  if (strcmp(method, "POST") != 0) return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST", NULL, 0);
  return ingest(s, c, q);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)c, (void)toe;
  hs_server *s = cls;
  req *q = *con_cls;
  if (q) {
    atomic_fetch_sub(&s->buffered, q->len);
    free(q->body);
    free(q);
  }
  *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  hs_server *s = cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && msg[n - 1] == '\n') msg[--n] = '\0';
  od_debug("%s: %s", s->where, msg);
}

int hs_server_start(const hs_server_opts *o, hs_server **out, od_error *err) {
  hs_server *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->o = *o;
  s->buffered_max = o->max_body * 4 > (64u << 20) ? o->max_body * 4 : (64u << 20);
  snprintf(s->where, sizeof s->where, "%s", o->where);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  bool v6 = false;
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, o->host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)o->port);
    len = sizeof *in4;
  } else if (inet_pton(AF_INET6, o->host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)o->port);
    len = sizeof *in6;
    v6 = true;
  } else {
    free(s);
    return OD_FAIL(err, OD_ECONFIG, "%s: not a numeric address", o->where);
  }
  s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    free(s);
    return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot create a socket: %s", o->where, strerror(errno));
  }
  int one = 1;
  setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s->fd, (struct sockaddr *)&ss, len) != 0 || listen(s->fd, 128) != 0) {
    int e = errno;
    close(s->fd);
    free(s);
    return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot listen: %s%s", o->where, strerror(e),
                         e == EADDRINUSE ? " (another process uses this port; choose another in listen:)" : "");
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   (v6 ? MHD_USE_IPv6 : 0);
  s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_LISTEN_SOCKET, s->fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
  if (!s->mhd) {
    close(s->fd);
    free(s);
    return OD_FAIL_RETRY(err, OD_EIO, "%s: the HTTP server (libmicrohttpd) did not start", o->where);
  }
  od_info("http source %s: accepting events at http://%s%s%s:%d/v1/events%s", o->pipeline, v6 ? "[" : "", o->host,
          v6 ? "]" : "", o->port, o->token ? " (bearer token required)" : "");
  *out = s;
  return OD_OK;
}

void hs_server_stop(hs_server *s) {
  if (!s) return;
  MHD_socket fd = MHD_quiesce_daemon(s->mhd);
  MHD_stop_daemon(s->mhd);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  free(s);
}
