/* supervisor.h — the running pipelines of `odsync run` and their config reload.
 *
 * The supervisor keeps the set of running pipelines and the configurations they were made from
 * ("generations": a pipeline borrows its generation's od_config, so a generation lives while one
 * of its pipelines does, and the current one always). A reload (SIGHUP or POST /config/reload)
 * re-reads the file and validates it completely (od_config_load, od_pipeline_validate for every
 * new or changed pipeline) before it touches anything; then pipelines whose effective config is
 * unchanged (core/config_diff.h) keep running untouched, changed ones are stopped (stop reading,
 * apply what is complete, acknowledge: a transaction boundary; the sink's checkpoint resumes them)
 * and started again from the new config, removed ones stop and added ones start. The admin server
 * and the alerts are handed the new set. Each reload, applied or refused, is one
 * `config_reload` record in the audit log (who, config hash before and after, what changed).
 *
 * Threads: everything runs on the run command's main thread. The admin server's reload hook (its
 * own thread) hands the request over and waits for od_supervisor_poll to serve it.
 * Owns: the pipelines, the generations, the alerts, the arrays handed to admin and alerts.
 * Borrows: the admin server (set by od_supervisor_attach_admin, must outlive the supervisor or be
 * detached with NULL). Never touches: signals, the process exit status, sources and sinks directly.
 */
#ifndef ODSYNC_CLI_SUPERVISOR_H
#define ODSYNC_CLI_SUPERVISOR_H

#include <stdbool.h>

#include "core/pipeline.h"
#include "odsync/config.h"
#include "odsync/error.h"
#include "server/admin.h"

typedef struct od_supervisor od_supervisor;
/* Which pipelines of a config this process runs (`odsync run -p NAME`); NULL: all. */
typedef bool (*od_sv_select_fn)(const void *ctx, const char *name);

/* Make (do not start) the selected pipelines of cfg; the supervisor owns cfg from here on, even
 * on error (then *out is NULL and cfg is freed by od_supervisor_free of nothing: it is freed). */
int od_supervisor_new(od_config *cfg, od_sv_select_fn select, const void *select_ctx, od_supervisor **out,
                      od_error *err);
/* The current configuration (valid until the next reload). */
const od_config *od_supervisor_config(const od_supervisor *sv);
/* The running pipelines (valid until the next reload; *n of them). */
od_pipeline **od_supervisor_pipes(const od_supervisor *sv, int *n);
/* Bumped by every applied reload: borrowed views of the pipelines must be taken again. */
unsigned od_supervisor_generation(const od_supervisor *sv);
/* Start the alerts (when possible) and every pipeline; returns how many pipelines started. */
int od_supervisor_start(od_supervisor *sv);
/* Serve reloads from this admin server (POST /config/reload) and keep it up to date; NULL detaches. */
void od_supervisor_attach_admin(od_supervisor *sv, od_admin *admin);
/* Reload now (SIGHUP). `who` is recorded ("signal:SIGHUP"). Result in body (JSON when applied,
 * a text line when refused); returns the HTTP-style status (200 applied, 400 refused, 500 partly). */
int od_supervisor_reload(od_supervisor *sv, const char *who, od_sqlbuf *body, char *detail, size_t dsize);
/* Serve a reload the admin server handed over, if any (call every ~100 ms from the main loop). */
void od_supervisor_poll(od_supervisor *sv);
/* Stop and wait: request every pipeline to stop. */
void od_supervisor_request_stop(od_supervisor *sv);
bool od_supervisor_all_finished(const od_supervisor *sv);
/* Join and free every pipeline (logging its totals); returns 1 when one ended with an error, else 0.
 * Then free the rest. Detach the admin server before (od_admin_stop). */
int od_supervisor_free(od_supervisor *sv);

#endif
