/* main.c — the odsync command line: run, check, snapshot, status, --help, --version.
 * Owns: signal handling and the process exit status. Everything else is the library's. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/dlq_cmd.h"
#include "cli/govern_cmd.h"
#include "cli/progress.h"
#include "cli/mesh_cli_util.h"
#include "cli/mesh_cmd.h"
#include "cli/mesh_join.h"
#include "cli/status_cmd.h"
#include "cli/supervisor.h"
#include "core/audit.h"
#include "cli/triggers_cmd.h"
#include "core/log.h"
#include "core/isnap.h"
#include "core/pipeline.h"
#include "core/metrics.h"
#include "server/admin.h"
#include "server/admin_action.h"
#include "server/alerts.h"
#include "server/otlp.h"
#include "odsync/change.h"
#include "odsync/config.h"

static const char usage[] =
    "odsync " ODSYNC_VERSION " — operational data store synchronizer\n"
    "\n"
    "usage: odsync <command> [options]\n"
    "\n"
    "commands:\n"
    "  run     run every pipeline of the config until SIGINT/SIGTERM, then drain and exit; a\n"
    "          pipeline that fails ends alone (exit status 1 once all have ended); SIGHUP\n"
    "          reloads the config file (changed pipelines restart, others run on)\n"
    "  check   validate the config and connect to every source and sink; one line per problem\n"
    "  snapshot  re-copy tables of a running pipeline while it streams (incremental snapshot):\n"
    "          writes a request into the source's stream and returns; needs -p when the config\n"
    "          has several pipelines; --table T (repeatable; default: every captured table)\n"
    "  install-triggers    create the change table and capture triggers of every postgres_trigger\n"
    "          and mariadb_trigger source (-p: only that pipeline); uninstall-triggers removes them\n"
    "  mesh join NODE  add NODE (its mesh.nodes entry has join_from: SEED) to a running mesh: copies\n"
    "          SEED into NODE while the mesh runs; NODE's pipelines start once it joined\n"
    "  mesh remove NODE  retire NODE from a running mesh (run it with the config that still lists\n"
    "          NODE, then delete NODE from mesh.nodes and restart): waits until the others applied\n"
    "          all NODE wrote (--timeout S; --force: do not), drops its slots, origin and rows\n"
    "  conflicts  print the conflict log of every node of the config's mesh (newest 100 per\n"
    "          node; --limit N)\n"
    "  status  print the status table of a running odsync (its admin server: admin.listen of\n"
    "          the config, or --url)\n"
    "  dlq     dead letters (poison rows): dlq list | show ID | replay ID|--all | drop ID\n"
    "          [-c FILE] [-p PIPELINE] [-s SINK] (odsync dlq --help)\n"
    "  audit verify  check the hash chain of the audit logs in state_dir (docs/AUDIT.md); exit 1\n"
    "          when a record was edited, deleted, moved or cut; --pipeline P for one\n"
    "  audit find ID  the batch records that applied the event with correlation id ID (HTTP\n"
    "          ingest): sink, positions, time; exit 1 when none holds it\n"
    "  lineage TABLE  where TABLE's rows come from: pipeline, source table, sink, transforms\n"
    "  scan    sample every captured table of the PostgreSQL sources and report columns that look\n"
    "          like PII, with a ready-to-paste transforms block (docs/PII.md); --rows N per table\n"
    "\n"
    "options:\n"
    "  -c, --config FILE     config file (default: odsync.yml)\n"
    "  -p, --pipeline NAME   only this pipeline (repeatable)\n"
    "  -t, --table T         snapshot: a captured table, schema.table (repeatable)\n"
    "  -u, --url URL         status: the admin server, e.g. http://127.0.0.1:7070\n"
    "  -r, --rows N          scan: rows sampled per table (default 1000)\n"
    "      --limit N         conflicts: the newest N per node (default 100)\n"
    "      --progress        live progress line (default when stderr is a terminal)\n"
    "      --no-progress     no progress line\n"
    "  -l, --log-level L     error|warn|info|debug (overrides log_level in the config)\n"
    "  -h, --help            this help\n"
    "  -V, --version         print the version\n"
    "\n"
    "Configuration keys: docs/CONFIG.md. Exit status: 0 ok, 1 a pipeline failed or check found\n"
    "problems, 2 usage or configuration error.\n";

typedef struct cli {
  const char *config_path;
  const char *only[64];
  int nonly;
  int progress; /* -1 auto, 0 off, 1 on */
  const char *log_level;
  const char *tables[256];
  int ntables;
  const char *url;
  long limit; /* conflicts: rows per node */
} cli;

