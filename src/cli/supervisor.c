/* supervisor.c — see supervisor.h. The reload is a plan (what is unchanged, changed, added,
 * removed), checked in full before anything stops, then carried out in a fixed order so the admin
 * server and the alerts never see a freed pipeline: they are handed the surviving pipelines before
 * the stopped ones are freed, and the complete new set once the new pipelines exist. */
#include "cli/supervisor.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/audit.h"
#include "core/clock.h"
#include "core/config_diff.h"
#include "core/isnap.h"
#include "core/log.h"
#include "core/metrics.h"
#include "server/admin_auth.h"
#include "server/alerts.h"

typedef struct gen {
  od_config *cfg; /* owned */
  int refs;       /* pipelines made from it, + 1 while it is the current one */
  struct gen *next;
} gen;

struct od_supervisor {
  gen *gens, *cur;
  od_pipeline **pipes; /* owned array of owned pipelines */
  gen **pgen;          /* pgen[i]: the generation pipes[i] borrows */
  int n;
  /* What the alerts borrow (rebuilt with the set). */
  const od_pipeline_config **pcfgs;
  od_pipeline_stats **pstats;
  od_alerts *alerts;
  od_admin *admin; /* borrowed */
  od_sv_select_fn select;
  const void *select_ctx;
  unsigned generation;
  bool failed; /* a pipeline stopped by a reload had ended with an error */
  char hash[65]; /* SHA-256 of the config file as last loaded */
  /* The admin server's hand-over (its thread waits, the main thread serves). */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool pending, served, closing;
  const char *req_who;
  od_sqlbuf *req_body;
  char *req_detail;
  size_t req_dsize;
  int req_code;
};

static bool is_selected(const od_supervisor *sv, const char *name) {
  return !sv->select || sv->select(sv->select_ctx, name);
}

static gen *gen_add(od_supervisor *sv, od_config *cfg) {
  gen *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->cfg = cfg;
  g->refs = 1; /* current */
  g->next = sv->gens;
  sv->gens = g;
  return g;
}

/* Drop one reference; free every generation nobody uses. */
static void gen_unref(od_supervisor *sv, gen *g) {
  if (g) g->refs--;
  for (gen **pp = &sv->gens; *pp;) {
    gen *x = *pp;
    if (x->refs <= 0) {
      *pp = x->next;
      od_config_free(x->cfg);
      free(x);
    } else {
      pp = &x->next;
    }
  }
}

/* Join and free one pipeline, logging its totals; true when it had ended with an error. */
static bool finish_pipe(od_pipeline *p) {
  od_error perr;
  od_error_clear(&perr);
  bool failed = od_pipeline_wait(p, &perr) != OD_OK;
  od_pipeline_stats *st = od_pipeline_get_stats(p);
  char at[OD_POS_TEXT_MAX];
  od_pos durable = od_pos_cell_get(&st->durable);
  od_info("pipeline %s: stopped; %llu changes in %llu transactions applied, checkpoint %s", od_pipeline_name(p),
          (unsigned long long)od_stats_changes_applied(st), (unsigned long long)od_stats_txns_applied(st),
          od_pos_display(&durable, at, sizeof at));
  od_pipeline_free(p);
  return failed;
}

/* Install a new set (arrays owned by the caller until then); rebuild the alerts' arrays and hand the
 * set to the admin server. The old arrays are freed; the pipelines in them are not. */
static int set_pipes(od_supervisor *sv, od_pipeline **pipes, gen **pgen, int n, const od_config *admin_cfg,
                     od_error *err) {
  const od_pipeline_config **pcfgs = calloc((size_t)n + 1, sizeof *pcfgs);
  od_pipeline_stats **pstats = calloc((size_t)n + 1, sizeof *pstats);
  if (!pcfgs || !pstats) {
    free(pcfgs);
    free(pstats);
    return OD_FAIL(err, OD_ENOMEM, "config reload: out of memory");
  }
  for (int i = 0; i < n; i++) {
    pcfgs[i] = od_pipeline_config_of(pipes[i]);
    pstats[i] = od_pipeline_get_stats(pipes[i]);
  }
  int rc = od_admin_update(sv->admin, admin_cfg, pipes, n, err);
  if (rc) {
    free(pcfgs);
    free(pstats);
    return rc;
  }
  if (sv->pipes != pipes) free(sv->pipes);
  if (sv->pgen != pgen) free(sv->pgen);
  free(sv->pcfgs);
  free(sv->pstats);
  sv->pipes = pipes;
  sv->pgen = pgen;
  sv->n = n;
  sv->pcfgs = pcfgs;
  sv->pstats = pstats;
  return OD_OK;
}

