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
#include <time.h>
#include <unistd.h>

#include "core/isnap.h"
#include "core/log.h"
#include "core/pipeline_metrics.h"
#include "server/admin_action.h"
#include "server/admin_auth.h"
#include "server/status.h"

#include <openssl/crypto.h>

#define MAX_CONNECTIONS 64
#define MAX_PER_IP 16
#define IDLE_TIMEOUT_S 10
#define CONNECTION_MEMORY 32768 /* request line and headers must fit (larger: 431 / 414) */

/* Routes; R_PAUSE and after are POSTs that change something (operator or admin role). */
enum { R_METRICS, R_HEALTHZ, R_READYZ, R_STATUS, R_DASHBOARD, R_OTHER, R_PAUSE, R_RESUME, R_SNAPSHOT, R_RELOAD,
       R_COUNT_ };

extern const unsigned char od_dashboard_html[];
extern const unsigned long od_dashboard_html_len;

struct od_admin {
  struct MHD_Daemon *mhd;
  int fd;
  /* lock guards pipes, n, cfg, auth and status: a config reload replaces them (od_admin_update)
   * while the sampler thread and the request thread use them. */
  pthread_mutex_t lock;
  od_pipeline **pipes;    /* borrowed */
  int n;
  const od_config *cfg;   /* borrowed: the current config (snapshot requests, credentials) */
  od_admin_reload_fn reload; /* the run command's config reload, or NULL (501) */
  void *reload_ctx;
  od_admin_auth *auth;    /* owned */
  char *tls_cert, *tls_key; /* owned PEM text (the key is wiped when freed) */
  od_metrics *registry;
  od_status_view *status;
  pthread_t sampler;
  bool sampler_started;
  atomic_bool stop;
  char where[160]; /* "FILE:L:C: admin.listen HOST:PORT" for messages */
  od_metric *requests[R_COUNT_]; /* by route */
};

