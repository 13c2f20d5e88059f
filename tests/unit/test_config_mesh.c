/* Unit tests for the `mesh:` section of the configuration (src/core/config.c): expansion into
 * N x (N-1) pipelines with the generated source/sink keys, next to ordinary pipelines, and each
 * error with its FILE:LINE:COL. */
#include "odsync/config.h"
#include "test.h"

#define MESH3                                           \
  "mesh:\n"                                             \
  "  name: shop\n"                                      \
  "  policy: priority\n"                                \
  "  priority: [b, a]\n"                                \
  "  tables: [public.items, public.stock]\n"            \
  "  nodes:\n"                                          \
  "    - { name: a, dsn: \"host=h1 dbname=shop\" }\n"   \
  "    - { name: b, dsn: \"host=h2 dbname=shop\" }\n"   \
  "    - { name: c, dsn: \"host=h3 dbname=shop\" }\n"

static od_config *parse_ok(const char *yaml) {
  od_config *c = NULL;
  od_error e = {0};
  int rc = od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, &e);
  if (rc) fprintf(stderr, "  unexpected error: %s\n", e.msg);
  CHECK_INT(rc, OD_OK);
  return c;
}

static const char *parse_err(const char *yaml, od_error *e) {
  od_config *c = (od_config *)1;
  memset(e, 0, sizeof *e);
  CHECK_INT(od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, e), OD_ECONFIG);
  CHECK(c == NULL);
  return e->msg;
}

static const char *val(const od_config_section *s, const char *key) {
  const od_config_entry *e = od_config_find(s, key);
  return e && e->value ? e->value : "";
}

TEST(mesh_expands_to_every_ordered_pair) {
  od_config *c = parse_ok(MESH3);
  CHECK_INT(c->npipelines, 6);
  const char *names[] = {"shop_a_to_b", "shop_a_to_c", "shop_b_to_a", "shop_b_to_c", "shop_c_to_a", "shop_c_to_b"};
  for (int i = 0; i < 6; i++) CHECK_STR(c->pipelines[i].name, names[i]);
  const od_pipeline_config *p = &c->pipelines[3]; /* b -> c */
  CHECK_STR(p->source.type, "postgres");
  CHECK_STR(val(&p->source, "dsn"), "host=h2 dbname=shop");
  CHECK_STR(val(&p->source, "mesh_node"), "b");
  CHECK_STR(val(&p->source, "snapshot"), "never");
  const od_config_entry *t = od_config_find(&p->source, "tables");
  CHECK(t && t->nlist == 2);
  CHECK_STR(t->list[1], "public.stock");
  CHECK_INT(p->nsinks, 1);
  const od_config_section *k = &p->sinks[0].section;
  CHECK_STR(k->type, "postgres");
  CHECK_STR(val(k, "dsn"), "host=h3 dbname=shop");
  CHECK_STR(val(k, "mesh_node"), "c");
  CHECK_STR(val(k, "mesh_peer"), "b");
  CHECK_STR(val(k, "mesh_policy"), "priority");
  const od_config_entry *pr = od_config_find(k, "mesh_priority");
  CHECK(pr && pr->nlist == 2);
  CHECK_STR(pr->list[0], "b");
  CHECK(od_config_find(k, "mesh_tables") != NULL);
  CHECK(od_config_find(k, "mesh_counters") == NULL);
  CHECK_INT(p->consistency, OD_CONSISTENCY_STRONG);
  /* every other default of a pipeline holds (the failure policy and PII sampling were once left 0) */
  CHECK_INT(p->apply_workers, 1);
  CHECK_INT(p->reconnect_max_ms, 5000);
  CHECK_INT(p->on_poison, OD_POISON_STOP);
  CHECK_INT(p->poison_attempts, 3);
  CHECK_INT(p->breaker.failures, 5);
  CHECK_INT(p->breaker.cooldown_ms, 30000);
  CHECK_INT(p->pii.sample, 64);
  CHECK(p->alerts.anomalies);
  CHECK_INT(p->batch.max_rows, 5000);
  od_config_free(c);
}