static void alerts_restart(od_supervisor *sv) {
  od_alerts_free(sv->alerts);
  sv->alerts = od_alerts_new(od_metrics_global(), sv->pcfgs, sv->pstats, sv->n);
  if (sv->alerts && od_alerts_start(sv->alerts) != 0) od_warn("alerts: cannot start their threads; no alerts");
}

int od_supervisor_new(od_config *cfg, od_sv_select_fn select, const void *select_ctx, od_supervisor **out,
                      od_error *err) {
  *out = NULL;
  od_supervisor *sv = calloc(1, sizeof *sv);
  if (!sv) {
    od_config_free(cfg);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&sv->mu, NULL);
  pthread_cond_init(&sv->cv, NULL);
  sv->select = select;
  sv->select_ctx = select_ctx;
  sv->cur = gen_add(sv, cfg);
  od_audit_file_hash(cfg->file, sv->hash);
  sv->pipes = calloc((size_t)cfg->npipelines + 1, sizeof *sv->pipes);
  sv->pgen = calloc((size_t)cfg->npipelines + 1, sizeof *sv->pgen);
  sv->pcfgs = calloc((size_t)cfg->npipelines + 1, sizeof *sv->pcfgs);
  sv->pstats = calloc((size_t)cfg->npipelines + 1, sizeof *sv->pstats);
  if (!sv->cur || !sv->pipes || !sv->pgen || !sv->pcfgs || !sv->pstats) {
    if (!sv->cur) od_config_free(cfg);
    od_supervisor_free(sv);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  for (int i = 0; i < cfg->npipelines; i++) {
    if (!is_selected(sv, cfg->pipelines[i].name)) continue;
    int rc = od_pipeline_new(cfg, &cfg->pipelines[i], &sv->pipes[sv->n], err);
    if (rc) {
      od_supervisor_free(sv);
      return rc;
    }
    sv->pgen[sv->n] = sv->cur;
    sv->cur->refs++;
    sv->pcfgs[sv->n] = &cfg->pipelines[i];
    sv->pstats[sv->n] = od_pipeline_get_stats(sv->pipes[sv->n]);
    sv->n++;
  }
  *out = sv;
  return OD_OK;
}

const od_config *od_supervisor_config(const od_supervisor *sv) { return sv->cur->cfg; }

od_pipeline **od_supervisor_pipes(const od_supervisor *sv, int *n) {
  *n = sv->n;
  return sv->pipes;
}

unsigned od_supervisor_generation(const od_supervisor *sv) { return sv->generation; }

int od_supervisor_start(od_supervisor *sv) {
  /* Alerts and anomaly detection judge every pipeline once a second (server/alerts.h). */
  alerts_restart(sv);
  int started = 0;
  for (int i = 0; i < sv->n; i++) {
    od_error err;
    od_error_clear(&err);
    if (od_pipeline_start(sv->pipes[i], &err)) {
      od_error_log("%s", err.msg);
      continue;
    }
    started++;
  }
  return started;
}

static int reload_hook(void *ctx, const char *who, od_sqlbuf *body, char *detail, size_t dsize);

void od_supervisor_attach_admin(od_supervisor *sv, od_admin *admin) {
  if (sv->admin) od_admin_on_reload(sv->admin, NULL, NULL);
  sv->admin = admin;
  if (admin) od_admin_on_reload(admin, reload_hook, sv);
}

/* ---- the reload ------------------------------------------------------------------------------ */

#define OD_SV_MAX 256 /* pipelines of one process */

enum { KEEP, CHANGED, ADDED };

typedef struct plan {
  const od_pipeline_config *pc[OD_SV_MAX]; /* the selected pipelines of the new config, in order */
  int what[OD_SV_MAX];                     /* KEEP, CHANGED, ADDED */
  int parts[OD_SV_MAX];                    /* CHANGED: which parts (core/config_diff.h) */
  int old[OD_SV_MAX];                      /* KEEP, CHANGED: index in sv->pipes */
  /* CHANGED: tables new in source.tables (pointers into the new config; the array is owned):
   * their rows from before are copied by an incremental snapshot once the pipeline restarts. */
  const char **new_tables[OD_SV_MAX];
  int nnew_tables[OD_SV_MAX];
  int n;
  bool removed[OD_SV_MAX];                 /* by old index */
  int nremoved;
  od_sqlbuf removed_names;                 /* JSON strings of the removed pipelines, comma-separated */
} plan;

static void json_names(od_sqlbuf *b, const char *key, const plan *pl, int what) {
  od_sqlbuf_addf(b, ",\"%s\":[", key);
  int k = 0;
  for (int i = 0; i < pl->n; i++)
    if (pl->what[i] == what) {
      if (k++) od_sqlbuf_add(b, ",");
      od_audit_json_str(b, pl->pc[i]->name);
    }
  od_sqlbuf_add(b, "]");
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

/* The entries of new source.tables that old source.tables does not list (as written). */
static int tables_added(const od_pipeline_config *old, const od_pipeline_config *nw, plan *pl, int k) {
  const od_config_entry *ot = od_config_find(&old->source, "tables"), *nt = od_config_find(&nw->source, "tables");
  if (!nt || !nt->list || !ot || !ot->list) return OD_OK; /* "every table" on either side: nothing named */
  pl->new_tables[k] = calloc((size_t)nt->nlist + 1, sizeof *pl->new_tables[k]);
  if (!pl->new_tables[k]) return OD_ENOMEM;
  for (int i = 0; i < nt->nlist; i++) {
    bool known = false;
    for (int j = 0; j < ot->nlist && !known; j++) known = !strcmp(nt->list[i], ot->list[j]);
    if (!known) pl->new_tables[k][pl->nnew_tables[k]++] = nt->list[i];
  }
  return OD_OK;
}

static void plan_free(plan *pl) {
  for (int k = 0; k < pl->n; k++) free(pl->new_tables[k]);
  od_sqlbuf_free(&pl->removed_names);
  free(pl);
}

static void snap_report(void *ctx, const char *table) {
  od_sqlbuf *b = ctx;
  od_sqlbuf_addf(b, "%s", b->len && b->p[b->len - 1] != '[' ? "," : "");
  od_audit_json_str(b, table);
}

/* Everything that can refuse the new config, before anything changes. */
static int make_plan(od_supervisor *sv, const od_config *ncfg, plan *pl, od_error *err) {
  const od_config *ocfg = sv->cur->cfg;
  memset(pl, 0, sizeof *pl);
  if (!str_eq(ocfg->state_dir, ncfg->state_dir))
    return OD_FAIL(err, OD_ECONFIG, "%s: state_dir changed from %s to %s: the state directory cannot change while "
                   "odsync runs (checkpoint locks, audit log); restart odsync to move it", ncfg->file,
                   ocfg->state_dir, ncfg->state_dir);
  for (int i = 0; i < ncfg->npipelines; i++) {
    const od_pipeline_config *pc = &ncfg->pipelines[i];
    if (!is_selected(sv, pc->name)) continue;
    if (pl->n == OD_SV_MAX)
      return OD_FAIL(err, OD_ECONFIG, "%s: more than %d pipelines in one process", ncfg->file, OD_SV_MAX);
    int k = pl->n++;
    pl->pc[k] = pc;
    pl->what[k] = ADDED;
    pl->old[k] = -1;
    for (int j = 0; j < sv->n; j++)
      if (!strcmp(od_pipeline_name(sv->pipes[j]), pc->name)) {
        pl->old[k] = j;
        pl->parts[k] = od_config_pipeline_diff(sv->pgen[j]->cfg, od_pipeline_config_of(sv->pipes[j]), ncfg, pc);
        pl->what[k] = pl->parts[k] ? CHANGED : KEEP;
        if ((pl->parts[k] & OD_CFGPART_SOURCE) &&
            tables_added(od_pipeline_config_of(sv->pipes[j]), pc, pl, k) != OD_OK)
          return OD_FAIL(err, OD_ENOMEM, "config reload: out of memory");
      }
    if (pl->what[k] != KEEP) {
      int rc = od_pipeline_validate(ncfg, pc, err);
      if (rc) return rc;
    }
  }
  if (pl->n == 0)
    return OD_FAIL(err, OD_ECONFIG, "%s: no pipeline of this process is left in the new config (a reload never "
                   "stops every pipeline; stop odsync instead)", ncfg->file);
  for (int j = 0; j < sv->n; j++) {
    pl->removed[j] = true;
    for (int k = 0; k < pl->n; k++)
      if (pl->old[k] == j) pl->removed[j] = false;
    if (pl->removed[j]) {
      od_sqlbuf_addf(&pl->removed_names, "%s", pl->nremoved++ ? "," : "");
      od_audit_json_str(&pl->removed_names, od_pipeline_name(sv->pipes[j]));
    }
  }
  /* The admin credentials must load (an RS256 key file that cannot be read refuses the reload). */
  if (sv->admin && ncfg->admin.enabled) {
    od_admin_auth *probe = NULL;
    char where[160];
    snprintf(where, sizeof where, "%s:%d:%d: admin", ncfg->file, ncfg->admin.line, ncfg->admin.col);
    int rc = od_admin_auth_new(&ncfg->admin, where, &probe, err);
    od_admin_auth_free(probe);
    if (rc) return rc;
  }
  return OD_OK;
}

/* What of the root sections takes effect only at a restart, as a JSON array of notes. */
static void restart_notes(od_sqlbuf *b, const od_supervisor *sv, const od_config *o, const od_config *nc,
                          bool *auth_changed) {
  bool listen_changed = false;
  *auth_changed = od_config_admin_auth_changed(&o->admin, &nc->admin, &listen_changed);
  int k = 0;
  od_sqlbuf_add(b, ",\"needs_restart\":[");
#define NOTE(cond, text)                              \
  if (cond) {                                         \
    od_sqlbuf_addf(b, "%s\"%s\"", k++ ? "," : "", text); \
  }
  NOTE(listen_changed || (o->admin.enabled != nc->admin.enabled),
       "admin.listen/admin.tls: the admin server keeps its address and certificate until odsync restarts");
  NOTE(!sv->admin && nc->admin.enabled && !o->admin.enabled, "admin: the admin server starts at the next restart");
  NOTE(o->tracing.enabled != nc->tracing.enabled || !str_eq(o->tracing.endpoint, nc->tracing.endpoint) ||
           o->tracing.sample_ratio != nc->tracing.sample_ratio,
       "tracing: takes effect at the next restart");
  NOTE(o->audit.enabled != nc->audit.enabled || o->audit.max_bytes != nc->audit.max_bytes ||
           o->audit.fsync_ms != nc->audit.fsync_ms,
       "audit: takes effect at the next restart");
  NOTE(!str_eq(o->log_format, nc->log_format), "log.format: takes effect at the next restart");
#undef NOTE
  od_sqlbuf_add(b, "]");
}

static void wait_stopped(od_supervisor *sv, const plan *pl) {
  int64_t next_note = od_mono_us() + 10 * 1000000LL;
  for (;;) {
    bool all = true;
    for (int j = 0; j < sv->n; j++) {
      bool stopping = pl->removed[j];
      for (int k = 0; k < pl->n; k++)
        if (pl->old[k] == j && pl->what[k] == CHANGED) stopping = true;
      if (stopping && !od_pipeline_finished(sv->pipes[j])) {
        all = false;
        if (od_mono_us() >= next_note) od_info("config reload: waiting for pipeline %s to stop", od_pipeline_name(sv->pipes[j]));
      }
    }
    if (all) return;
    if (od_mono_us() >= next_note) next_note = od_mono_us() + 10 * 1000000LL;
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 50 * 1000000L}, NULL);
  }
}