static void *sampler_main(void *arg) {
  od_admin *a = arg;
  while (!atomic_load(&a->stop)) {
    pthread_mutex_lock(&a->lock);
    od_status_sample(a->status);
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i < 10 && !atomic_load(&a->stop); i++) {
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

/* Queue a response that owns `body` (malloc'd, may be NULL for an empty body). */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body, size_t len,
                             const char *hname, const char *hval) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (hname) MHD_add_response_header(r, hname, hval);
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_buf(struct MHD_Connection *c, unsigned code, const char *type, od_sqlbuf *b) {
  if (b->oom) {
    od_sqlbuf_free(b);
    return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", strdup("out of memory\n"), 14, NULL, NULL);
  }
  char *body = b->p;
  size_t len = b->len;
  b->p = NULL;
  return reply(c, code, type, body, len, NULL, NULL);
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *fmt, const char *arg) {
  od_sqlbuf b = {0};
  od_sqlbuf_addf(&b, fmt, arg);
  return reply_buf(c, code, "text/plain; charset=utf-8", &b);
}

/* "/pipelines/NAME/ACTION": the pipeline's name into `name`. */
static int route_of(const char *url, char *name, size_t size) {
  name[0] = '\0';
  if (!strncmp(url, "/pipelines/", 11)) {
    const char *nm = url + 11, *slash = strchr(nm, '/');
    if (slash && slash > nm && (size_t)(slash - nm) < size) {
      memcpy(name, nm, (size_t)(slash - nm));
      name[slash - nm] = '\0';
      if (!strcmp(slash, "/pause")) return R_PAUSE;
      if (!strcmp(slash, "/resume")) return R_RESUME;
      if (!strcmp(slash, "/snapshot")) return R_SNAPSHOT;
    }
    return R_OTHER;
  }
  if (!strcmp(url, "/config/reload")) return R_RELOAD;
  if (!strcmp(url, "/metrics")) return R_METRICS;
  if (!strcmp(url, "/healthz")) return R_HEALTHZ;
  if (!strcmp(url, "/readyz")) return R_READYZ;
  if (!strcmp(url, "/status")) return R_STATUS;
  if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return R_DASHBOARD;
  return R_OTHER;
}

/* The role a route needs: probes and the (data-less) dashboard page need none. */
static int required_role(int route) {
  switch (route) {
    case R_HEALTHZ: case R_READYZ: case R_DASHBOARD: return OD_ROLE_NONE;
    case R_PAUSE: case R_RESUME: case R_SNAPSHOT: return OD_ROLE_OPERATOR;
    case R_RELOAD: return OD_ROLE_ADMIN;
    default: return OD_ROLE_VIEWER;
  }
}

/* A path as it may appear in a log line: printable ASCII, at most 200 bytes. */
static void printable_path(char *out, size_t size, const char *url) {
  size_t j = 0;
  for (; *url && j + 1 < size && j < 200; url++)
    out[j++] = (*url >= 0x20 && *url < 0x7f) ? *url : '?';
  out[j] = '\0';
}

static void client_of(struct MHD_Connection *c, char *out, size_t size) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  out[0] = '\0';
  if (!ci || !ci->client_addr) return;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

static od_pipeline *find_pipe(od_admin *a, const char *name) {
  for (int i = 0; i < a->n; i++)
    if (!strcmp(od_pipeline_name(a->pipes[i]), name)) return a->pipes[i];
  return NULL;
}

static void snap_report(void *ctx, const char *table) {
  od_sqlbuf *b = ctx;
  od_sqlbuf_addf(b, "%s%s", b->len ? "," : "", table);
}

/* POST /pipelines/NAME/{pause,resume,snapshot}, /config/reload, for a caller allowed to: does it,
 * fills the answer (*code, *type, body) and `detail` (what was done, for the record). */
static void mutate(od_admin *a, struct MHD_Connection *c, int route, const char *pname, unsigned *code,
                   const char **type, od_sqlbuf *b, char *detail, size_t dsize) {
  *type = "text/plain; charset=utf-8";
  if (route == R_RELOAD) { /* only without a reload hook (od_admin_on_reload): handle() runs it */
    snprintf(detail, dsize, "config reload requested (not available: 501)");
    *code = MHD_HTTP_NOT_IMPLEMENTED;
    od_sqlbuf_add(b, "config reload is not available in this process: restart odsync to load a changed "
                     "configuration\n");
    return;
  }
  od_pipeline *p = find_pipe(a, pname);
  if (!p) {
    snprintf(detail, dsize, "no such pipeline");
    *code = MHD_HTTP_NOT_FOUND;
    od_sqlbuf_addf(b, "no pipeline named '%.64s'\n", pname);
    return;
  }
  *type = "application/json";
  if (route == R_PAUSE || route == R_RESUME) {
    od_pipeline_set_paused(p, route == R_PAUSE);
    /* Pause answers 200 once the reader holds (nothing more is read), 202 when it has not yet
     * within 10 s (not streaming now: it holds as soon as it streams again). */
    bool held = route == R_RESUME;
    for (int i = 0; i < 100 && !held; i++) {
      held = atomic_load(&od_pipeline_get_stats(p)->pause_held) != 0;
      if (!held) nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 100 * 1000000L}, NULL);
    }
    snprintf(detail, dsize, "%s",
             route == R_RESUME ? "pipeline resumed" : held ? "pipeline paused" : "pipeline pause requested");
    od_sqlbuf_addf(b, "{\"pipeline\":\"%s\",\"paused\":%s,\"reading\":%s}\n", od_pipeline_name(p),
                   route == R_PAUSE ? "true" : "false", route == R_PAUSE && held ? "false" : "true");
    *code = held ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED;
    return;
  }
  /* R_SNAPSHOT: ?tables=schema.a,schema.b (absent: every captured table). */
  const od_pipeline_config *pc = NULL;
  for (int i = 0; i < a->cfg->npipelines; i++)
    if (!strcmp(a->cfg->pipelines[i].name, pname)) pc = &a->cfg->pipelines[i];
  const char *tl = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "tables");
  char list[1024];
  snprintf(list, sizeof list, "%s", tl ? tl : "");
  const char *tables[64];
  int nt = 0;
  for (char *save = NULL, *t = strtok_r(list, ",", &save); t && nt < 64; t = strtok_r(NULL, ",", &save))
    tables[nt++] = t;
  od_sqlbuf done = {0};
  od_error err = {0};
  int rc = pc ? od_isnap_request(pc, tables, nt, snap_report, &done, &err) : OD_FAIL(&err, OD_EINVAL, "no config");
  if (rc) {
    snprintf(detail, dsize, "snapshot request failed: %.500s", err.msg);
    *type = "text/plain; charset=utf-8";
    *code = rc == OD_ECONFIG || rc == OD_EINVAL ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_BAD_GATEWAY;
    od_sqlbuf_addf(b, "%s\n", detail);
  } else {
    snprintf(detail, dsize, "snapshot requested: %.500s", done.p ? done.p : "");
    *code = MHD_HTTP_ACCEPTED;
    od_sqlbuf_addf(b, "{\"pipeline\":\"%s\",\"snapshot_requested\":\"%s\"}\n", pc->name, done.p ? done.p : "");
  }
  od_sqlbuf_free(&done);
}

