/* admin.c — see admin.h. Routing, limits and the sampler thread; what is shown lives in
 * status.c (JSON, table) and core/metrics_text.c (Prometheus); the page in assets/. */
#include "server/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pipeline_metrics.h"
#include "server/status.h"

#define MAX_CONNECTIONS 64
#define MAX_PER_IP 16
#define IDLE_TIMEOUT_S 10
#define CONNECTION_MEMORY 32768 /* request line and headers must fit (larger: 431 / 414) */

extern const unsigned char od_dashboard_html[];
extern const unsigned long od_dashboard_html_len;

struct od_admin {
  struct MHD_Daemon *mhd;
  int fd;
  od_pipeline **pipes;
  int n;
  od_metrics *registry;
  od_status_view *status;
  pthread_t sampler;
  bool sampler_started;
  atomic_bool stop;
  char where[160]; /* "FILE:L:C: admin.listen HOST:PORT" for messages */
  od_metric *requests[6]; /* by route: metrics, healthz, readyz, status, dashboard, other */
};

enum { R_METRICS, R_HEALTHZ, R_READYZ, R_STATUS, R_DASHBOARD, R_OTHER };

static void *sampler_main(void *arg) {
  od_admin *a = arg;
  while (!atomic_load(&a->stop)) {
    od_status_sample(a->status);
    for (int i = 0; i < 10 && !atomic_load(&a->stop); i++) {
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

/* Queue a response that owns `body` (malloc'd, may be NULL for an empty body). */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body, size_t len,
                             const char *allow) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (allow) MHD_add_response_header(r, "Allow", allow);
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_buf(struct MHD_Connection *c, unsigned code, const char *type, od_sqlbuf *b) {
  if (b->oom) {
    od_sqlbuf_free(b);
    return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", strdup("out of memory\n"), 14, NULL);
  }
  char *body = b->p;
  size_t len = b->len;
  b->p = NULL;
  return reply(c, code, type, body, len, NULL);
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *fmt, const char *arg) {
  od_sqlbuf b = {0};
  od_sqlbuf_addf(&b, fmt, arg);
  return reply_buf(c, code, "text/plain; charset=utf-8", &b);
}

static int route_of(const char *url) {
  if (!strcmp(url, "/metrics")) return R_METRICS;
  if (!strcmp(url, "/healthz")) return R_HEALTHZ;
  if (!strcmp(url, "/readyz")) return R_READYZ;
  if (!strcmp(url, "/status")) return R_STATUS;
  if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return R_DASHBOARD;
  return R_OTHER;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload_data;
  od_admin *a = cls;
  if (!*con_cls) { /* first call: headers only; answer right away (no request here has a body) */
    *con_cls = (void *)1;
  }
  if (*upload_size) { /* a body we do not want: drop it, the answer is an error anyway */
    *upload_size = 0;
    return MHD_YES;
  }
  int route = route_of(url);
  od_counter_add(a->requests[route], 1);
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    od_sqlbuf b = {0};
    od_sqlbuf_addf(&b, "method %.16s is not allowed on %.200s; use GET\n", method, url);
    char *body = b.p;
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", body, b.len, "GET, HEAD");
  }
  od_sqlbuf b = {0};
  switch (route) {
    case R_METRICS:
      for (int i = 0; i < a->n; i++) od_pipeline_metrics_refresh(od_pipeline_get_stats(a->pipes[i])->metrics);
      od_metrics_write_prometheus(a->registry, &b);
      return reply_buf(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &b);
    case R_HEALTHZ:
      return reply_text(c, MHD_HTTP_OK, "%s", "ok\n");
    case R_READYZ: {
      bool ready = od_status_ready(a->status, &b);
      if (ready) od_sqlbuf_add(&b, "ready\n");
      return reply_buf(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", &b);
    }
    case R_STATUS: {
      const char *fmt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
      const char *hist = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "history");
      if (fmt && !strcmp(fmt, "text")) {
        od_status_text(a->status, &b);
        return reply_buf(c, MHD_HTTP_OK, "text/plain; charset=utf-8", &b);
      }
      if (fmt && strcmp(fmt, "json") != 0)
        return reply_text(c, MHD_HTTP_BAD_REQUEST, "unknown format '%.32s'; expected json or text\n", fmt);
      od_status_json(a->status, hist && strcmp(hist, "0") != 0, &b);
      return reply_buf(c, MHD_HTTP_OK, "application/json", &b);
    }
    case R_DASHBOARD: {
      struct MHD_Response *r = MHD_create_response_from_buffer(
          od_dashboard_html_len, (void *)od_dashboard_html, MHD_RESPMEM_PERSISTENT);
      if (!r) return MHD_NO;
      MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
      MHD_add_response_header(r, "Cache-Control", "no-store");
      MHD_add_response_header(r, "Content-Security-Policy",
                              "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
      enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
      MHD_destroy_response(r);
      return ret;
    }
    default:
      return reply_text(c, MHD_HTTP_NOT_FOUND,
                        "not found: %.200s (this server has /, /metrics, /healthz, /readyz, /status)\n", url);
  }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  od_admin *a = cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  msg[strcspn(msg, "\n")] = '\0';
  od_debug("admin %s: %s", a->where, msg);
}

static int listen_socket(const od_admin_config *ac, bool *v6, od_error *err, const char *where) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ac->host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)ac->port);
    len = sizeof *in4;
    *v6 = false;
  } else if (inet_pton(AF_INET6, ac->host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)ac->port);
    len = sizeof *in6;
    *v6 = true;
  } else {
    return OD_FAIL(err, OD_ECONFIG, "%s: not a numeric address", where);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return OD_FAIL(err, OD_EIO, "%s: cannot create a socket: %s", where, strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
    int e = errno;
    close(fd);
    return OD_FAIL(err, OD_EIO, "%s: cannot listen: %s%s", where, strerror(e),
                   e == EADDRINUSE ? " (another process uses this port; choose another in admin.listen)" : "");
  }
  return fd;
}