static int refuse(const char *who, const char *before, const char *after, const od_error *err, od_sqlbuf *body,
                  char *detail, size_t dsize) {
  od_error_log("config reload by %s refused: %s; nothing changed, every pipeline runs as before", who, err->msg);
  od_sqlbuf_addf(body, "config reload refused: %s\nnothing changed: every pipeline runs as before\n", err->msg);
  snprintf(detail, dsize, "config reload refused: %.500s", err->msg);
  od_sqlbuf rec = {0};
  od_sqlbuf_add(&rec, "\"by\":");
  od_audit_json_str(&rec, who);
  od_sqlbuf_addf(&rec, ",\"config_before\":\"%s\",\"config_after\":\"%s\",\"result\":\"refused\",\"error\":", before,
                 after);
  od_audit_json_str(&rec, err->msg);
  if (!rec.oom) od_audit_record(NULL, "config_reload", rec.p);
  od_sqlbuf_free(&rec);
  return 400;
}

int od_supervisor_reload(od_supervisor *sv, const char *who, od_sqlbuf *body, char *detail, size_t dsize) {
  const od_config *ocfg = sv->cur->cfg;
  char before[65], after[65];
  snprintf(before, sizeof before, "%s", sv->hash);
  od_audit_file_hash(ocfg->file, after);
  od_error err;
  od_error_clear(&err);
  od_config *ncfg = NULL;
  od_info("config reload by %s: reading %s", who, ocfg->file);
  if (od_config_load(ocfg->file, &ncfg, &err)) return refuse(who, before, after, &err, body, detail, dsize);
  plan *pl = calloc(1, sizeof *pl);
  if (!pl) {
    od_config_free(ncfg);
    OD_FAIL(&err, OD_ENOMEM, "out of memory");
    return refuse(who, before, after, &err, body, detail, dsize);
  }
  if (make_plan(sv, ncfg, pl, &err)) {
    od_config_free(ncfg);
    plan_free(pl);
    return refuse(who, before, after, &err, body, detail, dsize);
  }
  /* From here on the new config is applied. */
  gen *ng = gen_add(sv, ncfg);
  if (!ng) {
    od_config_free(ncfg);
    plan_free(pl);
    OD_FAIL(&err, OD_ENOMEM, "out of memory");
    return refuse(who, before, after, &err, body, detail, dsize);
  }
  od_alerts_free(sv->alerts); /* they borrow the stats of pipelines about to be freed */
  sv->alerts = NULL;
  for (int j = 0; j < sv->n; j++) {
    bool stop = pl->removed[j];
    for (int k = 0; k < pl->n; k++)
      if (pl->old[k] == j && pl->what[k] == CHANGED) stop = true;
    if (stop) {
      od_info("config reload: stopping pipeline %s (%s)", od_pipeline_name(sv->pipes[j]),
              pl->removed[j] ? "removed from the config" : "its config changed");
      od_pipeline_request_stop(sv->pipes[j]);
    }
  }
  wait_stopped(sv, pl);
  /* The survivors first (admin and alerts never see a freed pipeline), then the stopped ones go. */
  od_pipeline **np = calloc((size_t)pl->n + 1, sizeof *np);
  gen **ngen = calloc((size_t)pl->n + 1, sizeof *ngen);
  od_pipeline **gone = calloc((size_t)sv->n + 1, sizeof *gone);
  gen **gone_gen = calloc((size_t)sv->n + 1, sizeof *gone_gen);
  int nn = 0, ngone = 0, failed_new = 0;
  od_sqlbuf fails = {0};
  if (!np || !ngen || !gone || !gone_gen) {
    /* Nothing was freed yet: keep the old set (the stopped pipelines stay stopped) and say so. */
    free(np);
    free(ngen);
    free(gone);
    free(gone_gen);
    plan_free(pl);
    gen_unref(sv, ng);
    alerts_restart(sv);
    od_sqlbuf_add(body, "config reload failed: out of memory after stopping the changed pipelines; restart odsync\n");
    snprintf(detail, dsize, "config reload failed: out of memory");
    return 500;
  }
  for (int k = 0; k < pl->n; k++)
    if (pl->what[k] == KEEP) {
      np[nn] = sv->pipes[pl->old[k]];
      ngen[nn++] = sv->pgen[pl->old[k]];
    }
  for (int j = 0; j < sv->n; j++) {
    bool kept = false;
    for (int i = 0; i < nn; i++) kept |= np[i] == sv->pipes[j];
    if (!kept) {
      gone[ngone] = sv->pipes[j];
      gone_gen[ngone++] = sv->pgen[j];
    }
  }
  int nkept = nn;
  if (set_pipes(sv, np, ngen, nn, sv->cur->cfg, &err)) od_warn("config reload: %s", err.msg);
  for (int i = 0; i < ngone; i++) {
    sv->failed |= finish_pipe(gone[i]);
    gen_unref(sv, gone_gen[i]);
  }
  free(gone);
  free(gone_gen);
  /* The changed and added pipelines, from the new config, in its order after the kept ones. */
  od_pipeline **fresh = calloc((size_t)pl->n + 1, sizeof *fresh);
  int nfresh = 0;
  for (int k = 0; k < pl->n && fresh; k++) {
    if (pl->what[k] == KEEP) continue;
    od_pipeline *p = NULL;
    if (od_pipeline_new(ncfg, pl->pc[k], &p, &err)) {
      od_error_log("config reload: pipeline %s: %s", pl->pc[k]->name, err.msg);
      od_sqlbuf_addf(&fails, "%s", failed_new++ ? "," : "");
      od_audit_json_str(&fails, pl->pc[k]->name);
      continue;
    }
    np[nn] = p;
    ngen[nn++] = ng;
    ng->refs++;
    fresh[nfresh++] = p;
  }
  gen *old_cur = sv->cur;
  sv->cur = ng;
  if (set_pipes(sv, np, ngen, nn, ncfg, &err)) od_warn("config reload: %s", err.msg);
  alerts_restart(sv);
  for (int i = 0; i < nfresh; i++) {
    od_error serr;
    od_error_clear(&serr);
    if (od_pipeline_start(fresh[i], &serr)) {
      od_error_log("config reload: %s", serr.msg);
      od_sqlbuf_addf(&fails, "%s", failed_new++ ? "," : "");
      od_audit_json_str(&fails, od_pipeline_name(fresh[i]));
    }
  }
  free(fresh);
  /* Tables added to a restarted pipeline's source: the stream has their changes from now on, an
   * incremental snapshot brings the rows from before (as `odsync snapshot` would). */
  od_sqlbuf snaps = {0};
  od_sqlbuf_add(&snaps, "{");
  for (int k = 0, c = 0; k < pl->n; k++) {
    if (!pl->nnew_tables[k]) continue;
    od_sqlbuf_add(&snaps, c++ ? "," : "");
    od_audit_json_str(&snaps, pl->pc[k]->name);
    od_sqlbuf_add(&snaps, ":[");
    od_error serr;
    od_error_clear(&serr);
    if (od_isnap_request(pl->pc[k], pl->new_tables[k], pl->nnew_tables[k], snap_report, &snaps, &serr))
      od_warn("config reload: pipeline %s: tables were added but their rows from before cannot be copied now: %s; "
              "run odsync snapshot -p %s -t TABLE for each once it streams", pl->pc[k]->name, serr.msg,
              pl->pc[k]->name);
    od_sqlbuf_add(&snaps, "]");
  }
  od_sqlbuf_add(&snaps, "}");
  sv->generation++;
  if (!str_eq(ocfg->log_level, ncfg->log_level) && ncfg->log_level) {
    int lv = od_log_parse_level(ncfg->log_level);
    if (lv >= 0) od_log_set_level(lv);
  }
  od_audit_set_config_hash(after);
  /* The answer and the record share the summary (old pipelines' names were read above: sv->pipes
   * now holds the new set, so the removed names are taken from the plan's configs). */
  od_sqlbuf sum = {0};
  od_sqlbuf_add(&sum, "\"by\":");
  od_audit_json_str(&sum, who);
  od_sqlbuf_addf(&sum, ",\"config_before\":\"%s\",\"config_after\":\"%s\"", before, after);
  json_names(&sum, "unchanged", pl, KEEP);
  od_sqlbuf_add(&sum, ",\"restarted\":{");
  for (int i = 0, c = 0; i < pl->n; i++)
    if (pl->what[i] == CHANGED) {
      char parts[128];
      od_config_parts_text(pl->parts[i], parts, sizeof parts);
      if (c++) od_sqlbuf_add(&sum, ",");
      od_audit_json_str(&sum, pl->pc[i]->name);
      od_sqlbuf_add(&sum, ":");
      od_audit_json_str(&sum, parts);
    }
  od_sqlbuf_add(&sum, "}");
  json_names(&sum, "added", pl, ADDED);
  od_sqlbuf_addf(&sum, ",\"removed\":[%s]", pl->removed_names.p ? pl->removed_names.p : "");
  od_sqlbuf_addf(&sum, ",\"snapshots_requested\":%s", snaps.p);
  bool auth_changed = false;
  restart_notes(&sum, sv, ocfg, ncfg, &auth_changed);
  od_sqlbuf_addf(&sum, ",\"admin_credentials\":\"%s\"",
                 !sv->admin ? "no admin server" : auth_changed ? "reloaded" : "unchanged");
  if (failed_new) od_sqlbuf_addf(&sum, ",\"failed\":[%s]", fails.p);
  int code = failed_new ? 500 : 200;
  od_sqlbuf_addf(&sum, ",\"result\":\"%s\"", failed_new ? "applied, some pipelines did not start" : "applied");
  if (!sum.oom) {
    od_audit_record(NULL, "config_reload", sum.p);
    od_sqlbuf_addf(body, "{%s}\n", sum.p);
  }
  od_info("config reload by %s applied: %d unchanged, %d restarted or added, %d removed%s", who, nkept,
          pl->n - nkept, pl->nremoved, failed_new ? "; some pipelines did not start" : "");
  snprintf(sv->hash, sizeof sv->hash, "%s", after);
  snprintf(detail, dsize, "config reload applied (config %.12s -> %.12s)", before, after);
  od_sqlbuf_free(&sum);
  od_sqlbuf_free(&fails);
  od_sqlbuf_free(&snaps);
  plan_free(pl);
  gen_unref(sv, old_cur); /* no longer current (ocfg may be freed here) */
  return code;
}

