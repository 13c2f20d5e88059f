/* core/config_mesh.c — the `mesh:` section of the configuration (docs/MULTI_MASTER.md,
 * docs/CONFIG.md#mesh): N PostgreSQL nodes declared once, expanded into N x (N-1) pipelines;
 * `mesh.policies` (a policy per table) is validated here and handed to every sink as
 * mesh_table_policies.
 * Owns: the pipelines it appends (they belong to the od_config like any other).
 * Never touches: the rest of the document (config.c), the pipelines' runtime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mesh_sqlrule.h"
#include "common/sqlbuf.h"
#include "core/config_internal.h"

/* `mesh:` declares N PostgreSQL nodes once; it expands into N x (N-1) pipelines
 * "<mesh>_<from>_to_<to>", each a postgres source on <from> (mesh_node: no echo, stamps) and a
 * postgres sink on <to> (mesh_node/mesh_peer: origin marking, conflict detection). */
static const char *const MESH_KEYS[] = {"name",     "nodes", "tables", "policy", "priority", "fallback",
                                        "policies", "counters", "rules", "output_plugin", "gc_interval_s", "on_poison",
                                        "poison_attempts", NULL};
/* mesh.output_plugin: the slots' output plugin (src/sources/pg/pg_plugin.h), default auto. */
static const char *const MESH_PLUGINS[] = {"auto", "pgoutput", "odsync_pgoutput", NULL};
static const char *const MESH_NODE_KEYS[] = {"name", "dsn", "join_from", NULL};
static const char *const MESH_POLICY_KEYS[] = {"policy", "priority", "fallback", NULL};
static const char *const MESH_POLICIES[] = {"last_writer_wins", "priority", "keep_local", "apply_remote",
                                            "column_merge", NULL};
static const char *const MESH_FALLBACKS[] = {"last_writer_wins", "priority", "keep_local", "apply_remote", NULL};
#define POLICY_LIST "last_writer_wins, priority, keep_local, apply_remote, column_merge"
#define FALLBACK_LIST "last_writer_wins, priority, keep_local, apply_remote"
#define MESH_NODES_MAX 8

static bool mesh_name_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (!n || n > max) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  return true;
}

static od_config_entry *section_add(pctx *p, od_config_section *s, const char *key, int line, int col) {
  od_config_entry *g = realloc(s->entries, (size_t)(s->nentries + 1) * sizeof *g);
  if (!g) return NULL;
  s->entries = g;
  od_config_entry *e = &g[s->nentries++];
  memset(e, 0, sizeof *e);
  e->line = line;
  e->col = col;
  if (!(e->key = xstrdup(key))) return NULL;
  (void)p;
  return e;
}

static int section_scalar(pctx *p, od_config_section *s, const char *key, const char *value, bool secret, int line,
                          int col) {
  od_config_entry *e = section_add(p, s, key, line, col);
  if (!e || !(e->value = xstrdup(value))) return oom(p->err, p->file);
  e->secret = secret;
  return OD_OK;
}

static int section_list(pctx *p, od_config_section *s, const char *key, const od_config_entry *from) {
  od_config_entry *e = section_add(p, s, key, from->line, from->col);
  if (!e || !(e->list = calloc((size_t)from->nlist + 1, sizeof *e->list))) return oom(p->err, p->file);
  for (int i = 0; i < from->nlist; i++) {
    if (!(e->list[i] = xstrdup(from->list[i]))) return oom(p->err, p->file);
    e->nlist++;
  }
  return OD_OK;
}

typedef struct mesh_node {
  char *name, *dsn;
  char *join_from; /* a node added to a running mesh: the node it copies from (odsync mesh join) */
  bool secret;
  int line, col;
} mesh_node;

