/* core/config_internal.h — what the parts of the configuration parser share (config.c: the
 * document, pipelines, sources, sinks, admin, audit; config_mesh.c: the `mesh:` section).
 * Not a public interface: nothing outside src/core/config*.c includes it.
 * Owns nothing; the parse context borrows the document and the error of od_config_parse. */
#ifndef ODSYNC_CORE_CONFIG_INTERNAL_H
#define ODSYNC_CORE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <yaml.h>

#include "odsync/config.h"
#include "odsync/error.h"

typedef struct pctx {
  const char *file;
  yaml_document_t *doc;
  od_error *err;
} pctx;

/* Helpers of config.c (errors name file:line:col; strings are malloc'd, the caller owns them). */
__attribute__((format(printf, 1, 2))) char *xprintf(const char *fmt, ...);
__attribute__((format(printf, 3, 4))) int fail_node(pctx *p, const yaml_node_t *n, const char *fmt, ...);
char *xstrdup(const char *s);
yaml_node_t *map_get(pctx *p, const yaml_node_t *map, const char *key);
int oom(od_error *err, const char *file);
int parse_entry(pctx *p, od_config_entry *e, const char *key, const yaml_node_t *v, const char *path);
int scalar_value(pctx *p, const yaml_node_t *n, const char *path, char **out, bool *secret);
int expect_kind(pctx *p, const yaml_node_t *n, yaml_node_type_t want, const char *path, const char *what);
int check_mapping(pctx *p, const yaml_node_t *map, const char *path);
int check_known(pctx *p, const yaml_node_t *map, const char *where, const char *const *allowed);
int parse_choice(pctx *p, const yaml_node_t *v, const char *path, const char *const *choices, const char *what, const char *expected, int *out);
yaml_node_t *node_at(pctx *p, int idx);
int nline(const yaml_node_t *n);
int ncol(const yaml_node_t *n);

/* Every default of a pipeline (batch, queue, consistency, writers, reconnect, failure policy, alerts,
 * PII); parse_pipeline and the mesh's pipelines start from it, then apply their keys. */
void pipeline_defaults(od_pipeline_config *pl);

/* config_mesh.c: parse `mesh:` and append its N x (N-1) pipelines to cfg->pipelines. */
int parse_mesh(pctx *p, od_config *cfg, const yaml_node_t *n);

#endif