TEST(mesh_counters_and_rules_reach_every_sink) {
  od_config *c = parse_ok("mesh:\n  tables: [public.stock]\n  counters: [public.stock.qty]\n"
                          "  rules: [\"public.stock.version: higher wins\", \"public.stock.status: new < paid\"]\n"
                          "  nodes:\n    - { name: x, dsn: d1 }\n    - { name: y, dsn: d2 }\n");
  for (int i = 0; i < 2; i++) {
    const od_config_section *k = &c->pipelines[i].sinks[0].section;
    const od_config_entry *e = od_config_find(k, "mesh_counters"), *r = od_config_find(k, "mesh_rules");
    CHECK(e && e->nlist == 1);
    CHECK_STR(e->list[0], "public.stock.qty");
    CHECK(r && r->nlist == 2);
    CHECK_STR(r->list[1], "public.stock.status: new < paid");
  }
  od_config_free(c);
}

TEST(mesh_next_to_pipelines) {
  od_config *c = parse_ok("pipelines:\n  - name: other\n    source: { type: postgres }\n    sink: { type: sqlite }\n"
                          "mesh:\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n    - { name: y, dsn: d2 }\n");
  CHECK_INT(c->npipelines, 3);
  CHECK_STR(c->pipelines[0].name, "other");
  CHECK_STR(c->pipelines[1].name, "mesh_x_to_y");
  CHECK_STR(val(&c->pipelines[2].sinks[0].section, "mesh_policy"), "last_writer_wins");
  od_config_free(c);
}

TEST(mesh_errors_name_file_line_col) {
  od_error e;
  CHECK_STR(parse_err("mesh:\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n", &e),
            "cfg.yaml:4:5: mesh.nodes: expected 2 to 8 nodes, got 1");
  CHECK_STR(parse_err("mesh:\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n    - { name: x, dsn: d2 }\n", &e),
            "cfg.yaml:5:15: mesh.nodes[1].name 'x' is used twice; node names must be unique");
  CHECK_STR(parse_err("mesh:\n  tables: [t]\n  nodes:\n    - { name: X-1, dsn: d1 }\n    - { name: y, dsn: d2 }\n", &e),
            "cfg.yaml:4:15: mesh.nodes[0].name 'X-1': expected 1-12 characters of a-z, 0-9 and _");
  CHECK_STR(parse_err("mesh:\n  nodes:\n    - { name: x, dsn: d1 }\n    - { name: y, dsn: d2 }\n", &e),
            "cfg.yaml:2:3: mesh: missing required key 'tables'; expected the list of replicated tables, e.g. "
            "[public.items] (each with a primary key)");
  CHECK_STR(parse_err("mesh:\n  policy: priority\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n"
                      "    - { name: y, dsn: d2 }\n", &e),
            "cfg.yaml:2:3: mesh: policy priority needs 'priority', the node names from the most to the least trusted");
  CHECK_STR(parse_err("mesh:\n  priority: [z]\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n"
                      "    - { name: y, dsn: d2 }\n", &e),
            "cfg.yaml:2:13: mesh.priority: 'z' is not a node of the mesh");
  CHECK_STR(parse_err("mesh:\n  counters: [public.stock]\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n"
                      "    - { name: y, dsn: d2 }\n", &e),
            "cfg.yaml:2:13: mesh.counters: 'public.stock' is not schema.table.column");
  CHECK(strstr(parse_err("mesh:\n  policy: newest\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n"
                         "    - { name: y, dsn: d2 }\n", &e), "mesh.policy") != NULL);
}

TEST(mesh_output_plugin_reaches_every_source) {
  od_config *c = parse_ok(MESH3);
  for (int i = 0; i < c->npipelines; i++) CHECK_STR(val(&c->pipelines[i].source, "mesh_output_plugin"), "auto");
  od_config_free(c);
  c = parse_ok("mesh:\n  output_plugin: pgoutput\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n"
               "    - { name: y, dsn: d2 }\n");
  CHECK_STR(val(&c->pipelines[0].source, "mesh_output_plugin"), "pgoutput");
  CHECK_STR(val(&c->pipelines[1].source, "mesh_output_plugin"), "pgoutput");
  od_config_free(c);
  od_error e;
  CHECK(strstr(parse_err("mesh:\n  output_plugin: wal2json\n  tables: [t]\n  nodes:\n    - { name: x, dsn: d1 }\n"
                         "    - { name: y, dsn: d2 }\n", &e), "mesh.output_plugin") != NULL);
}

