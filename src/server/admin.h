/* admin.h — the admin HTTP server (libmicrohttpd): GET /metrics (Prometheus text), /healthz,
 * /readyz, /status (JSON; ?format=text for a terminal table; ?history=1 with chart series) and
 * / (the dashboard, compiled into the binary); with a role (admin_auth.h, docs/SECURITY.md)
 * POST /pipelines/NAME/pause|resume|snapshot (operator) and /config/reload (admin; done by the hook
 * the run command installs, od_admin_on_reload). HTTPS
 * when admin.tls is set.
 *
 * Owns: the listening socket, libmicrohttpd's daemon and its one polling thread, the sampler
 * thread (one status sample per second), the od_status_view. A slow or hostile client costs the
 * pipelines nothing: requests are served on the server's own thread from atomics and the
 * metrics registry; connections are capped (in total and per IP), time out when idle, and get
 * a small memory budget (huge headers are answered 431).
 * Owns also the credential checker (od_admin_auth) and the TLS certificate and key text (the key
 * wiped when freed). Borrows the pipelines and the config (they must outlive od_admin_stop) and
 * the metrics registry.
 * Never touches: a pipeline's lifecycle (it never stops or starts one itself: a reload is the
 * hook's; operators may pause its reading), sources and sinks except through od_isnap_request for a snapshot request (which
 * runs on the server's thread: the server answers nothing else while it connects).
 */
#ifndef ODSYNC_ADMIN_H
#define ODSYNC_ADMIN_H

#include "common/sqlbuf.h"
#include "core/metrics.h"
#include "core/pipeline.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_admin od_admin;

/* Start listening on cfg->admin (which must be enabled). The error names the address and the
 * config position ("FILE:LINE:COL: admin.listen 127.0.0.1:7070: address already in use"). */
int od_admin_start(const od_config *cfg, od_pipeline **pipes, int n, od_metrics *registry, od_admin **out,
                   od_error *err);
/* POST /config/reload (role admin): fn runs on the server's thread with no admin lock held (it may
 * call od_admin_update), fills the body and `detail` (for the audit record; no secret) and returns
 * the HTTP status. Without a hook the route answers 501. */
typedef int (*od_admin_reload_fn)(void *ctx, const char *who, od_sqlbuf *body, char *detail, size_t dsize);
void od_admin_on_reload(od_admin *a, od_admin_reload_fn fn, void *ctx);
/* A reload replaced the pipelines: serve these (borrowed, like cfg) from now on; the credentials
 * (admin.tokens, admin.jwt) are re-read from cfg->admin. The listen address and admin.tls stay as
 * started. The status history starts afresh. On error nothing changed. NULL a is ignored. */
int od_admin_update(od_admin *a, const od_config *cfg, od_pipeline **pipes, int n, od_error *err);
/* Stop serving, join the threads, free. NULL is ignored. */
void od_admin_stop(od_admin *a);

#endif