/* Called with a->lock held; a config reload releases it while it runs (the reload replaces what
 * the lock guards). */
static enum MHD_Result handle_locked(od_admin *a, struct MHD_Connection *c, const char *url, const char *method,
                                     size_t *upload_size, void **con_cls) {
  if (!*con_cls) { /* first call: headers only; answer right away (no request here needs a body) */
    *con_cls = (void *)1;
  }
  if (*upload_size) { /* a body we do not want: drop it */
    *upload_size = 0;
    return MHD_YES;
  }
  char pname[128];
  int route = route_of(url, pname, sizeof pname);
  od_counter_add(a->requests[route], 1);
  bool post = route >= R_PAUSE;
  if (post ? strcmp(method, "POST") != 0 : (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
    od_sqlbuf b = {0};
    od_sqlbuf_addf(&b, "method %.16s is not allowed on %.200s; use %s\n", method, url, post ? "POST" : "GET");
    char *body = b.p;
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", body, b.len, "Allow",
                 post ? "POST" : "GET, HEAD");
  }
  int need = required_role(route);
  char who[160] = "anonymous", why[240] = "", ip[64], path[208];
  int role = OD_ROLE_ADMIN; /* no credentials configured (loopback only): everything is allowed */
  if (od_admin_auth_enabled(a->auth))
    role = need == OD_ROLE_NONE ? OD_ROLE_NONE
                                : od_admin_auth_check(a->auth, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                                                      who, sizeof who, why, sizeof why);
  if (need != OD_ROLE_NONE || post) {
    client_of(c, ip, sizeof ip);
    size_t wl = strlen(who);
    snprintf(who + wl, sizeof who - wl, "@%s", ip[0] ? ip : "?");
    printable_path(path, sizeof path, url);
    bool allowed = role >= need;
    unsigned code = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";
    char detail[640];
    od_sqlbuf b = {0};
    if (!allowed) {
      if (role != OD_ROLE_NONE)
        snprintf(why, sizeof why, "role %s may not do this (needs %s)", od_admin_role_name(role),
                 od_admin_role_name(need));
      snprintf(detail, sizeof detail, "%s", why);
      code = role == OD_ROLE_NONE ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_FORBIDDEN;
      od_sqlbuf_addf(&b, "%s: %s\n", role == OD_ROLE_NONE ? "authentication required" : "forbidden", why);
    } else if (route == R_RELOAD && a->reload) {
      pthread_mutex_unlock(&a->lock);
      code = (unsigned)a->reload(a->reload_ctx, who, &b, detail, sizeof detail);
      pthread_mutex_lock(&a->lock);
      type = code == MHD_HTTP_OK ? "application/json" : "text/plain; charset=utf-8";
    } else if (post) {
      mutate(a, c, route, pname, &code, &type, &b, detail, sizeof detail);
    }
    if (!allowed || post) {
      /* The one place every access decision is recorded (admin_action.h). */
      od_admin_record_action(who, od_admin_role_name(role), method, path, allowed, detail);
      if (b.oom) return reply_buf(c, code, type, &b); /* answers 500 */
      char *body = b.p;
      return reply(c, code, type, body, b.len, code == MHD_HTTP_UNAUTHORIZED ? "WWW-Authenticate" : NULL,
                   "Bearer realm=\"odsync\"");
    }
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
                        "not found: %.200s (this server has /, /metrics, /healthz, /readyz, /status; POST "
                        "/pipelines/NAME/pause|resume|snapshot, /config/reload)\n", url);
  }
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload_data;
  od_admin *a = cls;
  pthread_mutex_lock(&a->lock);
  enum MHD_Result r = handle_locked(a, c, url, method, upload_size, con_cls);
  pthread_mutex_unlock(&a->lock);
  return r;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  od_admin *a = cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  msg[strcspn(msg, "\n")] = '\0';
  od_debug("admin %s: %s", a->where, msg);
}

