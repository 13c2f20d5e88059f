/* Unit tests for the configuration loader (src/core/config.c): the happy path and defaults,
 * sizes, lists, ${env:}/${file:} references and the $${ escape, one test per error with its exact
 * FILE:LINE:COL, the adapter accessors, and the rule that a secret never reaches a message. */
#include "odsync/config.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

#define MIB (1024UL * 1024UL)

/* Minimal valid pipeline; callers append more text after it. */
#define PIPE                 \
  "pipelines:\n"             \
  "  - name: shop\n"         \
  "    source:\n"            \
  "      type: postgres\n"   \
  "    sink:\n"              \
  "      type: sqlite\n"

static od_config *parse_ok(const char *yaml) {
  od_config *c = NULL;
  od_error e = {0};
  int rc = od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, &e);
  if (rc) fprintf(stderr, "  unexpected error: %s\n", e.msg);
  CHECK_INT(rc, OD_OK);
  CHECK(c != NULL);
  return c;
}

/* Parse text that must fail with OD_ECONFIG; returns the message (in *e). */
static const char *parse_err(const char *yaml, od_error *e) {
  od_config *c = (od_config *)1;
  memset(e, 0, sizeof *e);
  int rc = od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, e);
  CHECK_INT(rc, OD_ECONFIG);
  CHECK(c == NULL);
  CHECK_INT(e->code, OD_ECONFIG);
  return e->msg;
}

/* A temp file with `text`; path written to buf. */
static void temp_file(char *buf, size_t n, const char *text) {
  snprintf(buf, n, "/tmp/odsync-test-config-XXXXXX");
  int fd = mkstemp(buf);
  CHECK(fd >= 0);
  size_t len = strlen(text);
  CHECK_INT(write(fd, text, len), (long long)len);
  close(fd);
}

/* ------------------------------------------------------------ happy paths */

TEST(happy_path_uses_every_default) {
  od_config *c = parse_ok(
      "pipelines:\n"
      "  - name: shop\n"
      "    source:\n"
      "      type: postgres\n"
      "      dsn: \"host=x\"\n"
      "    sink:\n"
      "      type: sqlite\n"
      "      path: ./a.db\n");
  CHECK_STR(c->file, "cfg.yaml");
  CHECK_STR(c->state_dir, "./odsync-state");
  CHECK_STR(c->log_level, "info");
  CHECK_INT(c->npipelines, 1);
  od_pipeline_config *p = &c->pipelines[0];
  CHECK_STR(p->name, "shop");
  CHECK_STR(p->path, "pipelines[0]");
  CHECK_INT(p->line, 2);
  CHECK_INT(p->col, 11);
  CHECK_INT(p->batch.max_rows, 5000);
  CHECK_INT(p->batch.max_bytes, 64 * MIB);
  CHECK_INT(p->batch.max_delay_ms, 20);
  CHECK_INT(p->queue.max_rows, 100000);
  CHECK_INT(p->queue.max_bytes, 256 * MIB);
  CHECK_STR(p->source.type, "postgres");
  CHECK_STR(p->source.path, "pipelines[0].source");
  CHECK(p->source.file == c->file);
  CHECK_INT(p->source.line, 4);
  CHECK_INT(p->source.col, 7);
  CHECK_INT(p->source.nentries, 1);
  CHECK_STR(p->source.entries[0].key, "dsn");
  CHECK_STR(p->source.entries[0].value, "host=x");
  CHECK(p->source.entries[0].list == NULL);
  CHECK(!p->source.entries[0].secret);
  CHECK_INT(p->source.entries[0].line, 5);
  CHECK_INT(p->source.entries[0].col, 12);
  CHECK_STR(p->sinks[0].section.type, "sqlite");
  CHECK_STR(p->sinks[0].section.path, "pipelines[0].sink");
  const char *path = NULL;
  od_error e = {0};
  CHECK_INT(od_config_string(&p->sinks[0].section, "path", NULL, &path, &e), OD_OK);
  CHECK_STR(path, "./a.db");
  od_config_free(c);
}

TEST(full_example_with_every_key) {
  setenv("ODSYNC_TEST_SHOP_PW", "pw-from-env", 1);
  od_config *c = parse_ok(
      "state_dir: /var/lib/odsync\n"
      "log_level: debug\n"
      "pipelines:\n"
      "  - name: shop\n"
      "    source:\n"
      "      type: postgres\n"
      "      dsn: \"host=127.0.0.1 dbname=shop password=${env:ODSYNC_TEST_SHOP_PW}\"\n"
      "      slot: odsync_shop\n"
      "      publication: odsync_shop\n"
      "      tables: [public.orders, public.customers]\n"
      "    sink:\n"
      "      type: sqlite\n"
      "      path: ./shop-analytics.db\n"
      "    batch: { max_rows: 1000, max_bytes: 67108864, max_delay_ms: 0 }\n"
      "    queue: { max_rows: 1000, max_bytes: 268435456 }\n"
      "  - name: Billing_2\n"
      "    source: {type: postgres}\n"
      "    sink: {type: sqlite}\n"
      "    batch: ~\n");
  CHECK_STR(c->state_dir, "/var/lib/odsync");
  CHECK_STR(c->log_level, "debug");
  CHECK_INT(c->npipelines, 2);
  od_pipeline_config *p = &c->pipelines[0];
  CHECK_INT(p->batch.max_rows, 1000);
  CHECK_INT(p->batch.max_bytes, 67108864);
  CHECK_INT(p->batch.max_delay_ms, 0);
  CHECK_INT(p->queue.max_rows, 1000);
  CHECK_INT(p->queue.max_bytes, 268435456);
  const od_config_entry *dsn = od_config_find(&p->source, "dsn");
  CHECK(dsn != NULL);
  CHECK_STR(dsn->value, "host=127.0.0.1 dbname=shop password=pw-from-env");
  CHECK(dsn->secret);
  CHECK(!od_config_find(&p->source, "slot")->secret);
  CHECK(od_config_find(&p->source, "type") == NULL); /* type is section.type, not an entry */
  CHECK_STR(c->pipelines[1].name, "Billing_2");
  CHECK_STR(c->pipelines[1].path, "pipelines[1]");
  CHECK_STR(c->pipelines[1].source.path, "pipelines[1].source");
  CHECK_INT(c->pipelines[1].source.nentries, 0);
  CHECK_INT(c->pipelines[1].batch.max_rows, 5000); /* batch: ~ keeps the defaults */
  od_config_free(c);
}