static int parse_args(int argc, char **argv, cli *c) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"pipeline", required_argument, NULL, 'p'},
      {"progress", no_argument, NULL, 'P'},     {"no-progress", no_argument, NULL, 'N'},
      {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},      {"table", required_argument, NULL, 't'},
      {"url", required_argument, NULL, 'u'},    {"limit", required_argument, NULL, 'L'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "c:p:l:t:u:hV", opts, NULL)) != -1) {
    switch (ch) {
      case 'c': c->config_path = optarg; break;
      case 'p':
        if (c->nonly < 64) c->only[c->nonly++] = optarg;
        break;
      case 'P': c->progress = 1; break;
      case 'N': c->progress = 0; break;
      case 'l': c->log_level = optarg; break;
      case 'u': c->url = optarg; break;
      case 'L': {
        char *end = NULL;
        c->limit = strtol(optarg, &end, 10);
        if (!end || *end || c->limit < 1) {
          fputs("odsync: --limit needs a positive number\n", stderr);
          return 2;
        }
        break;
      }
      case 't':
        if (c->ntables >= 256) {
          fputs("odsync: too many --table options (256 at most)\n", stderr);
          return 2;
        }
        c->tables[c->ntables++] = optarg;
        break;
      case 'h': fputs(usage, stdout); exit(0);
      case 'V': printf("odsync %s\n", ODSYNC_VERSION); exit(0);
      default: fputs("run 'odsync --help' for usage\n", stderr); return 2;
    }
  }
  return 0;
}

static bool selected(const cli *c, const char *name) {
  if (!c->nonly) return true;
  for (int i = 0; i < c->nonly; i++)
    if (strcmp(c->only[i], name) == 0) return true;
  return false;
}

static int load_config(const cli *c, od_config **cfg) {
  od_error err;
  od_error_clear(&err);
  if (od_config_load(c->config_path, cfg, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    return 2;
  }
  const char *level = c->log_level ? c->log_level : (*cfg)->log_level;
  int lv = od_log_parse_level(level);
  if (lv < 0) {
    fprintf(stderr, "odsync: unknown log level '%s' (error, warn, info, debug)\n", level);
    od_config_free(*cfg);
    return 2;
  }
  od_log_set_level(lv);
  od_log_set_format(od_log_parse_format((*cfg)->log_format) == OD_LOG_JSON ? OD_LOG_JSON : OD_LOG_TEXT);
  for (int i = 0; i < c->nonly; i++) {
    bool found = false;
    for (int p = 0; p < (*cfg)->npipelines; p++) found |= strcmp((*cfg)->pipelines[p].name, c->only[i]) == 0;
    if (!found) {
      fprintf(stderr, "odsync: %s has no pipeline named '%s'\n", c->config_path, c->only[i]);
      od_config_free(*cfg);
      return 2;
    }
  }
  return 0;
}

/* ---- check ---- */

static void print_problem(void *ctx, bool fatal, const char *msg) {
  int *count = ctx;
  printf("%s: %s\n", fatal ? "error" : "warning", msg);
  if (fatal) (*count)++;
}

static int cmd_check(const cli *c) {
  od_config *cfg;
  int rc = load_config(c, &cfg);
  if (rc) return rc;
  od_log_set_level(OD_LOG_ERROR);
  int problems = 0;
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *pc = &cfg->pipelines[i];
    if (!selected(c, pc->name)) continue;
    int before = problems;
    /* A mesh pipeline's sinks are checked with every mesh key but without the mesh session (its
     * author's replication origin, held by a running mesh, and the mesh's DDL). */
    od_pipeline_config plain_pc = *pc;
    od_sink_config plain[OD_SINKS_MAX];
    int nplain = 0;
    while (nplain < pc->nsinks && nplain < OD_SINKS_MAX &&
           mesh_cli_sink_view(&pc->sinks[nplain], true, &plain[nplain]))
      nplain++;
    if (nplain < pc->nsinks) {
      for (int k = 0; k < nplain; k++) mesh_cli_sink_view_free(&pc->sinks[k], &plain[k]);
      fprintf(stderr, "odsync: out of memory\n");
      od_config_free(cfg);
      return 1;
    }
    plain_pc.sinks = plain;
    int n = od_pipeline_check(cfg, &plain_pc, print_problem, &problems);
    for (int k = 0; k < nplain; k++) mesh_cli_sink_view_free(&pc->sinks[k], &plain[k]);
    if (n < 0) problems++;
    if (problems == before) printf("ok: pipeline %s: source and sink ready\n", pc->name);
  }
  od_cli_mesh_check(cfg, print_problem, &problems); /* its findings are counted by print_problem */
  od_config_free(cfg);
  return problems ? 1 : 0;
}

