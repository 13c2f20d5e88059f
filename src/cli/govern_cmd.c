/* govern_cmd.c — see govern_cmd.h. */
#include "cli/govern_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/audit.h"
#include "core/lineage.h"
#include "core/log.h"
#include "core/pii_scan.h"
#include "odsync/config.h"

typedef struct gargs {
  const char *config;
  const char *only[64];
  int nonly;
  long rows;
  const char *positional[4];
  int npos;
} gargs;

static int parse(int argc, char **argv, gargs *g) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"pipeline", required_argument, NULL, 'p'},
                                       {"rows", required_argument, NULL, 'r'},
                                       {NULL, 0, NULL, 0}};
  g->config = "odsync.yml";
  g->rows = 1000;
  optind = 2;
  int ch;
  while ((ch = getopt_long(argc, argv, "c:p:r:", opts, NULL)) != -1) {
    switch (ch) {
      case 'c': g->config = optarg; break;
      case 'p':
        if (g->nonly < 64) g->only[g->nonly++] = optarg;
        break;
      case 'r': {
        char *end;
        g->rows = strtol(optarg, &end, 10);
        if (*end || g->rows < 10 || g->rows > 1000000) {
          fprintf(stderr, "odsync: --rows %s: expected a number of rows per table, 10..1000000\n", optarg);
          return 2;
        }
        break;
      }
      default: fputs("run 'odsync --help' for usage\n", stderr); return 2;
    }
  }
  while (optind < argc) {
    if (g->npos == 4) {
      fprintf(stderr, "odsync: unexpected argument '%s'\n", argv[optind]);
      return 2;
    }
    g->positional[g->npos++] = argv[optind++];
  }
  return 0;
}

static int load(const gargs *g, od_config **cfg) {
  od_error err;
  od_error_clear(&err);
  if (od_config_load(g->config, cfg, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    return 2;
  }
  for (int i = 0; i < g->nonly; i++) {
    bool found = false;
    for (int p = 0; p < (*cfg)->npipelines; p++) found |= !strcmp((*cfg)->pipelines[p].name, g->only[i]);
    if (!found) {
      fprintf(stderr, "odsync: %s has no pipeline named '%s'\n", g->config, g->only[i]);
      od_config_free(*cfg);
      return 2;
    }
  }
  return 0;
}

static bool selected(const gargs *g, const char *name) {
  if (!g->nonly) return true;
  for (int i = 0; i < g->nonly; i++)
    if (!strcmp(g->only[i], name)) return true;
  return false;
}

/* The batch records that carried an event's correlation id, in every selected pipeline's log: exit 0
 * when found, 1 when not (the event was not applied yet, or never arrived), 2 on an unreadable log. */
static int audit_find(const gargs *g, od_config *cfg) {
  int found = 0, unreadable = 0;
  for (int p = 0; p < cfg->npipelines; p++) {
    if (!selected(g, cfg->pipelines[p].name)) continue;
    od_error err;
    od_error_clear(&err);
    int n = od_audit_find(cfg->state_dir, cfg->pipelines[p].name, g->positional[1], stdout, &err);
    if (n < 0) {
      fprintf(stderr, "odsync: %s\n", err.msg);
      unreadable++;
    } else {
      found += n;
    }
  }
  od_config_free(cfg);
  if (!found) fprintf(stderr, "odsync: no batch record holds correlation id %s%s\n", g->positional[1],
                      unreadable ? " (some logs could not be read)" : "");
  return found ? 0 : unreadable ? 2 : 1;
}

int od_cli_audit(int argc, char **argv) {
  gargs g = {0};
  int rc = parse(argc, argv, &g);
  if (rc) return rc;
  bool find = g.npos == 2 && !strcmp(g.positional[0], "find");
  if (!find && (g.npos != 1 || strcmp(g.positional[0], "verify") != 0)) {
    fputs("odsync: usage: odsync audit verify -c FILE [--pipeline P]\n"
          "       odsync audit find CORRELATION_ID -c FILE [--pipeline P]\n", stderr);
    return 2;
  }
  od_config *cfg;
  if ((rc = load(&g, &cfg))) return rc;
  if (find) return audit_find(&g, cfg);
  int problems = 0, checked = 0;
  for (int p = 0; p < cfg->npipelines; p++) {
    if (!selected(&g, cfg->pipelines[p].name)) continue;
    od_error err;
    od_error_clear(&err);
    int n = od_audit_verify(cfg->state_dir, cfg->pipelines[p].name, stdout, &err);
    if (n < 0) {
      printf("problem: %s\n", err.msg);
      problems++;
      continue;
    }
    checked++;
    problems += n;
  }
  if (!g.nonly) { /* the process log (records of no pipeline), when there is one */
    char path[4096];
    snprintf(path, sizeof path, "%s/audit/odsync-process.jsonl", cfg->state_dir);
    struct stat st;
    if (stat(path, &st) == 0) {
      od_error err;
      int n = od_audit_verify(cfg->state_dir, NULL, stdout, &err);
      problems += n < 0 ? 1 : n;
    }
  }
  od_config_free(cfg);
  if (problems) printf("audit verify: %d problem%s found\n", problems, problems == 1 ? "" : "s");
  else printf("audit verify: %d log%s intact\n", checked, checked == 1 ? "" : "s");
  return problems ? 1 : 0;
}

int od_cli_lineage(int argc, char **argv) {
  gargs g = {0};
  int rc = parse(argc, argv, &g);
  if (rc) return rc;
  if (g.npos != 1) {
    fputs("odsync: usage: odsync lineage [-c FILE] TABLE (schema.table or table)\n", stderr);
    return 2;
  }
  od_config *cfg;
  if ((rc = load(&g, &cfg))) return rc;
  int n = od_lineage_print(cfg, g.positional[0], stdout);
  if (!n) fprintf(stderr, "odsync: no pipeline of %s captures a table named %s\n", g.config, g.positional[0]);
  od_config_free(cfg);
  return n ? 0 : 1;
}

int od_cli_scan(int argc, char **argv) {
  gargs g = {0};
  int rc = parse(argc, argv, &g);
  if (rc) return rc;
  if (g.npos) {
    fprintf(stderr, "odsync: unexpected argument '%s' (usage: odsync scan -c FILE [-p P] [--rows N])\n",
            g.positional[0]);
    return 2;
  }
  od_config *cfg;
  if ((rc = load(&g, &cfg))) return rc;
  od_log_set_level(od_log_parse_level(cfg->log_level));
  int failed = 0;
  for (int p = 0; p < cfg->npipelines; p++) {
    if (!selected(&g, cfg->pipelines[p].name)) continue;
    od_error err;
    od_error_clear(&err);
    if (od_pii_scan(&cfg->pipelines[p], (int)g.rows, stdout, &err)) {
      fprintf(stderr, "odsync: %s\n", err.msg);
      failed++;
    }
  }
  od_config_free(cfg);
  return failed ? 1 : 0;
}