TEST(load_reads_a_file_and_names_it_in_messages) {
  char path[64];
  temp_file(path, sizeof path, PIPE "log_level: warn\n");
  od_config *c = NULL;
  od_error e = {0};
  CHECK_INT(od_config_load(path, &c, &e), OD_OK);
  CHECK_STR(c->file, path);
  CHECK_STR(c->log_level, "warn");
  CHECK(c->pipelines[0].sinks[0].section.file == c->file);
  od_config_free(c);

  char path2[64];
  temp_file(path2, sizeof path2, PIPE "bogus: 1\n");
  CHECK_INT(od_config_load(path2, &c, &e), OD_ECONFIG);
  char want[128];
  snprintf(want, sizeof want, "%s:7:1: unknown top-level key 'bogus'", path2);
  CHECK_CONTAINS(e.msg, want);
  unlink(path);
  unlink(path2);
  od_config_free(NULL); /* allowed */
}

TEST(sizes_accept_units) {
  static const struct {
    const char *text;
    unsigned long long want;
  } cases[] = {
      {"67108864", 67108864ULL}, {"64MiB", 64ULL * MIB}, {"64MB", 64000000ULL},
      {"512KiB", 512ULL * 1024}, {"1GiB", 1024ULL * MIB}, {"2 MiB", 2ULL * MIB},
      {"64mib", 64ULL * MIB},    {"4096B", 4096ULL},      {"1kb", 1000ULL}, /* below the 1KiB minimum */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char yaml[512];
    snprintf(yaml, sizeof yaml, PIPE "    batch:\n      max_bytes: %s\n", cases[i].text);
    if (cases[i].want < 1024) {
      od_error e;
      CHECK_CONTAINS(parse_err(yaml, &e), "cfg.yaml:8:18: pipelines[0].batch.max_bytes: '1kb' is out of range; expected 1KiB..4GiB");
      continue;
    }
    od_config *c = parse_ok(yaml);
    CHECK_INT(c->pipelines[0].batch.max_bytes, cases[i].want);
    od_config_free(c);
  }
  od_config *c = parse_ok(PIPE "    queue: {max_bytes: 1GiB, max_rows: 250000}\n");
  CHECK_INT(c->pipelines[0].queue.max_bytes, 1024ULL * MIB);
  CHECK_INT(c->pipelines[0].queue.max_rows, 250000);
  od_config_free(c);
}

TEST(error_malformed_size) {
  od_error e;
  const char *m = parse_err(PIPE "    batch:\n      max_bytes: 64 MBs\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:8:18: pipelines[0].batch.max_bytes: '64 MBs' is not a size;");
  CHECK_CONTAINS(m, "expected bytes with an optional unit");
  m = parse_err(PIPE "    queue: {max_bytes: 512KiB}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:24: pipelines[0].queue.max_bytes: '512KiB' is out of range; expected 1MiB..1TiB");
  m = parse_err(PIPE "    queue: {max_bytes: 99999999999999999999999}\n", &e);
  CHECK_CONTAINS(m, "is out of range");
}