int od_admin_start(const od_config *cfg, od_pipeline **pipes, int n, od_metrics *registry, od_admin **out,
                   od_error *err) {
  const od_admin_config *ac = &cfg->admin;
  od_admin *a = calloc(1, sizeof *a);
  if (!a) return OD_FAIL(err, OD_ENOMEM, "admin: out of memory");
  snprintf(a->where, sizeof a->where, "%s:%d:%d: admin.listen %.64s", cfg->file, ac->line, ac->col, ac->listen);
  a->pipes = pipes;
  a->n = n;
  a->registry = registry;
  a->fd = -1;
  static const char *const routes[] = {"/metrics", "/healthz", "/readyz", "/status", "/", "other"};
  static const char *const LBL[] = {"path", NULL};
  static const od_metric_family_def REQ = {.name = "odsync_admin_requests_total",
                                           .help = "Requests the admin server answered, by path (unknown paths: other)",
                                           .type = OD_METRIC_COUNTER,
                                           .labels = LBL};
  for (int i = 0; i < 6; i++) {
    const char *v[] = {routes[i], NULL};
    a->requests[i] = od_metrics_series(od_metrics_family(registry, &REQ), v);
  }
  static const char *const VL[] = {"version", NULL};
  static const od_metric_family_def INFO = {
      .name = "odsync_build_info", .help = "odsync's version (always 1)", .type = OD_METRIC_GAUGE, .labels = VL};
  const char *ver[] = {ODSYNC_VERSION, NULL};
  od_gauge_set(od_metrics_series(od_metrics_family(registry, &INFO), ver), 1);

  if (!(a->status = od_status_new(pipes, n))) {
    free(a);
    return OD_FAIL(err, OD_ENOMEM, "admin: out of memory");
  }
  bool v6 = false;
  int fd = listen_socket(ac, &v6, err, a->where);
  if (fd < 0) {
    od_status_free(a->status);
    free(a);
    return fd;
  }
  a->fd = fd;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   (v6 ? MHD_USE_IPv6 : 0);
  a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, a, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            (unsigned)MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a, MHD_OPTION_END);
  if (!a->mhd) {
    OD_FAIL(err, OD_EIO, "%s: the HTTP server (libmicrohttpd) did not start", a->where);
    close(fd);
    od_status_free(a->status);
    free(a);
    return OD_EIO;
  }
  if (pthread_create(&a->sampler, NULL, sampler_main, a) == 0) a->sampler_started = true;
  od_info("admin: serving http://%s%s%s:%d/ (metrics, healthz, readyz, status, dashboard)", v6 ? "[" : "", ac->host,
          v6 ? "]" : "", ac->port);
  *out = a;
  return OD_OK;
}

void od_admin_stop(od_admin *a) {
  if (!a) return;
  atomic_store(&a->stop, true);
  if (a->sampler_started) pthread_join(a->sampler, NULL);
  /* Take the listening socket back first, so that it is closed exactly once, here. */
  MHD_socket fd = MHD_quiesce_daemon(a->mhd);
  MHD_stop_daemon(a->mhd);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  od_status_free(a->status);
  free(a);
}