/* ---- hand-over from the admin server's thread ------------------------------------------------ */

static int reload_hook(void *ctx, const char *who, od_sqlbuf *body, char *detail, size_t dsize) {
  od_supervisor *sv = ctx;
  pthread_mutex_lock(&sv->mu);
  int code = 503;
  if (!sv->closing && !sv->pending) {
    sv->pending = true;
    sv->served = false;
    sv->req_who = who;
    sv->req_body = body;
    sv->req_detail = detail;
    sv->req_dsize = dsize;
    while (!sv->served && !sv->closing) pthread_cond_wait(&sv->cv, &sv->mu);
    code = sv->served ? sv->req_code : 503;
    sv->pending = false;
  }
  pthread_mutex_unlock(&sv->mu);
  if (code == 503) {
    od_sqlbuf_add(body, "odsync is stopping: no config reload now\n");
    snprintf(detail, dsize, "config reload not done: odsync is stopping");
  }
  return code;
}

void od_supervisor_poll(od_supervisor *sv) {
  pthread_mutex_lock(&sv->mu);
  bool take = sv->pending && !sv->served && !sv->closing;
  pthread_mutex_unlock(&sv->mu);
  if (!take) return;
  /* The requester waits on its own thread; the request's fields are stable until served is set. */
  int code = od_supervisor_reload(sv, sv->req_who, sv->req_body, sv->req_detail, sv->req_dsize);
  pthread_mutex_lock(&sv->mu);
  sv->req_code = code;
  sv->served = true;
  pthread_cond_broadcast(&sv->cv);
  pthread_mutex_unlock(&sv->mu);
}