#define MESH_POL(extra)                                 \
  "mesh:\n"                                             \
  "  tables: [public.items, public.stock, public.p]\n"  \
  extra                                                 \
  "  nodes:\n"                                          \
  "    - { name: a, dsn: d1 }\n"                        \
  "    - { name: b, dsn: d2 }\n"

TEST(mesh_policies_per_table_reach_every_sink) {
  od_config *c = parse_ok(MESH_POL("  priority: [b, a]\n  fallback: priority\n"
                                   "  policies:\n    public.stock: priority\n"
                                   "    public.items: { policy: column_merge, fallback: last_writer_wins }\n"
                                   "    public.p: { policy: priority, priority: [a, b] }\n"));
  CHECK_INT(c->npipelines, 2);
  for (int i = 0; i < 2; i++) {
    const od_config_section *k = &c->pipelines[i].sinks[0].section;
    CHECK_STR(val(k, "mesh_policy"), "last_writer_wins");
    CHECK_STR(val(k, "mesh_fallback"), "priority");
    const od_config_entry *t = od_config_find(k, "mesh_table_policies");
    CHECK(t && t->nlist == 3);
    CHECK_STR(t->list[0], "public.stock priority priority b,a");
    CHECK_STR(t->list[1], "public.items column_merge last_writer_wins b,a");
    CHECK_STR(t->list[2], "public.p priority priority a,b");
  }
  od_config_free(c);
  c = parse_ok(MESH_POL("  policy: column_merge\n"));
  CHECK_STR(val(&c->pipelines[0].sinks[0].section, "mesh_policy"), "column_merge");
  CHECK_STR(val(&c->pipelines[0].sinks[0].section, "mesh_fallback"), "last_writer_wins");
  CHECK(od_config_find(&c->pipelines[0].sinks[0].section, "mesh_table_policies") == NULL);
  od_config_free(c);
}