static int mesh_pipeline(pctx *p, od_config *cfg, const char *mesh, const mesh_node *a, const mesh_node *b,
                         const od_config_entry *tables, const char *policy, const char *fallback,
                         const od_config_entry *prio, const od_config_entry *counters, const od_config_entry *rules,
                         const od_config_entry *tpol, const char *plugin, const od_config_entry *all,
                         const char *gc, const od_pipeline_config *fault) {
  od_pipeline_config *pl = &cfg->pipelines[cfg->npipelines++];
  memset(pl, 0, sizeof *pl);
  pipeline_defaults(pl);
  pl->on_poison = fault->on_poison; /* mesh.on_poison / mesh.poison_attempts: every pipeline of the mesh */
  pl->poison_attempts = fault->poison_attempts;
  pl->apply_workers = 1;      /* one target transaction per source transaction, in order */
  pl->reconnect_max_ms = 5000;
  pl->line = b->line;
  pl->col = b->col;
  if (!(pl->name = xprintf("%s_%s_to_%s", mesh, a->name, b->name)) ||
      !(pl->path = xprintf("mesh (pipeline %s_%s_to_%s)", mesh, a->name, b->name)) ||
      !(pl->sinks = calloc(1, sizeof *pl->sinks)))
    return oom(p->err, p->file);
  pl->nsinks = 1;
  od_config_section *src = &pl->source, *dst = &pl->sinks[0].section;
  src->file = dst->file = cfg->file;
  src->line = a->line, src->col = a->col;
  dst->line = b->line, dst->col = b->col;
  int rc;
  if (!(src->path = xprintf("%s.source", pl->path)) || !(dst->path = xprintf("%s.sink", pl->path)) ||
      !(src->type = xstrdup("postgres")) || !(dst->type = xstrdup("postgres")) ||
      !(pl->sinks[0].name = xstrdup("default")))
    return oom(p->err, p->file);
  if ((rc = section_scalar(p, src, "dsn", a->dsn, a->secret, a->line, a->col)) ||
      (rc = section_list(p, src, "tables", tables)) ||
      (rc = section_scalar(p, src, "mesh_node", a->name, false, a->line, a->col)) ||
      (rc = section_scalar(p, src, "snapshot", "never", false, a->line, a->col)) ||
      (rc = section_scalar(p, src, "mesh_output_plugin", plugin, false, a->line, a->col)) ||
      (rc = section_scalar(p, dst, "dsn", b->dsn, b->secret, b->line, b->col)) ||
      (rc = section_scalar(p, dst, "mesh_node", b->name, false, b->line, b->col)) ||
      (rc = section_scalar(p, dst, "mesh_peer", a->name, false, a->line, a->col)) ||
      (rc = section_scalar(p, dst, "mesh_policy", policy, false, b->line, b->col)) ||
      (rc = section_scalar(p, dst, "mesh_fallback", fallback, false, b->line, b->col)) ||
      (tpol && (rc = section_list(p, dst, "mesh_table_policies", tpol))) ||
      (rc = section_list(p, dst, "mesh_tables", tables)) ||
      (rc = section_list(p, dst, "mesh_nodes", all)) ||
      (gc && (rc = section_scalar(p, dst, "mesh_gc_interval_s", gc, false, b->line, b->col))) ||
      (prio && (rc = section_list(p, dst, "mesh_priority", prio))) ||
      (counters && (rc = section_list(p, dst, "mesh_counters", counters))) ||
      (rules && (rc = section_list(p, dst, "mesh_rules", rules))) ||
      (b->join_from && (rc = section_scalar(p, dst, "mesh_join_from", b->join_from, false, b->line, b->col))))
    return rc;
  return OD_OK;
}

static void free_entry(od_config_entry *e) {
  free(e->key);
  free(e->value);
  for (int j = 0; j < e->nlist; j++) free(e->list[j]);
  free(e->list);
  free(e->list_line);
  free(e->list_col);
  memset(e, 0, sizeof *e);
}


/* `mesh.policies`: table -> policy (a scalar) or {policy, priority, fallback}. Each becomes one
 * item "<table> <policy> <fallback> <p1,p2,...|->" of the sinks' mesh_table_policies. The table
 * must be one of mesh.tables, the nodes of a priority order nodes of the mesh. */
