/* mesh_plugin.c — `odsync check` of a mesh: which output plugin each mesh pipeline's slot uses or
 * will use (docs/MULTI_MASTER.md, "The echo"). Per pipeline whose source has mesh_node: the slot's
 * plugin when it exists (it keeps it); else whether the node can load odsync_pgoutput, tried the way
 * slot creation would load it: a temporary logical slot with that plugin, dropped at once (and gone
 * with the connection anyway; at most 10 s, so a long transaction at the node cannot hang check).
 * Owns: its connections and results, closed before returning. Writes nothing but that temporary slot.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/mesh_cmd.h"

static const char *entry(const od_config_section *s, const char *key, const char *def) {
  const od_config_entry *e = od_config_find(s, key);
  return e && e->value ? e->value : def;
}

/* 1: loadable, 0: not (why in msg), -1: could not tell (why in msg). */
static int probe(PGconn *c, char *msg, size_t cap) {
  char name[64];
  snprintf(name, sizeof name, "odsync_check_probe_%d", (int)getpid());
  PQclear(PQexec(c, "SET statement_timeout = '10s'"));
  const char *p[] = {name};
  PGresult *r = PQexecParams(c, "SELECT pg_create_logical_replication_slot($1, 'odsync_pgoutput', true)", 1, NULL, p,
                             NULL, NULL, 0);
  int rc = 1;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    snprintf(msg, cap, "%s", PQresultErrorMessage(r));
    msg[strcspn(msg, "\n")] = '\0';
    rc = strstr(msg, "odsync_pgoutput") ? 0 : -1;
  } else {
    PQclear(PQexecParams(c, "SELECT pg_drop_replication_slot($1)", 1, NULL, p, NULL, NULL, 0));
  }
  PQclear(r);
  return rc;
}

int od_cli_mesh_plugin_check(const od_config *cfg, void (*problem)(void *ctx, bool fatal, const char *msg),
                             void *ctx) {
  int fatal = 0;
  char msg[1024], why[512];
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *pl = &cfg->pipelines[i];
    const od_config_section *src = &pl->source;
    const char *node = entry(src, "mesh_node", NULL), *dsn = entry(src, "dsn", NULL);
    if (!node || !dsn) continue;
    const char *mode = entry(src, "mesh_output_plugin", "auto");
    char def[80], slot[80]; /* the source's default slot name: odsync_<pipeline>, lower case */
    snprintf(def, sizeof def, "odsync_%s", pl->name);
    for (char *q = def; *q; q++)
      if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
    snprintf(slot, sizeof slot, "%s", entry(src, "slot", def));
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {"10", "odsync_check", dsn, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) { /* od_cli_mesh_check reports the connection */
      PQfinish(c);
      continue;
    }
    const char *p[] = {slot};
    PGresult *r = PQexecParams(c, "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", 1, NULL, p, NULL,
                               NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      const char *plugin = PQgetvalue(r, 0, 0);
      printf("ok: pipeline %s: node %s is read through %s (slot %s)%s\n", pl->name, node, plugin, slot,
             strcmp(plugin, "odsync_pgoutput") == 0 ? "" : ": the echo is sent and dropped by odsync");
      if (strcmp(mode, "odsync_pgoutput") == 0 && strcmp(plugin, "odsync_pgoutput") != 0) {
        snprintf(msg, sizeof msg, "pipeline %s: mesh.output_plugin is odsync_pgoutput but slot %s at node %s was "
                 "created with %s and keeps it (a slot's plugin is fixed when it is created)", pl->name, slot, node,
                 plugin);
        problem(ctx, false, msg);
      }
    } else if (strcmp(mode, "pgoutput") == 0) {
      printf("ok: pipeline %s: node %s will be read through pgoutput (mesh.output_plugin)\n", pl->name, node);
    } else {
      int can = probe(c, why, sizeof why);
      if (can == 1) {
        printf("ok: pipeline %s: node %s will be read through odsync_pgoutput (the echo stays at the server)\n",
               pl->name, node);
      } else if (strcmp(mode, "odsync_pgoutput") == 0) {
        snprintf(msg, sizeof msg, "pipeline %s: mesh.output_plugin is odsync_pgoutput but node %s cannot load it (%s); "
                 "install odsync_pgoutput.so into `pg_config --pkglibdir` there, or set mesh.output_plugin: auto",
                 pl->name, node, why);
        problem(ctx, true, msg);
        fatal++;
      } else {
        printf("ok: pipeline %s: node %s will be read through pgoutput (%s: %s): the echo is sent and dropped by "
               "odsync; install odsync_pgoutput.so into `pg_config --pkglibdir` to keep it at the server\n", pl->name,
               node, can == 0 ? "odsync_pgoutput is not loadable there" : "could not try odsync_pgoutput", why);
      }
    }
    PQclear(r);
    PQfinish(c);
  }
  return fatal;
}