/* A PEM file into a NUL-terminated malloc'd buffer (at most 1 MiB). */
static int read_pem(const char *path, const char *what, const char *where, char **out, od_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return OD_FAIL(err, OD_ECONFIG, "%s: %s %s cannot be read: %s", where, what, path, strerror(errno));
  size_t cap = 1 << 20;
  char *buf = malloc(cap + 1);
  size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
  fclose(f);
  if (!buf) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", where);
  buf[n <= cap ? n : cap] = '\0';
  if (n == 0 || n > cap || !strstr(buf, "-----BEGIN")) {
    OPENSSL_cleanse(buf, cap + 1);
    free(buf);
    return OD_FAIL(err, OD_ECONFIG, "%s: %s %s is not a PEM file (expected -----BEGIN ...)", where, what, path);
  }
  *out = buf;
  return OD_OK;
}

static void free_admin(od_admin *a) {
  od_admin_auth_free(a->auth);
  free(a->tls_cert);
  if (a->tls_key) OPENSSL_cleanse(a->tls_key, strlen(a->tls_key));
  free(a->tls_key);
  if (a->status) od_status_free(a->status);
  pthread_mutex_destroy(&a->lock);
  free(a);
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
  pthread_mutex_init(&a->lock, NULL);
  snprintf(a->where, sizeof a->where, "%s:%d:%d: admin.listen %.64s", cfg->file, ac->line, ac->col, ac->listen);
  a->pipes = pipes;
  a->n = n;
  a->cfg = cfg;
  a->registry = registry;
  a->fd = -1;
  static const char *const routes[] = {"/metrics", "/healthz", "/readyz", "/status", "/", "other",
                                       "/pipelines/NAME/pause", "/pipelines/NAME/resume",
                                       "/pipelines/NAME/snapshot", "/config/reload"};
  static const char *const LBL[] = {"path", NULL};
  static const od_metric_family_def REQ = {.name = "odsync_admin_requests_total",
                                           .help = "Requests the admin server answered, by path (unknown paths: other)",
                                           .type = OD_METRIC_COUNTER,
                                           .labels = LBL};
  for (int i = 0; i < R_COUNT_; i++) {
    const char *v[] = {routes[i], NULL};
    a->requests[i] = od_metrics_series(od_metrics_family(registry, &REQ), v);
  }
  static const char *const VL[] = {"version", NULL};
  static const od_metric_family_def INFO = {
      .name = "odsync_build_info", .help = "odsync's version (always 1)", .type = OD_METRIC_GAUGE, .labels = VL};
  const char *ver[] = {ODSYNC_VERSION, NULL};
  od_gauge_set(od_metrics_series(od_metrics_family(registry, &INFO), ver), 1);

  int rc = od_admin_auth_new(ac, a->where, &a->auth, err);
  if (!rc && ac->tls_cert) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
      rc = OD_FAIL(err, OD_EUNSUPPORTED, "%s: admin.tls is set but this libmicrohttpd was built without TLS "
                   "(GnuTLS); install a build with HTTPS support or remove admin.tls", a->where);
    if (!rc) rc = read_pem(ac->tls_cert, "admin.tls.cert", a->where, &a->tls_cert, err);
    if (!rc) rc = read_pem(ac->tls_key, "admin.tls.key", a->where, &a->tls_key, err);
  }
  if (rc) {
    free_admin(a);
    return rc;
  }
  if (!(a->status = od_status_new(pipes, n))) {
    free_admin(a);
    return OD_FAIL(err, OD_ENOMEM, "admin: out of memory");
  }
  bool v6 = false;
  int fd = listen_socket(ac, &v6, err, a->where);
  if (fd < 0) {
    free_admin(a);
    return fd;
  }
  a->fd = fd;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   (v6 ? MHD_USE_IPv6 : 0) | (a->tls_cert ? MHD_USE_TLS : 0);
  /* The TLS options go first when set; MHD_OPTION_ARRAY keeps one call for both forms. */
  struct MHD_OptionItem tls[] = {
      {a->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, a->tls_cert},
      {a->tls_cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, a->tls_key},
      {MHD_OPTION_END, 0, NULL}};
  a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, a, MHD_OPTION_ARRAY, tls, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            (unsigned)MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a, MHD_OPTION_END);
  if (!a->mhd) {
    OD_FAIL(err, OD_EIO, "%s: the HTTP server (libmicrohttpd) did not start%s", a->where,
            a->tls_cert ? " (check that admin.tls.cert and admin.tls.key are a matching PEM certificate and key)" : "");
    close(fd);
    free_admin(a);
    return OD_EIO;
  }
  if (pthread_create(&a->sampler, NULL, sampler_main, a) == 0) a->sampler_started = true;
  bool auth = od_admin_auth_enabled(a->auth);
  od_info("admin: serving %s://%s%s%s:%d/ (metrics, healthz, readyz, status, dashboard; %s)",
          a->tls_cert ? "https" : "http", v6 ? "[" : "", ac->host, v6 ? "]" : "", ac->port,
          auth ? "authentication required: tokens/JWT with roles" : "no authentication (loopback only)");
  if (auth && !a->tls_cert && !ac->loopback)
    od_warn("%s: bearer tokens travel in clear text beyond loopback; set admin.tls (docs/SECURITY.md)", a->where);
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
  free_admin(a);
}