static int prio_check(pctx *p, const yaml_node_t *v, const char *path, const od_config_entry *e,
                      const mesh_node *nodes, int nn) {
  for (int i = 0; i < e->nlist; i++) {
    bool found = false;
    for (int j = 0; j < nn; j++) found = found || strcmp(e->list[i], nodes[j].name) == 0;
    if (!found) return fail_node(p, v, "%s: '%s' is not a node of the mesh", path, e->list[i]);
  }
  return OD_OK;
}

static int parse_policies(pctx *p, const yaml_node_t *v, const mesh_node *nodes, int nn,
                          const od_config_entry *tables, const od_config_entry *prio, const char *fallback,
                          od_config_entry *out) {
  int rc = expect_kind(p, v, YAML_MAPPING_NODE, "mesh.policies",
                       "a mapping of table to policy, e.g. {public.items: priority}");
  if (rc || (rc = check_mapping(p, v, "mesh.policies"))) return rc;
  size_t count = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
  if (!(out->key = xstrdup("policies")) || !(out->list = calloc(count + 1, sizeof *out->list)))
    return oom(p->err, p->file);
  out->line = nline(v);
  out->col = ncol(v);
  for (size_t i = 0; i < count && !rc; i++) {
    yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
    yaml_node_t *k = node_at(p, pair->key), *val = node_at(p, pair->value);
    char *table = NULL, *pol = NULL, *fb = NULL, path[400];
    bool sec = false;
    od_config_entry tprio = {0};
    if ((rc = scalar_value(p, k, "mesh.policies", &table, &sec))) return rc;
    snprintf(path, sizeof path, "mesh.policies.%s", table);
    bool known = false;
    for (int t = 0; t < tables->nlist; t++) known = known || strcmp(tables->list[t], table) == 0;
    if (!known) {
      rc = fail_node(p, k, "%s: '%s' is not one of mesh.tables; a policy names a replicated table exactly as "
                     "mesh.tables lists it", path, table);
      goto next;
    }
    int idx = 0;
    const yaml_node_t *pv = val;
    if (val->type == YAML_MAPPING_NODE) {
      char sub[420];
      if ((rc = check_mapping(p, val, path)) || (rc = check_known(p, val, path, MESH_POLICY_KEYS))) goto next;
      if (!(pv = map_get(p, val, "policy"))) {
        rc = fail_node(p, val, "%s: missing required key 'policy' (%s)", path, POLICY_LIST);
        goto next;
      }
      yaml_node_t *x;
      snprintf(sub, sizeof sub, "%s.priority", path);
      if ((x = map_get(p, val, "priority")) &&
          ((rc = parse_entry(p, &tprio, "priority", x, sub)) || (rc = prio_check(p, x, sub, &tprio, nodes, nn))))
        goto next;
      snprintf(sub, sizeof sub, "%s.fallback", path);
      int fi;
      if ((x = map_get(p, val, "fallback"))) {
        if ((rc = parse_choice(p, x, sub, MESH_FALLBACKS, "a fallback policy for overlapping columns",
                               FALLBACK_LIST, &fi)))
          goto next;
        if (!(fb = xstrdup(MESH_FALLBACKS[fi]))) {
          rc = oom(p->err, p->file);
          goto next;
        }
      }
    }
    char ppath[420];
    snprintf(ppath, sizeof ppath, "%s%s", path, val->type == YAML_MAPPING_NODE ? ".policy" : "");
    if ((rc = parse_choice(p, pv, ppath, MESH_POLICIES, "a conflict policy", POLICY_LIST, &idx))) goto next;
    if (!(pol = xstrdup(MESH_POLICIES[idx]))) {
      rc = oom(p->err, p->file);
      goto next;
    }
    const od_config_entry *order = tprio.nlist ? &tprio : prio;
    const char *fbv = fb ? fb : fallback;
    if ((strcmp(pol, "priority") == 0 || strcmp(fbv, "priority") == 0) && (!order || !order->nlist)) {
      rc = fail_node(p, val, "%s: policy priority needs a node order: 'priority: [a, b]' here or mesh.priority",
                     path);
      goto next;
    }
    od_sqlbuf b = {0};
    od_sqlbuf_addf(&b, "%s %s %s ", table, pol, fbv);
    for (int j = 0; order && j < order->nlist; j++) od_sqlbuf_addf(&b, "%s%s", j ? "," : "", order->list[j]);
    if (!order || !order->nlist) od_sqlbuf_add(&b, "-");
    if (b.oom || !(out->list[out->nlist] = xstrdup(b.p))) rc = oom(p->err, p->file);
    else out->nlist++;
    od_sqlbuf_free(&b);
  next:
    free(table);
    free(pol);
    free(fb);
    free_entry(&tprio);
  }
  return rc;
}

