/* core/config_internal.h — what the parts of the configuration parser share (config.c: the
 * document, pipelines, sources, sinks; config_global.c: log, tracing, encryption, admin, audit;
 * config_mesh.c: the `mesh:` section; config_section.c: adapters' typed reads of their sections).
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

#define SHOW_MAX 60 /* longest value quoted back in a message */
#define KIB 1024ULL
#define MIB (1024ULL * 1024ULL)
#define GIB (1024ULL * 1024ULL * 1024ULL)
#define TIB (1024ULL * GIB)

extern const char *const BOOLS[]; /* false/true/no/yes/off/on: an odd index is true */

/* Helpers of config.c (errors name file:line:col; strings are malloc'd, the caller owns them). */
__attribute__((format(printf, 1, 2))) char *xprintf(const char *fmt, ...);
__attribute__((format(printf, 3, 4))) int fail_node(pctx *p, const yaml_node_t *n, const char *fmt, ...);
char *xstrdup(const char *s);
yaml_node_t *map_get(pctx *p, const yaml_node_t *map, const char *key);
int oom(od_error *err, const char *file);
__attribute__((format(printf, 5, 6))) int fail_at(od_error *err, const char *file, int line, int col, const char *fmt, ...);
/* "unknown key K in WHERE; did you mean ...? (allowed: ...)" */
int unknown_key(od_error *err, const char *file, int line, int col, const char *key, const char *where,
                const char *const *allowed);
int parse_entry(pctx *p, od_config_entry *e, const char *key, const yaml_node_t *v, const char *path);
int scalar_value(pctx *p, const yaml_node_t *n, const char *path, char **out, bool *secret);
int expect_kind(pctx *p, const yaml_node_t *n, yaml_node_type_t want, const char *path, const char *what);
int check_mapping(pctx *p, const yaml_node_t *map, const char *path);
int check_known(pctx *p, const yaml_node_t *map, const char *where, const char *const *allowed);
int parse_choice(pctx *p, const yaml_node_t *v, const char *path, const char *const *choices, const char *what, const char *expected, int *out);
yaml_node_t *node_at(pctx *p, int idx);
const char *shown(char *buf, size_t n, const char *v, bool secret);
const char *closest(const char *word, const char *const *allowed);
bool is_null(const yaml_node_t *n);
int parse_long(const char *s, long *out);
int num_long(pctx *p, const yaml_node_t *n, const char *path, long min, long max, long *out);
int num_size(pctx *p, const yaml_node_t *n, const char *path, unsigned long long min,
                    unsigned long long max, size_t *out);
int num_double(pctx *p, const yaml_node_t *n, const char *path, double max, double *out);
int nline(const yaml_node_t *n);
int ncol(const yaml_node_t *n);

/* Every default of a pipeline (batch, queue, consistency, writers, reconnect, failure policy, alerts,
 * PII); parse_pipeline and the mesh's pipelines start from it, then apply their keys. */
void pipeline_defaults(od_pipeline_config *pl);
int parse_fault(pctx *p, od_pipeline_config *pl, const yaml_node_t *n, const char *path);

/* config_global.c: the process-wide sections (each fills its part of cfg; strings malloc'd). */
int parse_log_level(pctx *p, const yaml_node_t *v, const char *path, char **out);
int parse_log(pctx *p, od_config *cfg, const yaml_node_t *n);
int parse_tracing(pctx *p, od_tracing_config *t, const yaml_node_t *n);
int parse_encryption(pctx *p, od_encryption_config *ec, const yaml_node_t *n);
int parse_admin(pctx *p, od_admin_config *a, const yaml_node_t *n);
int parse_audit(pctx *p, od_audit_config *a, const yaml_node_t *n);

/* config_mesh.c: parse `mesh:` and append its N x (N-1) pipelines to cfg->pipelines. */
int parse_mesh(pctx *p, od_config *cfg, const yaml_node_t *n);

#endif