void od_admin_on_reload(od_admin *a, od_admin_reload_fn fn, void *ctx) {
  if (!a) return;
  pthread_mutex_lock(&a->lock);
  a->reload = fn;
  a->reload_ctx = ctx;
  pthread_mutex_unlock(&a->lock);
}

int od_admin_update(od_admin *a, const od_config *cfg, od_pipeline **pipes, int n, od_error *err) {
  if (!a) return OD_OK;
  /* Prepared outside the lock; nothing is replaced unless both are ready. The listen address and
   * the certificate stay those of the start (docs/SECURITY.md: they need a restart). */
  od_admin_auth *auth = NULL;
  int rc = od_admin_auth_new(&cfg->admin, a->where, &auth, err);
  if (rc) return rc;
  od_status_view *status = od_status_new(pipes, n);
  if (!status) {
    od_admin_auth_free(auth);
    return OD_FAIL(err, OD_ENOMEM, "admin: out of memory");
  }
  pthread_mutex_lock(&a->lock);
  od_admin_auth *old_auth = a->auth;
  od_status_view *old_status = a->status;
  od_status_keep_start(status, old_status);
  a->auth = auth;
  a->status = status;
  a->pipes = pipes;
  a->n = n;
  a->cfg = cfg;
  pthread_mutex_unlock(&a->lock);
  od_admin_auth_free(old_auth);
  od_status_free(old_status);
  return OD_OK;
}