/* ---- snapshot ---- */

static void print_request(void *ctx, const char *table) {
  printf("requested an incremental snapshot of %s (pipeline %s)\n", table, (const char *)ctx);
}

static int cmd_snapshot(const cli *c) {
  od_config *cfg;
  int rc = load_config(c, &cfg);
  if (rc) return rc;
  const od_pipeline_config *pc = NULL;
  if (c->nonly > 1 || (c->nonly == 0 && cfg->npipelines != 1)) {
    fprintf(stderr, "odsync: snapshot needs exactly one --pipeline (%s has %d pipelines)\n", c->config_path,
            cfg->npipelines);
    od_config_free(cfg);
    return 2;
  }
  for (int i = 0; i < cfg->npipelines; i++)
    if (selected(c, cfg->pipelines[i].name)) pc = &cfg->pipelines[i];
  od_error err;
  od_error_clear(&err);
  rc = pc ? od_isnap_request(pc, c->tables, c->ntables, print_request, (void *)pc->name, &err) : OD_EINVAL;
  if (rc) fprintf(stderr, "odsync: %s\n", pc ? err.msg : "no pipeline");
  od_config_free(cfg);
  /* A table that is not captured or cannot be copied is a usage error; anything else failed. */
  return rc == OD_OK ? 0 : (rc == OD_EINVAL || rc == OD_EUNSUPPORTED || rc == OD_ECONFIG) ? 2 : 1;
}

/* ---- run ---- */

static bool select_of(const void *ctx, const char *name) { return selected(ctx, name); }

/* SIGHUP: reload the config file (cli/supervisor.h); the outcome is logged. */
static void reload_on_signal(od_supervisor *sv) {
  od_sqlbuf body = {0};
  char detail[640];
  int code = od_supervisor_reload(sv, "signal:SIGHUP", &body, detail, sizeof detail);
  od_admin_record_action("signal:SIGHUP", "admin", "SIGHUP", "/config/reload", true, detail);
  if (code == 200) od_info("config reload (SIGHUP): %s", body.p ? body.p : "");
  od_sqlbuf_free(&body);
}