/* The policy of table tbl ("schema.table"): its mesh.policies entry ("table policy fallback order",
 * the table as mesh.tables names it, "items" standing for public.items), else the mesh's. */
static bool is_column_merge(const od_config_entry *tpol, const char *tbl, const char *policy) {
  for (int j = 0; j < tpol->nlist; j++) {
    const char *e = tpol->list[j], *sp = strchr(e, ' ');
    if (!sp) continue;
    size_t tl = (size_t)(sp - e);
    bool same = (strlen(tbl) == tl && strncmp(tbl, e, tl) == 0) ||
                (!memchr(e, '.', tl) && strncmp(tbl, "public.", 7) == 0 && strlen(tbl + 7) == tl &&
                 strncmp(tbl + 7, e, tl) == 0);
    if (same) return strncmp(sp + 1, "column_merge ", 13) == 0;
  }
  return strcmp(policy, "column_merge") == 0;
}

/* On a column_merge table (docs/MULTI_MASTER.md, "Business rules and column_merge") a column rule
 * orders that column's concurrent writes; an SQL rule, which judges two whole rows, is refused (the
 * row there is a mix of several writes: the nodes would judge different pairs and could end apart),
 * and so is a column rule on a counter column (its value is a sum, not one write's). */
static int rules_on_column_merge(pctx *p, const yaml_node_t *v, const od_config_entry *rules,
                                 const od_config_entry *counters, const od_config_entry *tpol, const char *policy) {
  for (int i = 0; i < rules->nlist; i++) {
    const char *ru = rules->list[i], *expr = NULL, *colon = strchr(ru, ':');
    char tbl[300] = "";
    bool sql = od_mesh_sqlrule_split(ru, tbl, sizeof tbl, &expr);
    size_t cl = colon ? (size_t)(colon - ru) : 0;
    if (!sql && colon) {
      const char *dot = NULL; /* "schema.table.column: ...": the table is before the last dot */
      for (const char *c = ru; c < colon; c++)
        if (*c == '.') dot = c;
      if (dot && dot - ru < (long)sizeof tbl) snprintf(tbl, sizeof tbl, "%.*s", (int)(dot - ru), ru);
    }
    if (!*tbl || !is_column_merge(tpol, tbl, policy)) continue;
    bool counter = false;
    for (int k = 0; !sql && k < counters->nlist; k++)
      counter = counter || (strlen(counters->list[k]) == cl && strncmp(counters->list[k], ru, cl) == 0);
    if (!sql && !counter) continue;
    const yaml_node_t *at = v && v->type == YAML_SEQUENCE_NODE &&
                                    i < v->data.sequence.items.top - v->data.sequence.items.start
                                ? node_at(p, v->data.sequence.items.start[i])
                                : v;
    if (counter)
      return fail_node(p, at, "mesh.rules[%d] '%s': %.*s is a counter column of a column_merge table: its value is "
                       "the sum of every node's deltas, which no rule orders (docs/MULTI_MASTER.md, \"Business "
                       "rules and column_merge\"). Remove the rule", i, ru, (int)cl, ru);
    return fail_node(p, at, "mesh.rules[%d] '%s': table %s has policy column_merge, where a row is built from "
                     "several writes and an SQL rule, which judges two whole rows, would let the nodes end with "
                     "different rows (docs/MULTI_MASTER.md, \"Business rules and column_merge\"). Use column "
                     "rules ('schema.table.column: higher wins' or 'schema.table.column: a < b < c'), which order "
                     "one column's concurrent writes there, or give the table another policy in mesh.policies",
                     i, ru, tbl);
  }
  return OD_OK;
}