TEST(lists_flow_block_and_scalar) {
  od_config *c = parse_ok(
      "pipelines:\n"
      "  - name: shop\n"
      "    source:\n"
      "      type: postgres\n"
      "      tables: [public.orders, \"public.customers\"]\n"
      "      block:\n"
      "        - a.b\n"
      "        - c.d\n"
      "        - e.f\n"
      "      one: public.only\n"
      "      empty: []\n"
      "      nothing:\n"
      "    sink: {type: sqlite}\n");
  const od_config_section *s = &c->pipelines[0].source;
  char *const *list = NULL;
  int n = -1;
  od_error e = {0};
  CHECK_INT(od_config_list(s, "tables", &list, &n, &e), OD_OK);
  CHECK_INT(n, 2);
  CHECK_STR(list[0], "public.orders");
  CHECK_STR(list[1], "public.customers");
  CHECK(list[2] == NULL);
  CHECK_INT(od_config_list(s, "block", &list, &n, &e), OD_OK);
  CHECK_INT(n, 3);
  CHECK_STR(list[2], "e.f");
  const od_config_entry *blk = od_config_find(s, "block");
  CHECK_INT(blk->line, 7);
  CHECK_INT(blk->col, 9);
  CHECK(blk->value == NULL);
  CHECK_INT(od_config_list(s, "one", &list, &n, &e), OD_OK);
  CHECK_INT(n, 1);
  CHECK_STR(list[0], "public.only");
  CHECK_INT(od_config_list(s, "empty", &list, &n, &e), OD_OK);
  CHECK_INT(n, 0);
  CHECK_INT(od_config_list(s, "nothing", &list, &n, &e), OD_OK);
  CHECK_INT(n, 0);
  CHECK_INT(od_config_list(s, "absent", &list, &n, &e), OD_OK);
  CHECK_INT(n, 0);
  CHECK(list == NULL);
  /* a list where a single value is wanted */
  const char *str = NULL;
  CHECK_INT(od_config_string(s, "tables", NULL, &str, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:5:15: pipelines[0].source.tables: expected a single value, got a list");
  od_config_free(c);
}

/* ------------------------------------------------------------ references */

TEST(env_references_resolve_and_mark_secret) {
  setenv("ODSYNC_TEST_USER", "alice", 1);
  setenv("ODSYNC_TEST_PW", "s3cret", 1);
  setenv("ODSYNC_TEST_ROWS", "777", 1);
  od_config *c = parse_ok(
      "pipelines:\n"
      "  - name: shop\n"
      "    source:\n"
      "      type: postgres\n"
      "      dsn: user=${env:ODSYNC_TEST_USER} password=${env:ODSYNC_TEST_PW} port=5432\n"
      "      tables: [a.b, \"${env:ODSYNC_TEST_USER}.t\"]\n"
      "    sink: {type: sqlite}\n"
      "    batch: {max_rows: \"${env:ODSYNC_TEST_ROWS}\"}\n");
  const od_config_section *s = &c->pipelines[0].source;
  CHECK_STR(od_config_find(s, "dsn")->value, "user=alice password=s3cret port=5432");
  CHECK(od_config_find(s, "dsn")->secret);
  CHECK_STR(od_config_find(s, "tables")->list[1], "alice.t");
  CHECK(od_config_find(s, "tables")->secret);
  CHECK_INT(c->pipelines[0].batch.max_rows, 777);
  od_config_free(c);
}

TEST(error_env_variable_not_set) {
  unsetenv("ODSYNC_TEST_UNSET_VAR");
  od_error e;
  const char *m = parse_err(
      "pipelines:\n"
      "  - name: shop\n"
      "    source:\n"
      "      type: postgres\n"
      "      dsn: \"password=${env:ODSYNC_TEST_UNSET_VAR}\"\n"
      "    sink: {type: sqlite}\n",
      &e);
  CHECK_CONTAINS(m, "cfg.yaml:5:12: environment variable ODSYNC_TEST_UNSET_VAR is not set "
                    "(referenced by pipelines[0].source.dsn)");
}

TEST(file_references_strip_one_newline) {
  char p1[64], p2[64], yaml[1024];
  temp_file(p1, sizeof p1, "filepw\n");
  temp_file(p2, sizeof p2, "two\n\n");
  snprintf(yaml, sizeof yaml,
           PIPE "      dsn: \"password=${file:%s} x\"\n      other: ${file:%s}\n", p1, p2);
  od_config *c = parse_ok(yaml);
  const od_config_section *s = &c->pipelines[0].sinks[0].section;
  CHECK_STR(od_config_find(s, "dsn")->value, "password=filepw x");
  CHECK(od_config_find(s, "dsn")->secret);
  CHECK_STR(od_config_find(s, "other")->value, "two\n");
  od_config_free(c);
  unlink(p1);
  unlink(p2);
}

TEST(error_file_reference_unreadable) {
  od_error e;
  const char *m = parse_err(PIPE "      dsn: ${file:/nonexistent/odsync/pw}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:12: cannot read /nonexistent/odsync/pw (referenced by "
                    "pipelines[0].sink.dsn): No such file or directory");
}

TEST(escape_dollar_dollar_brace_is_literal) {
  od_config *c = parse_ok(PIPE "      a: \"cost $${HOME} and $$x and $ alone\"\n      b: $${env:X}\n");
  const od_config_section *s = &c->pipelines[0].sinks[0].section;
  CHECK_STR(od_config_find(s, "a")->value, "cost ${HOME} and $$x and $ alone");
  CHECK(!od_config_find(s, "a")->secret);
  CHECK_STR(od_config_find(s, "b")->value, "${env:X}");
  CHECK(!od_config_find(s, "b")->secret);
  od_config_free(c);
}

TEST(error_bad_references) {
  od_error e;
  const char *m = parse_err(PIPE "      a: \"${vault:x}\"\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:10: pipelines[0].sink.a: unknown reference '${vault:x}'; expected "
                    "${env:NAME} or ${file:PATH}");
  m = parse_err(PIPE "      a: \"x ${env:FOO\"\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:10: pipelines[0].sink.a: unterminated reference");
  m = parse_err(PIPE "      a: \"${env:}\"\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:10: pipelines[0].sink.a: invalid environment variable name");
}

/* Every message the loader or an accessor can produce about a value that came from a reference
 * withholds the value. */
TEST(secret_value_never_appears_in_an_error) {
  static const char *const secret_values[] = {"hunter2secret", "99999999", "hunter2-secret",
                                              "hunter2secret_hunter2secret_hunter2secret_hunter2"};
  static const char *const templates[] = {
      PIPE "    batch: {max_rows: \"${env:ODSYNC_TEST_SECRET}\"}\n",
      PIPE "    batch: {max_rows: \"1${env:ODSYNC_TEST_SECRET}\"}\n",
      PIPE "    batch: {max_delay_ms: \"${env:ODSYNC_TEST_SECRET}\"}\n",
      PIPE "    batch: {max_bytes: \"${env:ODSYNC_TEST_SECRET}\"}\n",
      PIPE "    queue: {max_rows: \"${env:ODSYNC_TEST_SECRET}\"}\n",
      PIPE "    queue: {max_bytes: \"${env:ODSYNC_TEST_SECRET}x\"}\n",
      "log_level: ${env:ODSYNC_TEST_SECRET}\n" PIPE,
      "pipelines:\n  - name: \"${env:ODSYNC_TEST_SECRET}!\"\n    source: {type: pg}\n    sink: {type: s}\n",
      "pipelines:\n  - name: \"${env:ODSYNC_TEST_SECRET}${env:ODSYNC_TEST_SECRET}\"\n"
      "    source: {type: pg}\n    sink: {type: s}\n",
  };
  for (size_t v = 0; v < sizeof secret_values / sizeof secret_values[0]; v++) {
    const char *secret = secret_values[v];
    setenv("ODSYNC_TEST_SECRET", secret, 1);
    for (size_t t = 0; t < sizeof templates / sizeof templates[0]; t++) {
      od_config *c = NULL;
      od_error e = {0};
      int rc = od_config_parse(templates[t], strlen(templates[t]), "cfg.yaml", &c, &e);
      if (rc == OD_OK) { /* a value that happens to be valid for this field */
        od_config_free(c);
        continue;
      }
      CHECK_INT(rc, OD_ECONFIG);
      if (strstr(e.msg, secret)) OD_TEST_FAIL("secret leaked: %s", e.msg);
      CHECK_CONTAINS(e.msg, "not shown");
    }
  }
  /* duplicate names that are both secret */
  setenv("ODSYNC_TEST_SECRET", "hunter2secret", 1);
  od_error e;
  const char *m = parse_err("pipelines:\n"
                            "  - {name: \"${env:ODSYNC_TEST_SECRET}\", source: {type: a}, sink: {type: b}}\n"
                            "  - {name: \"${env:ODSYNC_TEST_SECRET}\", source: {type: a}, sink: {type: b}}\n",
                            &e);
  CHECK_CONTAINS(m, "cfg.yaml:3:12: duplicate pipeline name");
  CHECK(strstr(m, "hunter2secret") == NULL);

  /* accessors on a secret entry, from an env and from a file reference */
  char fpath[64], yaml[512];
  temp_file(fpath, sizeof fpath, "filesecret-77\n");
  snprintf(yaml, sizeof yaml,
           PIPE "      port: ${env:ODSYNC_TEST_SECRET}\n      flag: x${file:%s}\n", fpath);
  od_config *c = parse_ok(yaml);
  const od_config_section *s = &c->pipelines[0].sinks[0].section;
  long l;
  bool b;
  CHECK_INT(od_config_int(s, "port", 1, 1, 65535, &l, &e), OD_ECONFIG);
  CHECK(strstr(e.msg, "hunter2secret") == NULL);
  CHECK_CONTAINS(e.msg, "cfg.yaml:7:13: pipelines[0].sink.port:");
  CHECK_INT(od_config_int(s, "flag", 1, 1, 65535, &l, &e), OD_ECONFIG);
  CHECK(strstr(e.msg, "filesecret") == NULL);
  CHECK_INT(od_config_bool(s, "port", false, &b, &e), OD_ECONFIG);
  CHECK(strstr(e.msg, "hunter2secret") == NULL);
  CHECK_INT(od_config_bool(s, "flag", false, &b, &e), OD_ECONFIG);
  CHECK(strstr(e.msg, "filesecret") == NULL);
  od_config_free(c);
  unlink(fpath);
}

/* ------------------------------------------------------------ one test per error */

TEST(error_unknown_top_level_key_suggests_closest) {
  od_error e;
  const char *m = parse_err("state_dir: x\npipeline:\n  - name: a\n", &e);
  CHECK_STR(m, "cfg.yaml:2:1: unknown top-level key 'pipeline'; did you mean 'pipelines'? "
               "(allowed: state_dir, log_level, log, admin, tracing, encryption, audit, pipelines, mesh)");
  m = parse_err(PIPE "zzz: 1\n", &e);
  CHECK_STR(m, "cfg.yaml:7:1: unknown top-level key 'zzz'; expected one of: state_dir, log_level, log, admin, tracing, encryption, audit, pipelines, mesh");
}

TEST(error_unknown_pipeline_and_batch_keys) {
  od_error e;
  const char *m = parse_err(PIPE "    sinc: {}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:5: unknown key 'sinc' in pipelines[0]; did you mean 'sink'?");
  m = parse_err(PIPE "    sinks: [{name: b, type: sqlite}]\n", &e);
  CHECK_CONTAINS(m, "pipelines[0]: both 'sink' and 'sinks' are set");
  m = parse_err(PIPE "    batch: {max_row: 5}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:13: unknown key 'max_row' in pipelines[0].batch; did you mean 'max_rows'? "
                    "(allowed: max_rows, max_bytes, max_delay_ms, adaptive, min_rows, target_latency_ms, linger)");
}

TEST(error_wrong_node_kind) {
  od_error e;
  const char *m = parse_err("pipelines:\n  - name: shop\n    source: [a, b]\n", &e);
  CHECK_STR(m, "cfg.yaml:3:13: pipelines[0].source: expected a mapping, got a sequence");
  m = parse_err("pipelines: shop\n", &e);
  CHECK_STR(m, "cfg.yaml:1:12: pipelines: expected a list of pipelines, got a scalar");
  m = parse_err("- a\n- b\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:1:1: top level: expected a mapping");
  m = parse_err(PIPE "    batch: 5\n", &e);
  CHECK_STR(m, "cfg.yaml:7:12: pipelines[0].batch: expected a mapping, got a scalar");
  m = parse_err("log_level: [info]\n" PIPE, &e);
  CHECK_STR(m, "cfg.yaml:1:12: log_level: expected a scalar, got a sequence");
}

TEST(error_nested_mapping_in_section) {
  od_error e;
  const char *m = parse_err(PIPE "      opts:\n        a: 1\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:8:9: pipelines[0].sink.opts: nested mappings are not supported here");
  m = parse_err(PIPE "      tables: [a, [b]]\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:19: pipelines[0].sink.tables[1]: expected a scalar list item, got a sequence");
}

TEST(error_missing_required_keys_point_at_mapping_start) {
  od_error e;
  const char *m = parse_err("pipelines:\n  - name: shop\n    source:\n      type: postgres\n", &e);
  CHECK_STR(m, "cfg.yaml:2:5: pipelines[0]: missing required key 'sink'; expected a mapping with "
               "'type: sqlite' and its settings (or 'sinks:', a list of named sinks)");
  m = parse_err("pipelines:\n  - name: shop\n    source:\n      dsn: x\n    sink: {type: sqlite}\n", &e);
  CHECK_STR(m, "cfg.yaml:4:7: pipelines[0].source: missing required key 'type'; expected e.g. 'type: postgres'");
  m = parse_err("pipelines:\n  - source: {type: a}\n    sink: {type: b}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:2:5: pipelines[0]: missing required key 'name'");
  m = parse_err("state_dir: x\nlog_level: info\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:1:1: missing required key 'pipelines'");
  m = parse_err("pipelines: []\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:1:12: pipelines is empty; expected at least one pipeline");
}

TEST(error_duplicate_pipeline_name_points_at_second) {
  od_error e;
  const char *m = parse_err(PIPE "  - name: shop\n    source: {type: postgres}\n    sink: {type: sqlite}\n", &e);
  CHECK_STR(m, "cfg.yaml:7:11: duplicate pipeline name 'shop' (first used by pipelines[0] at 2:11); "
               "expected each pipeline name to be unique");
}

TEST(error_invalid_pipeline_name) {
  od_error e;
  const char *m = parse_err("pipelines:\n  - name: shop-1\n    source: {type: a}\n    sink: {type: b}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:2:11: pipelines[0].name: 'shop-1' contains an invalid character at position 5");
  CHECK_CONTAINS(m, "[A-Za-z0-9_]+");
  m = parse_err("pipelines:\n  - name: \"\"\n    source: {type: a}\n    sink: {type: b}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:2:11: pipelines[0].name is empty");
  m = parse_err("pipelines:\n  - name: a23456789012345678901234567890123456789012345678x\n"
                "    source: {type: a}\n    sink: {type: b}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:2:11: pipelines[0].name: 'a23456789012345678901234567890123456789012345678x' "
                    "is 49 characters long; expected at most 48");
  od_config *c = parse_ok("pipelines:\n  - name: a23456789012345678901234567890123456789012345678\n"
                          "    source: {type: a}\n    sink: {type: b}\n");
  od_config_free(c);
}

TEST(error_number_out_of_range) {
  od_error e;
  const char *m = parse_err(PIPE "    batch:\n      max_rows: 0\n", &e);
  CHECK_STR(m, "cfg.yaml:8:17: pipelines[0].batch.max_rows: '0' is out of range; expected 1..1000000");
  m = parse_err(PIPE "    batch: {max_delay_ms: 60001}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:27: pipelines[0].batch.max_delay_ms: '60001' is out of range; expected 0..60000");
  m = parse_err(PIPE "    queue: {max_rows: 999}\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:7:23: pipelines[0].queue.max_rows: '999' is out of range; expected 1000..");
  m = parse_err(PIPE "    batch: {max_rows: 99999999999999999999999999}\n", &e);
  CHECK_CONTAINS(m, "is out of range; expected 1..1000000");
  m = parse_err(PIPE "    batch: {max_rows: -5}\n", &e);
  CHECK_CONTAINS(m, "'-5' is out of range");
}

TEST(error_malformed_number) {
  od_error e;
  const char *m = parse_err(PIPE "    batch:\n      max_rows: 12abc\n", &e);
  CHECK_STR(m, "cfg.yaml:8:17: pipelines[0].batch.max_rows: '12abc' is not an integer; expected a "
               "whole number in 1..1000000");
  m = parse_err(PIPE "    batch: {max_delay_ms: \"\"}\n", &e);
  CHECK_CONTAINS(m, "'' is not an integer");
}

TEST(error_yaml_syntax) {
  od_error e;
  const char *m = parse_err("pipelines:\n  - name: shop\n    source: [a, b\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:4:1: YAML syntax error: did not find expected ',' or ']' "
                    "(while parsing a flow sequence started at 3:13)");
  m = parse_err("state_dir: a\n  log_level: b: c\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:2:12: YAML syntax error: mapping values are not allowed in this context");
  m = parse_err("state_dir: *nope\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:1:12: YAML syntax error: found undefined alias");
  m = parse_err("pipelines:\n\t- name: x\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:2:1: YAML syntax error: found character that cannot start any token");
  CHECK_CONTAINS(m, "indent with spaces, not tabs");
  m = parse_err("state_dir: ok\nlog_level: a\xff\n", &e);
  CHECK_STR(m, "cfg.yaml:2:13: YAML syntax error: invalid leading UTF-8 octet; expected valid YAML");
}

TEST(error_empty_file) {
  od_error e;
  CHECK_STR(parse_err("", &e), "cfg.yaml:1:1: the configuration is empty; expected a mapping with at "
                               "least 'pipelines'");
  CHECK_CONTAINS(parse_err("# only a comment\n\n", &e), "cfg.yaml:1:1: the configuration is empty");
}

TEST(error_missing_file) {
  od_config *c = (od_config *)1;
  od_error e = {0};
  CHECK_INT(od_config_load("/nonexistent/odsync.yaml", &c, &e), OD_ECONFIG);
  CHECK(c == NULL);
  CHECK_STR(e.msg, "cannot read /nonexistent/odsync.yaml: No such file or directory");
}

TEST(error_duplicate_key_in_one_mapping) {
  od_error e;
  const char *m = parse_err("pipelines:\n  - name: shop\n    source:\n      type: postgres\n"
                            "      slot: a\n      slot: b\n    sink: {type: sqlite}\n",
                            &e);
  CHECK_STR(m, "cfg.yaml:6:7: duplicate key 'slot' in pipelines[0].source (first at 5:7); each key "
               "may appear once");
  m = parse_err("log_level: info\n" PIPE "log_level: warn\n", &e);
  CHECK_CONTAINS(m, "cfg.yaml:8:1: duplicate key 'log_level' in the top-level mapping (first at 1:1)");
}

TEST(error_log_level) {
  od_error e;
  CHECK_STR(parse_err("log_level: inf\n" PIPE, &e),
            "cfg.yaml:1:12: log_level 'inf' is not a log level; did you mean 'info'? (expected one "
            "of error, warn, info, debug)");
  CHECK_CONTAINS(parse_err("log_level: verbose\n" PIPE, &e),
                 "cfg.yaml:1:12: log_level 'verbose' is not a log level; expected one of");
}

TEST(error_second_document) {
  od_error e;
  CHECK_CONTAINS(parse_err(PIPE "---\nstate_dir: x\n", &e), "cfg.yaml:7:1: a second YAML document");
}

/* ------------------------------------------------------------ accessors */

static od_config *accessor_config(void) {
  return parse_ok("pipelines:\n"
                  "  - name: shop\n"
                  "    source:\n"
                  "      type: postgres\n"
                  "      port: 5432\n"
                  "      big: 70000\n"
                  "      word: abc\n"
                  "      t1: yes\n"
                  "      t2: \"On\"\n"
                  "      t3: 1\n"
                  "      f1: off\n"
                  "      f2: FALSE\n"
                  "      f3: 0\n"
                  "      slott: x\n"
                  "      empty: \"\"\n"
                  "    sink: {type: sqlite}\n");
}

TEST(accessor_int_checks_range) {
  od_config *c = accessor_config();
  const od_config_section *s = &c->pipelines[0].source;
  od_error e = {0};
  long v = 0;
  CHECK_INT(od_config_int(s, "port", 1, 1, 65535, &v, &e), OD_OK);
  CHECK_INT(v, 5432);
  CHECK_INT(od_config_int(s, "absent", 42, 1, 65535, &v, &e), OD_OK);
  CHECK_INT(v, 42);
  CHECK_INT(od_config_int(s, "big", 1, 1, 65535, &v, &e), OD_ECONFIG);
  CHECK_STR(e.msg, "cfg.yaml:6:12: pipelines[0].source.big: '70000' is out of range; expected 1..65535");
  CHECK_INT(od_config_int(s, "word", 1, 1, 65535, &v, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:7:13: pipelines[0].source.word: 'abc' is not an integer; expected a "
                        "whole number in 1..65535");
  od_config_free(c);
}

TEST(accessor_bool_spellings) {
  od_config *c = accessor_config();
  const od_config_section *s = &c->pipelines[0].source;
  od_error e = {0};
  bool b;
  const char *yes[] = {"t1", "t2", "t3"}, *no[] = {"f1", "f2", "f3"};
  for (int i = 0; i < 3; i++) {
    b = false;
    CHECK_INT(od_config_bool(s, yes[i], false, &b, &e), OD_OK);
    CHECK(b);
    b = true;
    CHECK_INT(od_config_bool(s, no[i], true, &b, &e), OD_OK);
    CHECK(!b);
  }
  CHECK_INT(od_config_bool(s, "absent", true, &b, &e), OD_OK);
  CHECK(b);
  CHECK_INT(od_config_bool(s, "word", true, &b, &e), OD_ECONFIG);
  CHECK_STR(e.msg, "cfg.yaml:7:13: pipelines[0].source.word: 'abc' is not a boolean; expected "
                   "true/false, yes/no, on/off or 1/0");
  od_config_free(c);
}

TEST(accessor_string_and_require) {
  od_config *c = accessor_config();
  const od_config_section *s = &c->pipelines[0].source;
  od_error e = {0};
  const char *v = NULL;
  CHECK_INT(od_config_string(s, "absent", "dflt", &v, &e), OD_OK);
  CHECK_STR(v, "dflt");
  CHECK_INT(od_config_string(s, "absent", NULL, &v, &e), OD_OK);
  CHECK(v == NULL);
  CHECK_INT(od_config_string(s, "word", NULL, &v, &e), OD_OK);
  CHECK_STR(v, "abc");
  CHECK_INT(od_config_require_string(s, "word", &v, &e), OD_OK);
  CHECK_STR(v, "abc");
  CHECK_INT(od_config_require_string(s, "dsn", &v, &e), OD_ECONFIG);
  CHECK_STR(e.msg, "cfg.yaml:4:7: pipelines[0].source: missing required key 'dsn'; add 'dsn: ...'");
  CHECK_INT(od_config_require_string(s, "empty", &v, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:15:14: pipelines[0].source.empty is empty");
  od_config_free(c);
}

TEST(accessor_check_keys_suggests) {
  od_config *c = accessor_config();
  const od_config_section *s = &c->pipelines[0].source;
  od_error e = {0};
  static const char *const all[] = {"port", "big", "word", "t1", "t2", "t3", "f1", "f2", "f3",
                                    "slott", "empty", NULL};
  CHECK_INT(od_config_check_keys(s, all, &e), OD_OK);
  static const char *const pg[] = {"dsn", "slot", "publication", "tables", "port", "big", "word",
                                   "t1", "t2", "t3", "f1", "f2", "f3", "empty", NULL};
  CHECK_INT(od_config_check_keys(s, pg, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:14:14: unknown key 'slott' in pipelines[0].source; did you mean "
                        "'slot'? (allowed: dsn, slot, publication, tables, port");
  static const char *const few[] = {"dsn", NULL};
  CHECK_INT(od_config_check_keys(s, few, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "unknown key 'port' in pipelines[0].source; expected one of: dsn");
  od_config_free(c);
}

/* ------------------------------------------------------------ schema_changes */

TEST(schema_changes_policy_default_and_values) {
  od_config *c = parse_ok(PIPE);
  CHECK_INT(c->pipelines[0].schema_changes, OD_SCHEMA_APPLY);
  od_config_free(c);
  c = parse_ok(PIPE "    schema_changes: ignore\n");
  CHECK_INT(c->pipelines[0].schema_changes, OD_SCHEMA_IGNORE);
  od_config_free(c);
  c = parse_ok(PIPE "    schema_changes: stop\n");
  CHECK_INT(c->pipelines[0].schema_changes, OD_SCHEMA_STOP);
  od_config_free(c);
  c = parse_ok(PIPE "    schema_changes: \"apply\"\n");
  CHECK_INT(c->pipelines[0].schema_changes, OD_SCHEMA_APPLY);
  od_config_free(c);
}

TEST(error_schema_changes_policy) {
  od_error e;
  CHECK_STR(parse_err(PIPE "    schema_changes: stpo\n", &e),
            "cfg.yaml:7:21: pipelines[0].schema_changes: 'stpo' is not a schema change policy; did you "
            "mean 'stop'? (expected one of apply, ignore, stop)");
  CHECK_STR(parse_err(PIPE "    schema_changes: rewrite-everything\n", &e),
            "cfg.yaml:7:21: pipelines[0].schema_changes: 'rewrite-everything' is not a schema change "
            "policy; expected one of apply, ignore, stop");
  CHECK_CONTAINS(parse_err(PIPE "    schema_changes: [apply]\n", &e),
                 "cfg.yaml:7:21: pipelines[0].schema_changes: expected a scalar, got a sequence");
  CHECK_CONTAINS(parse_err(PIPE "    schema_change: stop\n", &e),
                 "cfg.yaml:7:5: unknown key 'schema_change' in pipelines[0]; did you mean 'schema_changes'?");
}

/* ------------------------------------------------- consistency, workers, adaptive batching */

TEST(consistency_workers_and_adaptive_batching) {
  od_config *c = parse_ok(PIPE);
  CHECK_INT(c->pipelines[0].consistency, OD_CONSISTENCY_STRONG);
  CHECK_INT(c->pipelines[0].apply_workers, 4);
  CHECK_INT(c->pipelines[0].apply_parallel_min_rows, 256);
  CHECK(!c->pipelines[0].batch.adaptive);
  CHECK_INT(c->pipelines[0].batch.min_rows, 100);
  CHECK_INT(c->pipelines[0].batch.target_latency_ms, 50);
  CHECK_INT(c->pipelines[0].batch.linger, OD_LINGER_AUTO);
  CHECK(!c->pipelines[0].batch.max_rows_set && !c->pipelines[0].batch.max_delay_set);
  od_config_free(c);
  c = parse_ok(PIPE "    batch: {linger: true, max_rows: 5000}\n");
  CHECK_INT(c->pipelines[0].batch.linger, OD_LINGER_ON);
  CHECK(c->pipelines[0].batch.max_rows_set && !c->pipelines[0].batch.max_delay_set);
  od_config_free(c);
  c = parse_ok(PIPE "    batch: {linger: false}\n");
  CHECK_INT(c->pipelines[0].batch.linger, OD_LINGER_OFF);
  od_config_free(c);
  c = parse_ok(PIPE "    batch: {linger: auto}\n");
  CHECK_INT(c->pipelines[0].batch.linger, OD_LINGER_AUTO);
  od_config_free(c);
  c = parse_ok(PIPE "    consistency: eventual\n    apply_workers: 8\n    apply_parallel_min_rows: 0\n"
                    "    batch: {adaptive: true, min_rows: 200, max_rows: 10000, target_latency_ms: 30}\n");
  CHECK_INT(c->pipelines[0].consistency, OD_CONSISTENCY_EVENTUAL);
  CHECK_INT(c->pipelines[0].apply_workers, 8);
  CHECK_INT(c->pipelines[0].apply_parallel_min_rows, 0);
  CHECK(c->pipelines[0].batch.adaptive);
  CHECK_INT(c->pipelines[0].batch.min_rows, 200);
  CHECK_INT(c->pipelines[0].batch.target_latency_ms, 30);
  od_config_free(c);
  c = parse_ok(PIPE "    consistency: causal\n    batch: {max_rows: 50}\n");
  CHECK_INT(c->pipelines[0].consistency, OD_CONSISTENCY_CAUSAL);
  CHECK_INT(c->pipelines[0].batch.min_rows, 50); /* clamped to max_rows when not set */
  od_config_free(c);
}

TEST(error_consistency_workers_and_adaptive_batching) {
  od_error e;
  CHECK_STR(parse_err(PIPE "    consistency: casual\n", &e),
            "cfg.yaml:7:18: pipelines[0].consistency: 'casual' is not a consistency level; did you mean "
            "'causal'? (expected one of strong, causal, eventual)");
  CHECK_CONTAINS(parse_err(PIPE "    apply_workers: 0\n", &e), "cfg.yaml:7:20: pipelines[0].apply_workers");
  CHECK_CONTAINS(parse_err(PIPE "    apply_parallel_min_rows: -1\n", &e),
                 "cfg.yaml:7:30: pipelines[0].apply_parallel_min_rows");
  CHECK_CONTAINS(parse_err(PIPE "    batch: {adaptive: maybe}\n", &e),
                 "pipelines[0].batch.adaptive: 'maybe' is not a boolean");
  CHECK_CONTAINS(parse_err(PIPE "    batch: {linger: sometimes}\n", &e), "pipelines[0].batch.linger: 'sometimes'");
  CHECK_CONTAINS(parse_err(PIPE "    batch: {min_rows: 500, max_rows: 100}\n", &e),
                 "min_rows (500) is larger than max_rows (100)");
}

/* ------------------------------------------------------------ spools */

#define TWO_SINKS                                  \
  "pipelines:\n"                                   \
  "  - name: shop\n"                               \
  "    source: { type: postgres }\n"               \
  "    sinks:\n"                                   \
  "      - { name: a, type: sqlite }\n"

TEST(spool_defaults_keys_and_false) {
  od_config *c = parse_ok(TWO_SINKS "      - { name: b, type: sqlite, spool: { max_bytes: 20GiB, dir: /var/spool/x, "
                                    "compression: lz4 } }\n"
                                    "      - { name: c, type: sqlite, spool: false }\n");
  const od_pipeline_config *p = &c->pipelines[0];
  CHECK(!p->sinks[0].spool.disabled);
  CHECK(p->sinks[0].spool.max_bytes == 1ULL << 30);
  CHECK_INT(p->sinks[0].spool.compression, 1); /* zstd */
  CHECK(p->sinks[0].spool.dir == NULL);
  CHECK(p->sinks[1].spool.max_bytes == 20ULL << 30);
  CHECK_STR(p->sinks[1].spool.dir, "/var/spool/x");
  CHECK_INT(p->sinks[1].spool.compression, 2); /* lz4 */
  CHECK(p->sinks[2].spool.disabled);
  /* `spool` belongs to the core: the adapter's section does not see it. */
  CHECK(od_config_find(&p->sinks[1].section, "spool") == NULL);
  od_config_free(c);
}

TEST(spool_errors_name_the_key) {
  od_error e;
  const char *m = parse_err(TWO_SINKS "      - { name: b, type: sqlite, spool: { compression: gzip } }\n", &e);
  CHECK_CONTAINS(m, "pipelines[0].sinks[1].spool.compression");
  CHECK_CONTAINS(m, "lz4, zstd, none");
  m = parse_err(TWO_SINKS "      - { name: b, type: sqlite, spool: { max_bytes: 10KiB } }\n", &e);
  CHECK_CONTAINS(m, "pipelines[0].sinks[1].spool.max_bytes");
  CHECK_CONTAINS(m, "out of range");
  m = parse_err(TWO_SINKS "      - { name: b, type: sqlite, spool: { size: 1GiB } }\n", &e);
  CHECK_CONTAINS(m, "size");
}