static int cmd_run(const cli *c) {
  od_config *cfg;
  int rc = load_config(c, &cfg);
  if (rc) return rc;
  /* Signals are taken synchronously by this thread; every other thread blocks them. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  od_error err;
  od_error_clear(&err);
  int exit_code = 0;
  if (od_audit_init(cfg, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    od_config_free(cfg);
    return 2;
  }
  /* The supervisor owns the config and the pipelines from here (and reloads them: SIGHUP, POST
   * /config/reload). */
  od_supervisor *sv = NULL;
  if (od_supervisor_new(cfg, c->nonly ? select_of : NULL, c, &sv, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    od_audit_shutdown();
    return 2;
  }
  cfg = NULL;
  const od_config *cur = od_supervisor_config(sv);
  int n;
  od_pipeline **pipes = od_supervisor_pipes(sv, &n);
  /* The admin server sees the pipelines from before they start (/readyz says 503 until they
   * stream); a port it cannot listen on stops everything before any pipeline starts. */
  od_admin *admin = NULL;
  if (cur->admin.enabled && od_admin_start(cur, pipes, n, od_metrics_global(), &admin, &err)) {
    od_error_log("%s", err.msg);
    exit_code = 1;
  }
  od_supervisor_attach_admin(sv, admin);
  /* Traces: installed before any apply thread runs, removed after all of them stopped. */
  od_otlp *otlp = NULL;
  if (exit_code == 0 && cur->tracing.enabled && od_otlp_start(cur, od_metrics_global(), &otlp, &err)) {
    od_error_log("%s", err.msg);
    exit_code = 1;
  }
  /* A pipeline that cannot start (or fails later) ends alone: the others keep running, and the
   * exit status says a pipeline failed once every pipeline has ended. */
  int started = exit_code == 0 ? od_supervisor_start(sv) : 0;
  bool progress = c->progress == 1 || (c->progress == -1 && isatty(STDERR_FILENO));
  od_progress prog;
  unsigned prog_gen = od_supervisor_generation(sv);
  bool prog_ready = progress && od_progress_init(&prog, pipes, n, isatty(STDERR_FILENO)) == 0;
  int64_t next_tick = od_mono_us();
  int64_t interval = prog_ready && prog.tty ? 500000 : 5000000;
  bool stopping = exit_code != 0 || started == 0;
  if (stopping) od_supervisor_request_stop(sv);
  while (!od_supervisor_all_finished(sv)) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
    int sig = sigtimedwait(&sigs, NULL, &ts);
    if (sig == SIGHUP) {
      if (stopping) od_info("received SIGHUP while stopping: no config reload");
      else reload_on_signal(sv);
    } else if (sig > 0) {
      if (stopping) {
        fprintf(stderr, "\nodsync: second signal, exiting without draining\n");
        _exit(130);
      }
      od_info("received %s: stopping (applying what is complete, then acknowledging)",
              sig == SIGINT ? "SIGINT" : "SIGTERM");
      stopping = true;
      od_supervisor_request_stop(sv);
    }
    if (!stopping) od_supervisor_poll(sv); /* a reload the admin server handed over */
    /* A failed pipeline has logged its error and ended; the others go on (the process exits, with
     * status 1, once every pipeline has ended). */
    if (prog_ready && od_supervisor_generation(sv) != prog_gen) { /* a reload changed the set */
      od_progress_free(&prog);
      prog_gen = od_supervisor_generation(sv);
      pipes = od_supervisor_pipes(sv, &n);
      bool tty = prog.tty;
      prog_ready = od_progress_init(&prog, pipes, n, tty) == 0;
    }
    if (prog_ready && od_mono_us() >= next_tick) {
      od_progress_tick(&prog);
      next_tick = od_mono_us() + interval;
    }
  }
  if (prog_ready) {
    od_progress_tick(&prog);
    od_progress_done(&prog);
    od_progress_free(&prog);
  }
  od_supervisor_attach_admin(sv, NULL);
  od_admin_stop(admin); /* before the pipelines it reads are freed */
  if (od_supervisor_free(sv)) exit_code = 1;
  od_otlp_stop(otlp);
  od_audit_shutdown();
  return exit_code;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
    printf("odsync %s\n", ODSYNC_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "dlq")) return od_cli_dlq(argc - 2, argv + 2);
  if (!strcmp(cmd, "audit")) return od_cli_audit(argc, argv);
  if (!strcmp(cmd, "lineage")) return od_cli_lineage(argc, argv);
  if (!strcmp(cmd, "scan")) return od_cli_scan(argc, argv);
  if (!strcmp(cmd, "mesh")) return od_cli_mesh(argc - 2, argv + 2);
  cli c = {.config_path = "odsync.yml", .progress = -1, .limit = 100};
  optind = 2;
  int rc = parse_args(argc, argv, &c);
  if (rc) return rc;
  if (c.url && strcmp(cmd, "status") != 0) {
    fputs("odsync: --url is only for 'odsync status'\n", stderr);
    return 2;
  }
  if (c.ntables && strcmp(cmd, "snapshot") != 0) {
    fputs("odsync: --table is only for 'odsync snapshot'\n", stderr);
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "odsync: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!strcmp(cmd, "run")) return cmd_run(&c);
  if (!strcmp(cmd, "check")) return cmd_check(&c);
  if (!strcmp(cmd, "snapshot")) return cmd_snapshot(&c);
  if (!strcmp(cmd, "status")) return od_cli_status(c.config_path, c.url);
  if (!strcmp(cmd, "install-triggers") || !strcmp(cmd, "uninstall-triggers"))
    return od_cli_triggers(c.config_path, c.only, c.nonly, cmd[0] == 'i');
  if (!strcmp(cmd, "conflicts")) {
    od_config *cfg;
    if ((rc = load_config(&c, &cfg))) return rc;
    rc = od_cli_conflicts(cfg, c.limit);
    od_config_free(cfg);
    return rc;
  }
  fprintf(stderr, "odsync: unknown command '%s' (run 'odsync --help')\n", cmd);
  return 2;
}