int parse_mesh(pctx *p, od_config *cfg, const yaml_node_t *n) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, "mesh", "a mapping (name, nodes, tables, policy)");
  if (rc || (rc = check_mapping(p, n, "mesh")) || (rc = check_known(p, n, "mesh", MESH_KEYS))) return rc;
  char *name = NULL, *policy = NULL, *fallback = NULL, *gc = NULL;
  mesh_node nodes[MESH_NODES_MAX] = {{0}};
  int nn = 0;
  od_config_entry tables = {0}, prio = {0}, counters = {0}, rules = {0}, tpol = {0}, all = {0};
  bool secret = false;
  yaml_node_t *v;
  if ((v = map_get(p, n, "name"))) {
    if ((rc = scalar_value(p, v, "mesh.name", &name, &secret))) goto out;
    if (!mesh_name_ok(name, 16)) {
      rc = fail_node(p, v, "mesh.name '%s': expected 1-16 characters of a-z, 0-9 and _", name);
      goto out;
    }
  } else if (!(name = xstrdup("mesh"))) {
    rc = oom(p->err, p->file);
    goto out;
  }
  if (!(v = map_get(p, n, "nodes"))) {
    rc = fail_node(p, n, "mesh: missing required key 'nodes'; expected a list of 2 to %d nodes, each "
                   "{name: a, dsn: \"host=... dbname=...\"}", MESH_NODES_MAX);
    goto out;
  }
  if ((rc = expect_kind(p, v, YAML_SEQUENCE_NODE, "mesh.nodes", "a list of nodes"))) goto out;
  size_t count = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (count < 2 || count > MESH_NODES_MAX) {
    rc = fail_node(p, v, "mesh.nodes: expected 2 to %d nodes, got %zu", MESH_NODES_MAX, count);
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    char ipath[64];
    snprintf(ipath, sizeof ipath, "mesh.nodes[%zu]", i);
    yaml_node_t *item = node_at(p, v->data.sequence.items.start[i]);
    if ((rc = expect_kind(p, item, YAML_MAPPING_NODE, ipath, "a mapping {name, dsn}")) ||
        (rc = check_mapping(p, item, ipath)) || (rc = check_known(p, item, ipath, MESH_NODE_KEYS)))
      goto out;
    mesh_node *m = &nodes[nn++];
    m->line = nline(item);
    m->col = ncol(item);
    yaml_node_t *nv = map_get(p, item, "name"), *dv = map_get(p, item, "dsn");
    if (!nv || !dv) {
      rc = fail_node(p, item, "%s: missing required key '%s'", ipath, nv ? "dsn" : "name");
      goto out;
    }
    bool s2 = false;
    if ((rc = scalar_value(p, nv, ipath, &m->name, &s2)) || (rc = scalar_value(p, dv, ipath, &m->dsn, &m->secret)))
      goto out;
    if (!mesh_name_ok(m->name, 12)) {
      rc = fail_node(p, nv, "%s.name '%s': expected 1-12 characters of a-z, 0-9 and _", ipath, m->name);
      goto out;
    }
    for (int j = 0; j < nn - 1; j++)
      if (strcmp(nodes[j].name, m->name) == 0) {
        rc = fail_node(p, nv, "%s.name '%s' is used twice; node names must be unique", ipath, m->name);
        goto out;
      }
    yaml_node_t *jv = map_get(p, item, "join_from");
    if (jv && (rc = scalar_value(p, jv, ipath, &m->join_from, &s2))) goto out;
  }
  /* join_from: the node is being added to a running mesh (docs/MULTI_MASTER.md, "Adding a node"):
   * its pipelines wait until `odsync mesh join` has copied the seed into it. */
  for (int i = 0; i < nn; i++) {
    if (!nodes[i].join_from) continue;
    yaml_node_t *item = node_at(p, v->data.sequence.items.start[i]);
    int seed = -1;
    for (int j = 0; j < nn; j++)
      if (strcmp(nodes[j].name, nodes[i].join_from) == 0) seed = j;
    if (seed < 0 || seed == i || nodes[seed].join_from) {
      rc = fail_node(p, map_get(p, item, "join_from"), "mesh.nodes[%d].join_from '%s': expected the name of another "
                     "node of the mesh that is not joining itself (the node whose data %s copies)", i,
                     nodes[i].join_from, nodes[i].name);
      goto out;
    }
  }
  if (!(v = map_get(p, n, "tables"))) {
    rc = fail_node(p, n, "mesh: missing required key 'tables'; expected the list of replicated tables, e.g. "
                   "[public.items] (each with a primary key)");
    goto out;
  }
  if ((rc = parse_entry(p, &tables, "tables", v, "mesh.tables"))) goto out;
  if (!tables.nlist) {
    rc = fail_node(p, v, "mesh.tables: expected a non-empty list of tables");
    goto out;
  }
  if ((v = map_get(p, n, "policy"))) {
    int idx;
    if ((rc = parse_choice(p, v, "mesh.policy", MESH_POLICIES, "a conflict policy", POLICY_LIST, &idx)))
      goto out;
    policy = xstrdup(MESH_POLICIES[idx]);
  } else {
    policy = xstrdup("last_writer_wins");
  }
  int plugin_idx = 0;
  if ((v = map_get(p, n, "output_plugin")) &&
      (rc = parse_choice(p, v, "mesh.output_plugin", MESH_PLUGINS, "an output plugin",
                         "auto, pgoutput, odsync_pgoutput", &plugin_idx)))
    goto out;
  if ((v = map_get(p, n, "fallback"))) {
    int idx;
    if ((rc = parse_choice(p, v, "mesh.fallback", MESH_FALLBACKS, "a fallback policy for overlapping columns",
                           FALLBACK_LIST, &idx)))
      goto out;
    fallback = xstrdup(MESH_FALLBACKS[idx]);
  } else {
    fallback = xstrdup("last_writer_wins");
  }
  if (!policy || !fallback) {
    rc = oom(p->err, p->file);
    goto out;
  }
  if ((v = map_get(p, n, "priority"))) {
    if ((rc = parse_entry(p, &prio, "priority", v, "mesh.priority"))) goto out;
    for (int i = 0; i < prio.nlist; i++) {
      bool found = false;
      for (int j = 0; j < nn; j++) found = found || strcmp(prio.list[i], nodes[j].name) == 0;
      if (!found) {
        rc = fail_node(p, v, "mesh.priority: '%s' is not a node of the mesh", prio.list[i]);
        goto out;
      }
    }
  } else if (strcmp(policy, "priority") == 0 || (strcmp(policy, "column_merge") == 0 &&
                                                  strcmp(fallback, "priority") == 0)) {
    rc = fail_node(p, n, "mesh: policy priority needs 'priority', the node names from the most to the least "
                   "trusted");
    goto out;
  }
  /* gc_interval_s: the clean-up of tombstones and _odsync_hlc (postgres_mesh_gc.c), 0 turns it off */
  if ((v = map_get(p, n, "gc_interval_s"))) {
    if ((rc = scalar_value(p, v, "mesh.gc_interval_s", &gc, &secret))) goto out;
    char *end = NULL;
    long g = strtol(gc, &end, 10);
    if (!*gc || *end || g < 0 || g > 604800) {
      rc = fail_node(p, v, "mesh.gc_interval_s '%s': expected whole seconds from 0 (no clean-up) to 604800; the "
                     "default is 60", gc);
      goto out;
    }
  }
  if (!(all.list = calloc((size_t)nn + 1, sizeof *all.list))) {
    rc = oom(p->err, p->file);
    goto out;
  }
  all.line = nline(n);
  all.col = ncol(n);
  for (int i = 0; i < nn; i++) {
    if (!(all.list[i] = xstrdup(nodes[i].name))) {
      rc = oom(p->err, p->file);
      goto out;
    }
    all.nlist++;
  }
  if ((v = map_get(p, n, "counters")) && (rc = parse_entry(p, &counters, "counters", v, "mesh.counters"))) goto out;
  for (int i = 0; i < counters.nlist; i++) {
    const char *c = counters.list[i], *d1 = strchr(c, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.') || d1 == c || d2 == d1 + 1 || !d2[1]) {
      rc = fail_node(p, v, "mesh.counters: '%s' is not schema.table.column", c);
      goto out;
    }
  }
  if ((v = map_get(p, n, "rules")) && (rc = parse_entry(p, &rules, "rules", v, "mesh.rules"))) goto out;
  if ((v = map_get(p, n, "policies")) &&
      (rc = parse_policies(p, v, nodes, nn, &tables, prio.nlist ? &prio : NULL, fallback, &tpol)))
    goto out;
  if (rules.nlist && (rc = rules_on_column_merge(p, map_get(p, n, "rules"), &rules, &counters, &tpol, policy)))
    goto out;
  /* column_merge on three or more nodes (docs/MULTI_MASTER.md, "column_merge"): every write carries a
   * version per column, and a column both sides changed goes to the fallback. With last_writer_wins
   * each column is a register ordered by (hlc, node), an order that contains causality: the same
   * winner whatever order the writes arrive in. priority (ranks first, then clocks) is not such an
   * order across three writers of one column, keep_local / apply_remote are one-sided: refused. */
  if (nn > 2) {
    const char *merged = strcmp(policy, "column_merge") == 0 && strcmp(fallback, "last_writer_wins") != 0
                             ? "mesh.policy"
                             : NULL;
    for (int j = 0; j < tpol.nlist && !merged; j++)
      for (int t = 0; t < tables.nlist && !merged; t++) {
        size_t tl = strlen(tables.list[t]);
        if (strncmp(tpol.list[j], tables.list[t], tl) == 0 && strncmp(tpol.list[j] + tl, " column_merge ", 14) == 0 &&
            strncmp(tpol.list[j] + tl + 14, "last_writer_wins ", 17) != 0)
          merged = tables.list[t];
      }
    if (merged) {
      rc = fail_node(p, n, "mesh: column_merge (%s) on a mesh of %d nodes needs fallback last_writer_wins: with "
                     "another fallback a column written at three nodes can end different on different nodes "
                     "(docs/MULTI_MASTER.md, \"column_merge\"). Set fallback: last_writer_wins or give the table "
                     "another policy", merged, nn);
      goto out;
    }
  }
  /* on_poison, poison_attempts (docs/DEAD_LETTERS.md): the same for every pipeline of the mesh */
  od_pipeline_config fault;
  memset(&fault, 0, sizeof fault);
  pipeline_defaults(&fault);
  if ((rc = parse_fault(p, &fault, n, "mesh"))) goto out;
  od_pipeline_config *g = realloc(cfg->pipelines, (size_t)(cfg->npipelines + nn * (nn - 1)) * sizeof *g);
  if (!g) {
    rc = oom(p->err, p->file);
    goto out;
  }
  cfg->pipelines = g;
  for (int i = 0; i < nn && !rc; i++)
    for (int j = 0; j < nn && !rc; j++)
      if (i != j)
        rc = mesh_pipeline(p, cfg, name, &nodes[i], &nodes[j], &tables, policy, fallback,
                           prio.nlist ? &prio : NULL, counters.nlist ? &counters : NULL, rules.nlist ? &rules : NULL,
                           tpol.nlist ? &tpol : NULL, MESH_PLUGINS[plugin_idx], &all, gc, &fault);
out:
  free(name);
  free(policy);
  free(fallback);
  free(gc);
  free_entry(&all);
  for (int i = 0; i < nn; i++) {
    free(nodes[i].name);
    free(nodes[i].dsn);
    free(nodes[i].join_from);
  }
  free_entry(&tables);
  free_entry(&prio);
  free_entry(&counters);
  free_entry(&rules);
  free_entry(&tpol);
  return rc;
}