TEST(mesh_policies_errors) {
  od_error e;
  CHECK_STR(parse_err(MESH_POL("  policies: { public.nope: priority }\n"), &e),
            "cfg.yaml:3:15: mesh.policies.public.nope: 'public.nope' is not one of mesh.tables; a policy names a "
            "replicated table exactly as mesh.tables lists it");
  CHECK(strstr(parse_err(MESH_POL("  policies: { public.p: newest }\n"), &e), "mesh.policies.public.p") != NULL);
  CHECK(strstr(e.msg, "column_merge") != NULL); /* the list of policies names it */
  CHECK_STR(parse_err(MESH_POL("  policies: { public.p: { policy: priority, priority: [a, z] } }\n"), &e),
            "cfg.yaml:3:55: mesh.policies.public.p.priority: 'z' is not a node of the mesh");
  CHECK(strstr(parse_err(MESH_POL("  policies: { public.p: priority }\n"), &e),
               "mesh.policies.public.p: policy priority needs a node order") != NULL);
  CHECK(strstr(parse_err(MESH_POL("  policies: { public.p: { policy: column_merge, fallback: column_merge } }\n"), &e),
               "mesh.policies.public.p.fallback") != NULL);
  CHECK(strstr(parse_err(MESH_POL("  policies: { public.p: { fallback: priority } }\n"), &e),
               "mesh.policies.public.p: missing required key 'policy'") != NULL);
  CHECK(strstr(parse_err(MESH_POL("  policies: { public.p: { policy: priority, order: [a] } }\n"), &e),
               "order") != NULL);
  /* counters on a column_merge table: accepted (a counter is merged as deltas, the other columns by
   * column; docs/MULTI_MASTER.md "Counters on a column_merge table"), per table or mesh-wide, and on
   * three nodes with fallback last_writer_wins; the fallback restriction on three nodes still holds */
  od_config *cm = parse_ok(MESH_POL("  counters: [public.p.n]\n  policies: { public.p: column_merge }\n"));
  const od_config_entry *ce = od_config_find(&cm->pipelines[0].sinks[0].section, "mesh_counters");
  CHECK(ce && ce->nlist == 1);
  CHECK_STR(ce->list[0], "public.p.n");
  od_config_free(cm);
  cm = parse_ok(MESH_POL("  policy: column_merge\n  counters: [public.p.n]\n"));
  CHECK_STR(val(&cm->pipelines[0].sinks[0].section, "mesh_policy"), "column_merge");
  od_config_free(cm);
  cm = parse_ok(MESH3 "  counters: [public.stock.qty]\n  policies: { public.stock: column_merge }\n");
  CHECK(cm->npipelines == 6);
  od_config_free(cm);
  CHECK(strstr(parse_err(MESH3 "  counters: [public.stock.qty]\n  policies: { public.stock: { policy: column_merge, "
                         "fallback: priority } }\n", &e),
               "mesh: column_merge (public.stock) on a mesh of 3 nodes needs fallback last_writer_wins") != NULL);
  CHECK(strstr(parse_err(MESH_POL("  policy: column_merge\n  fallback: priority\n"), &e),
               "policy priority needs 'priority'") != NULL);
  /* column_merge on three nodes: with fallback last_writer_wins (a version per column for every
   * write) accepted, mesh-wide or for one table; with another fallback refused. */
  od_config *c = parse_ok(MESH3 "  policies: { public.stock: column_merge }\n");
  CHECK(c->npipelines == 6);
  od_config_free(c);
  c = parse_ok("mesh:\n  name: shop\n  policy: column_merge\n  tables: [public.items]\n  nodes:\n"
               "    - { name: a, dsn: \"host=h1\" }\n    - { name: b, dsn: \"host=h2\" }\n"
               "    - { name: c, dsn: \"host=h3\" }\n");
  CHECK_STR(val(&c->pipelines[0].sinks[0].section, "mesh_policy"), "column_merge");
  od_config_free(c);
  CHECK(strstr(parse_err(MESH3 "  policies: { public.stock: { policy: column_merge, fallback: priority } }\n", &e),
               "mesh: column_merge (public.stock) on a mesh of 3 nodes needs fallback last_writer_wins") != NULL);
  CHECK(strstr(parse_err("mesh:\n  name: shop\n  policy: column_merge\n  fallback: keep_local\n  tables: "
                         "[public.items]\n  nodes:\n"
                         "    - { name: a, dsn: \"host=h1\" }\n    - { name: b, dsn: \"host=h2\" }\n"
                         "    - { name: c, dsn: \"host=h3\" }\n", &e),
               "column_merge (mesh.policy) on a mesh of 3 nodes needs fallback last_writer_wins") != NULL);
}

/* Rules on a column_merge table (docs/MULTI_MASTER.md, "Business rules and column_merge"): column
 * rules accepted (they order one column's concurrent writes); an SQL rule refused where it is
 * written, the table's policy per table or mesh-wide, a table listed without its schema; a column
 * rule on a counter column refused; an SQL rule on another table stays accepted. */
