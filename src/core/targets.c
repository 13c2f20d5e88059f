/* core/targets.c — see targets.h. Owns: the table name list while it runs. */
#include "core/targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct names {
  char **schemas, **names;
  bool *keyed;
  int n, cap;
  bool oom;
} names;

static void add(void *ctx, const char *schema, const char *name, bool keyed) {
  names *l = ctx;
  if (l->oom) return;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    char **s = realloc(l->schemas, (size_t)cap * sizeof *s);
    if (s) l->schemas = s;
    char **n = realloc(l->names, (size_t)cap * sizeof *n);
    if (n) l->names = n;
    bool *k = realloc(l->keyed, (size_t)cap * sizeof *k);
    if (k) l->keyed = k;
    if (!s || !n || !k) {
      l->oom = true;
      return;
    }
    l->cap = cap;
  }
  l->schemas[l->n] = strdup(schema);
  l->names[l->n] = strdup(name);
  l->keyed[l->n] = keyed;
  if (!l->schemas[l->n] || !l->names[l->n]) {
    free(l->schemas[l->n]);
    free(l->names[l->n]);
    l->oom = true;
    return;
  }
  l->n++;
}

int od_targets_check(od_source *source, od_sink *sink, void (*problem)(void *ctx, bool fatal, const char *msg),
                     void *ctx, od_error *err) {
  if (!source->ops->tables || !sink->ops->check_tables) return 0;
  names l = {0};
  int rc = source->ops->tables(source, add, &l, err);
  if (rc == OD_OK && l.oom) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (rc == OD_OK)
    rc = sink->ops->check_tables(sink, l.n, (const char *const *)l.schemas, (const char *const *)l.names, l.keyed, problem,
                                 ctx, err);
  for (int i = 0; i < l.n; i++) {
    free(l.schemas[i]);
    free(l.names[i]);
  }
  free(l.schemas);
  free(l.names);
  free(l.keyed);
  return rc;
}

typedef struct first {
  const char *pipeline;
  char msg[OD_ERROR_MSG_MAX];
  bool have;
} first;

static void keep_first(void *ctx, bool fatal, const char *msg) {
  first *f = ctx;
  if (!fatal) {
    od_warn("pipeline %s: %s", f->pipeline, msg);
    return;
  }
  /* The first one ends the session (and is logged then); the others are logged here. */
  if (f->have) od_error_log("pipeline %s: %s", f->pipeline, msg);
  else snprintf(f->msg, sizeof f->msg, "%s", msg);
  f->have = true;
}

int od_targets_refuse(const char *pipeline, od_source *source, od_sink *sink, od_error *err) {
  first f = {.pipeline = pipeline};
  int n = od_targets_check(source, sink, keep_first, &f, err);
  if (n < 0) return n;
  if (n == 0) return OD_OK;
  return OD_FAIL(err, OD_ESCHEMA, "%s", f.msg);
}
