/* mesh_cli_util.c — the configuration lookups and message prefix `odsync mesh join` and `odsync mesh
 * remove` share, and the plain view of a mesh sink (mesh_cli_util.h). Never touches a server. */
#include "cli/mesh_cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mesh_cli_sval(const od_config_section *s, const char *key) {
  const od_config_entry *e = od_config_find(s, key);
  return e && e->value ? e->value : NULL;
}

const char *mesh_cli_sink_author(const od_sink_config *sk) { return mesh_cli_sval(&sk->section, "mesh_peer"); }

bool mesh_cli_sink_view(const od_sink_config *sk, bool keep_mesh_keys, od_sink_config *out) {
  *out = *sk;
  if (!mesh_cli_sink_author(sk)) return true;
  out->section.entries = calloc((size_t)sk->section.nentries + 1, sizeof *out->section.entries);
  if (!out->section.entries) return false;
  int n = 0;
  for (int i = 0; i < sk->section.nentries; i++)
    if (keep_mesh_keys || strncmp(sk->section.entries[i].key, "mesh_", 5) != 0)
      out->section.entries[n++] = sk->section.entries[i];
  if (keep_mesh_keys) /* the keys checked, no session (the sink's begin refuses) */
    out->section.entries[n++] = (od_config_entry){.key = (char *)"mesh_session", .value = (char *)"false",
                                                  .line = sk->section.line, .col = sk->section.col};
  out->section.nentries = n;
  return true;
}

void mesh_cli_sink_view_free(const od_sink_config *sk, od_sink_config *out) {
  if (out->section.entries != sk->section.entries) free(out->section.entries);
  out->section.entries = NULL;
}

const od_pipeline_config *mesh_cli_pipeline(const od_config *cfg, const char *from, const char *to) {
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *p = &cfg->pipelines[i];
    const char *f = mesh_cli_sval(&p->source, "mesh_node");
    const char *t = p->nsinks ? mesh_cli_sval(&p->sinks[0].section, "mesh_node") : NULL;
    if (f && t && !strcmp(f, from) && !strcmp(t, to)) return p;
  }
  return NULL;
}

void mesh_cli_repl_name(const od_pipeline_config *p, const char *key, char *out, size_t cap) {
  const char *v = mesh_cli_sval(&p->source, key);
  if (v) {
    snprintf(out, cap, "%s", v);
    return;
  }
  snprintf(out, cap, "odsync_%s", p->name);
  for (char *c = out; *c; c++)
    if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
}

void mesh_cli_vsay(const char *cmd, const char *fmt, va_list ap) {
  fprintf(stderr, "odsync mesh %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}
