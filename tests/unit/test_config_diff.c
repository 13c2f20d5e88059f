/* Unit tests for core/config_diff.c: which parts of a pipeline's effective config differ between
 * two parsed configurations (config reload), and admin credential/listen changes. */
#include "core/config_diff.h"
#include "test.h"

static od_config *parse(const char *yaml) {
  od_config *c = NULL;
  od_error e = {0};
  int rc = od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, &e);
  if (rc) fprintf(stderr, "  unexpected error: %s\n", e.msg);
  CHECK_INT(rc, OD_OK);
  return c;
}

#define ALPHA                                                        \
  "  - name: alpha\n"                                                \
  "    source: { type: postgres, dsn: \"host=x\", tables: [a] }\n"   \
  "    sink: { type: sqlite, path: /tmp/a.db }\n"
#define BETA(tables, extra)                                            \
  "  - name: beta\n"                                                   \
  "    source: { type: postgres, dsn: \"host=x\", tables: [" tables "] }\n" \
  extra                                                                \
  "    sink: { type: sqlite, path: /tmp/b.db }\n"

/* The parts of pipeline `name` that differ between configs a and b. */
static int diff(const char *a, const char *b, const char *name) {
  od_config *ca = parse(a), *cb = parse(b);
  int parts = od_config_pipeline_diff(ca, od_config_pipeline_named(ca, name), cb, od_config_pipeline_named(cb, name));
  od_config_free(ca);
  od_config_free(cb);
  return parts;
}

TEST(same_config_and_moved_pipeline_are_unchanged) {
  const char *a = "pipelines:\n" ALPHA BETA("b", "");
  CHECK_INT(diff(a, a, "alpha"), 0);
  CHECK_INT(diff(a, a, "beta"), 0);
  /* Order and positions in the file do not count; neither do comments. */
  const char *moved = "# a comment\n\npipelines:\n" BETA("b", "") ALPHA;
  CHECK_INT(diff(a, moved, "alpha"), 0);
  CHECK_INT(diff(a, moved, "beta"), 0);
}

TEST(each_part_is_named) {
  const char *a = "pipelines:\n" ALPHA BETA("b", "");
  CHECK_INT(diff(a, "pipelines:\n" ALPHA BETA("b, c", ""), "beta"), OD_CFGPART_SOURCE);
  CHECK_INT(diff(a, "pipelines:\n" ALPHA BETA("b, c", ""), "alpha"), 0); /* the other pipeline changed */
  CHECK_INT(diff(a,
                 "pipelines:\n" ALPHA BETA("b", "    transforms:\n      - { type: drop_columns, tables: [b], columns: [x] }\n"),
                 "beta"),
            OD_CFGPART_TRANSFORMS);
  CHECK_INT(diff(a, "pipelines:\n" ALPHA BETA("b", "    batch: { max_rows: 10 }\n"), "beta"), OD_CFGPART_OPTIONS);
  CHECK_INT(diff(a, "pipelines:\n" ALPHA BETA("b", "    consistency: eventual\n"), "beta"), OD_CFGPART_OPTIONS);
  CHECK_INT(diff(a, "state_dir: /tmp/other\npipelines:\n" ALPHA BETA("b", ""), "alpha"), OD_CFGPART_ROOT);
  const char *sink2 = "pipelines:\n" ALPHA
                      "  - name: beta\n"
                      "    source: { type: postgres, dsn: \"host=x\", tables: [b] }\n"
                      "    sink: { type: sqlite, path: /tmp/other.db }\n";
  CHECK_INT(diff(a, sink2, "beta"), OD_CFGPART_SINKS);
  CHECK_INT(diff(a, "pipelines:\n" ALPHA BETA("b, c", "    batch: { max_rows: 10 }\n"), "beta"),
            OD_CFGPART_SOURCE | OD_CFGPART_OPTIONS);
  /* A value and a list of the same text differ; so do "ab"+"c" and "a"+"bc". */
  CHECK_INT(diff("pipelines:\n" BETA("ab, c", ""), "pipelines:\n" BETA("a, bc", ""), "beta"), OD_CFGPART_SOURCE);
}

TEST(encryption_key_change_restarts_every_pipeline) {
  setenv("OD_TEST_K1", "0000000000000000000000000000000000000000000000000000000000000001", 1);
  setenv("OD_TEST_K2", "0000000000000000000000000000000000000000000000000000000000000002", 1);
  const char *a = "encryption: { keys: [{ id: k1, key: \"${env:OD_TEST_K1}\" }] }\npipelines:\n" ALPHA;
  const char *b = "encryption: { keys: [{ id: k1, key: \"${env:OD_TEST_K2}\" }] }\npipelines:\n" ALPHA;
  CHECK_INT(diff(a, a, "alpha"), 0);
  CHECK_INT(diff(a, b, "alpha"), OD_CFGPART_ROOT);
}

TEST(parts_text) {
  char t[128];
  od_config_parts_text(OD_CFGPART_SOURCE | OD_CFGPART_TRANSFORMS, t, sizeof t);
  CHECK_STR(t, "source, transforms");
  od_config_parts_text(0, t, sizeof t);
  CHECK_STR(t, "");
  od_config_parts_text(OD_CFGPART_ROOT, t, 8); /* truncated, terminated */
  CHECK_INT((int)strlen(t), 7);
}

#define TOKENS(v, role) "  tokens: [{ token: \"" v "\", role: " role " }]\n"
TEST(admin_changes) {
  const char *a = "admin:\n  listen: \"127.0.0.1:7070\"\n" TOKENS("0123456789abcdef-one", "admin") "pipelines:\n" ALPHA;
  const char *tok = "admin:\n  listen: \"127.0.0.1:7070\"\n" TOKENS("0123456789abcdef-two", "admin") "pipelines:\n" ALPHA;
  const char *role = "admin:\n  listen: \"127.0.0.1:7070\"\n" TOKENS("0123456789abcdef-one", "viewer") "pipelines:\n" ALPHA;
  const char *port = "admin:\n  listen: \"127.0.0.1:7071\"\n" TOKENS("0123456789abcdef-one", "admin") "pipelines:\n" ALPHA;
  od_config *ca = parse(a), *ct = parse(tok), *cr = parse(role), *cp = parse(port);
  bool listen = true;
  CHECK(!od_config_admin_auth_changed(&ca->admin, &ca->admin, &listen));
  CHECK(!listen);
  CHECK(od_config_admin_auth_changed(&ca->admin, &ct->admin, &listen));
  CHECK(!listen);
  CHECK(od_config_admin_auth_changed(&ca->admin, &cr->admin, &listen));
  CHECK(!od_config_admin_auth_changed(&ca->admin, &cp->admin, &listen));
  CHECK(listen);
  /* The admin section is not part of any pipeline's effective config. */
  CHECK_INT(od_config_pipeline_diff(ca, &ca->pipelines[0], ct, &ct->pipelines[0]), 0);
  od_config_free(ca);
  od_config_free(ct);
  od_config_free(cr);
  od_config_free(cp);
}