void od_supervisor_request_stop(od_supervisor *sv) {
  pthread_mutex_lock(&sv->mu);
  sv->closing = true;
  pthread_cond_broadcast(&sv->cv);
  pthread_mutex_unlock(&sv->mu);
  for (int i = 0; i < sv->n; i++) od_pipeline_request_stop(sv->pipes[i]);
}

bool od_supervisor_all_finished(const od_supervisor *sv) {
  for (int i = 0; i < sv->n; i++)
    if (!od_pipeline_finished(sv->pipes[i])) return false;
  return true;
}

int od_supervisor_free(od_supervisor *sv) {
  if (!sv) return 0;
  od_alerts_free(sv->alerts);
  int failed = sv->failed;
  for (int i = 0; i < sv->n; i++) {
    if (sv->pipes[i] && finish_pipe(sv->pipes[i])) failed = 1;
    if (sv->pgen) gen_unref(sv, sv->pgen[i]);
  }
  gen *cur = sv->cur;
  sv->cur = NULL;
  if (cur) gen_unref(sv, cur);
  free(sv->pipes);
  free(sv->pgen);
  free(sv->pcfgs);
  free(sv->pstats);
  pthread_mutex_destroy(&sv->mu);
  pthread_cond_destroy(&sv->cv);
  free(sv);
  return failed;
}
