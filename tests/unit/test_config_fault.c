/* Unit tests for the failure-policy keys of a pipeline (src/core/config.c): on_poison,
 * poison_attempts, circuit_breaker — defaults, values, and each error with its place. */
#include "odsync/config.h"
#include "test.h"

#define PIPE(extra)          \
  "pipelines:\n"             \
  "  - name: shop\n"         \
  extra                      \
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
  return c;
}

static const char *parse_err(const char *yaml, od_error *e) {
  od_config *c = (od_config *)1;
  memset(e, 0, sizeof *e);
  CHECK_INT(od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, e), OD_ECONFIG);
  CHECK(c == NULL);
  return e->msg;
}

TEST(defaults) {
  od_config *c = parse_ok(PIPE(""));
  const od_pipeline_config *p = &c->pipelines[0];
  CHECK_INT(p->on_poison, OD_POISON_STOP);
  CHECK_INT(p->poison_attempts, 3);
  CHECK_INT(p->breaker.failures, 5);
  CHECK(p->breaker.error_rate == 0.5);
  CHECK_INT(p->breaker.min_attempts, 10);
  CHECK_INT((int)p->breaker.window_ms, 60000);
  CHECK_INT((int)p->breaker.cooldown_ms, 30000);
  od_config_free(c);
}

TEST(values) {
  od_config *c = parse_ok(PIPE("    on_poison: dead_letter\n"
                               "    poison_attempts: 5\n"
                               "    circuit_breaker: { failures: 2, error_rate: 0.25, min_attempts: 4, window_ms: 5000, "
                               "cooldown_ms: 1500 }\n"));
  const od_pipeline_config *p = &c->pipelines[0];
  CHECK_INT(p->on_poison, OD_POISON_DEAD_LETTER);
  CHECK_INT(p->poison_attempts, 5);
  CHECK_INT(p->breaker.failures, 2);
  CHECK(p->breaker.error_rate == 0.25);
  CHECK_INT(p->breaker.min_attempts, 4);
  CHECK_INT((int)p->breaker.window_ms, 5000);
  CHECK_INT((int)p->breaker.cooldown_ms, 1500);
  od_config_free(c);
}

TEST(errors) {
  od_error e;
  const char *m = parse_err(PIPE("    on_poison: skip\n"), &e);
  CHECK(strstr(m, "cfg.yaml:3:") && strstr(m, "on_poison") && strstr(m, "stop, dead_letter"));
  m = parse_err(PIPE("    on_poison: dead_leter\n"), &e);
  CHECK(strstr(m, "dead_letter") != NULL);
  m = parse_err(PIPE("    poison_attempts: 0\n"), &e);
  CHECK(strstr(m, "poison_attempts") != NULL);
  m = parse_err(PIPE("    circuit_breaker: { failures: 3, cooldown: 5 }\n"), &e);
  CHECK(strstr(m, "cooldown") != NULL);
  m = parse_err(PIPE("    circuit_breaker: 5\n"), &e);
  CHECK(strstr(m, "circuit_breaker") != NULL);
  m = parse_err(PIPE("    circuit_breaker: { error_rate: 1.5 }\n"), &e);
  CHECK(strstr(m, "error_rate") != NULL);
}