TEST(mesh_rules_on_column_merge_tables) {
  od_error e;
  od_config *c = parse_ok(MESH_POL("  policies: { public.p: column_merge }\n"
                                   "  rules: [\"public.p.v: higher wins\", \"public.p.s: new < paid\"]\n"));
  const od_config_entry *r = od_config_find(&c->pipelines[0].sinks[0].section, "mesh_rules");
  CHECK(r && r->nlist == 2);
  od_config_free(c);
  CHECK_STR(parse_err(MESH_POL("  policies: { public.p: column_merge }\n"
                               "  rules: [\"public.p.v: higher wins\", \"public.p: sql: remote.v > local.v\"]\n"), &e),
            "cfg.yaml:4:38: mesh.rules[1] 'public.p: sql: remote.v > local.v': table public.p has policy "
            "column_merge, where a row is built from several writes and an SQL rule, which judges two whole rows, "
            "would let the nodes end with different rows (docs/MULTI_MASTER.md, \"Business rules and column_merge\"). "
            "Use column rules ('schema.table.column: higher wins' or 'schema.table.column: a < b < c'), which order "
            "one column's concurrent writes there, or give the table another policy in mesh.policies");
  CHECK(strstr(parse_err(MESH_POL("  policy: column_merge\n  rules: [\"public.stock: sql: remote.n > local.n\"]\n"),
                         &e),
               "mesh.rules[0] 'public.stock: sql: remote.n > local.n': table public.stock has policy column_merge") !=
        NULL);
  CHECK(strstr(parse_err("mesh:\n  tables: [items]\n  policies: { items: { policy: column_merge } }\n"
                         "  rules: [\"public.items: sql: remote.s > local.s\"]\n  nodes:\n"
                         "    - { name: a, dsn: d1 }\n    - { name: b, dsn: d2 }\n", &e),
               "mesh.rules[0] 'public.items: sql: remote.s > local.s': table public.items has policy column_merge") !=
        NULL);
  CHECK(strstr(parse_err(MESH_POL("  policy: column_merge\n  counters: [public.p.n]\n"
                                  "  rules: [\"public.p.n: higher wins\"]\n"), &e),
               "mesh.rules[0] 'public.p.n: higher wins': public.p.n is a counter column of a column_merge table") !=
        NULL);
  /* the table's own policy overrides the mesh's column_merge; another table's rule is not its */
  c = parse_ok(MESH_POL("  policy: column_merge\n  policies: { public.p: last_writer_wins }\n"
                        "  rules: [\"public.p.v: higher wins\", \"public.p: sql: remote.v > local.v\"]\n"));
  CHECK(c->npipelines == 2);
  od_config_free(c);
  c = parse_ok(MESH_POL("  policies: { public.p: column_merge }\n  rules: [\"public.items: sql: remote.v > local.v\"]\n"));
  r = od_config_find(&c->pipelines[0].sinks[0].section, "mesh_rules");
  CHECK(r && r->nlist == 1);
  od_config_free(c);
}

/* join_from: only the sinks into the joining node get mesh_join_from; a seed that is no other node,
 * the node itself or a joining node is refused with its position. */
TEST(mesh_join_from) {
  const char *ok = "mesh:\n  tables: [public.items]\n  nodes:\n"
                   "    - { name: a, dsn: \"host=h1\" }\n    - { name: b, dsn: \"host=h2\" }\n"
                   "    - { name: c, dsn: \"host=h3\", join_from: a }\n";
  od_config *c = parse_ok(ok);
  CHECK_INT(c->npipelines, 6);
  int joined = 0;
  for (int i = 0; i < c->npipelines; i++) {
    const od_config_section *k = &c->pipelines[i].sinks[0].section;
    bool into_c = strcmp(val(k, "mesh_node"), "c") == 0;
    CHECK_STR(val(k, "mesh_join_from"), into_c ? "a" : "");
    joined += into_c;
  }
  CHECK_INT(joined, 2);
  od_config_free(c);
  od_error e;
  CHECK_STR(parse_err("mesh:\n  tables: [public.items]\n  nodes:\n    - { name: a, dsn: \"host=h1\" }\n"
                      "    - { name: b, dsn: \"host=h2\", join_from: z }\n", &e),
            "cfg.yaml:5:45: mesh.nodes[1].join_from 'z': expected the name of another node of the mesh that is not "
            "joining itself (the node whose data b copies)");
  CHECK(strstr(parse_err("mesh:\n  tables: [public.items]\n  nodes:\n    - { name: a, dsn: \"host=h1\" }\n"
                         "    - { name: b, dsn: \"host=h2\", join_from: b }\n", &e),
               "join_from 'b'") != NULL);
  CHECK(strstr(parse_err("mesh:\n  tables: [public.items]\n  nodes:\n    - { name: a, dsn: \"host=h1\" }\n"
                         "    - { name: b, dsn: \"host=h2\", join_from: c }\n"
                         "    - { name: c, dsn: \"host=h3\", join_from: a }\n", &e),
               "join_from 'c'") != NULL);
  /* column_merge tables may join (the copy carries every column's version and the tombstones' last
   * rows, src/cli/mesh_join_colmerge.c): mesh-wide or for one table, the sinks into b wait for it. */
  c = parse_ok("mesh:\n  policy: column_merge\n  tables: [public.items]\n  nodes:\n"
               "    - { name: a, dsn: \"host=h1\" }\n    - { name: b, dsn: \"host=h2\", join_from: a }\n");
  CHECK_INT(c->npipelines, 2);
  for (int i = 0; i < c->npipelines; i++) {
    const od_config_section *k = &c->pipelines[i].sinks[0].section;
    CHECK_STR(val(k, "mesh_policy"), "column_merge");
    CHECK_STR(val(k, "mesh_join_from"), strcmp(val(k, "mesh_node"), "b") == 0 ? "a" : "");
  }
  od_config_free(c);
  c = parse_ok("mesh:\n  tables: [public.items, public.p]\n  policies: { public.p: column_merge }\n"
               "  nodes:\n    - { name: a, dsn: \"host=h1\" }\n    - { name: b, dsn: \"host=h2\", join_from: a }\n");
  CHECK_INT(c->npipelines, 2);
  od_config_free(c);
  /* What still cannot work is still refused: the joining node makes three nodes, and column_merge on
   * three nodes needs fallback last_writer_wins (counted with the joining node). */
  CHECK(strstr(parse_err("mesh:\n  policy: column_merge\n  fallback: priority\n  priority: [a, b]\n  tables: "
                         "[public.items]\n  nodes:\n    - { name: a, dsn: \"host=h1\" }\n"
                         "    - { name: b, dsn: \"host=h2\" }\n    - { name: c, dsn: \"host=h3\", join_from: a }\n", &e),
               "column_merge (mesh.policy) on a mesh of 3 nodes needs fallback last_writer_wins") != NULL);
}

TEST(mesh_gc_interval_and_nodes_reach_every_sink) {
  od_config *c = parse_ok(MESH3);
  for (int i = 0; i < c->npipelines; i++) {
    const od_config_section *k = &c->pipelines[i].sinks[0].section;
    const od_config_entry *n = od_config_find(k, "mesh_nodes");
    CHECK(n && n->nlist == 3); /* every node, for the clean-up's coverage rule */
    CHECK_STR(n->list[0], "a");
    CHECK_STR(n->list[2], "c");
    CHECK(od_config_find(k, "mesh_gc_interval_s") == NULL); /* absent: the sink's default, 60 */
  }
  od_config_free(c);
  c = parse_ok(MESH_POL("  gc_interval_s: 0\n"));
  CHECK_STR(val(&c->pipelines[1].sinks[0].section, "mesh_gc_interval_s"), "0");
  od_config_free(c);
  c = parse_ok(MESH_POL("  gc_interval_s: 300\n"));
  CHECK_STR(val(&c->pipelines[0].sinks[0].section, "mesh_gc_interval_s"), "300");
  od_config_free(c);
  od_error e;
  CHECK_STR(parse_err(MESH_POL("  gc_interval_s: -1\n"), &e),
            "cfg.yaml:3:18: mesh.gc_interval_s '-1': expected whole seconds from 0 (no clean-up) to 604800; the "
            "default is 60");
  CHECK(strstr(parse_err(MESH_POL("  gc_interval_s: often\n"), &e), "mesh.gc_interval_s 'often'") != NULL);
}

TEST(mesh_on_poison_reaches_every_pipeline) {
  od_config *c = parse_ok(MESH_POL("  on_poison: dead_letter\n  poison_attempts: 5\n"));
  CHECK_INT(c->npipelines, 2);
  for (int i = 0; i < c->npipelines; i++) {
    CHECK_INT(c->pipelines[i].on_poison, OD_POISON_DEAD_LETTER);
    CHECK_INT(c->pipelines[i].poison_attempts, 5);
    CHECK_INT(c->pipelines[i].breaker.failures, 5); /* the other defaults stay */
  }
  od_config_free(c);
  od_error e;
  CHECK(strstr(parse_err(MESH_POL("  on_poison: skip\n"), &e), "mesh.on_poison") != NULL);
  CHECK(strstr(parse_err(MESH_POL("  poison_attempts: 0\n"), &e), "mesh.poison_attempts") != NULL);
  CHECK(strstr(parse_err(MESH_POL("  circuit_breaker: { failures: 2 }\n"), &e), "circuit_breaker") != NULL);
}
