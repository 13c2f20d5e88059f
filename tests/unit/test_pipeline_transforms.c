/* Unit tests of the transforms inside a running pipeline, with the fake source and sink
 * (tests/unit/fakes): each sink receives exactly its transformed rows, every transaction once (no
 * duplicates, no losses, checkpoint at the end), for mask, pseudonymize, rename, null and filter;
 * the filter turns updates that leave it into deletes and updates that enter it into inserts (with
 * the full old row's values), and a key-only filter judges rows by key. Refused configurations
 * (a masked key, truncate_date on text) stop the pipeline with the table and column named. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/pipeline.h"
#include "fakes/fakes.h"
#include "test.h"

#define KEY "pipeline-test-key-0123456789"

static char state_dir[64];

static od_config *config(const char *source_extra, const char *sinks_yaml, int txns) {
  setenv("PT_KEY", KEY, 1);
  strcpy(state_dir, "/tmp/odsync-ptx-XXXXXX");
  if (!mkdtemp(state_dir)) OD_TEST_FAIL("mkdtemp");
  char text[4096];
  snprintf(text, sizeof text,
           "state_dir: %s\n"
           "log_level: error\n"
           "pipelines:\n"
           "  - name: p\n"
           "    source: { type: fake, txns: %d, per_poll: 5%s }\n"
           "    reconnect_max_ms: 100\n"
           "    batch: { max_rows: 7, max_delay_ms: 1 }\n"
           "%s",
           state_dir, txns, source_extra, sinks_yaml);
  od_config *cfg = NULL;
  od_error err = {0};
  if (od_config_parse(text, strlen(text), "t.yaml", &cfg, &err)) OD_TEST_FAIL("config: %s", err.msg);
  return cfg;
}

static void cleanup(od_config *cfg) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", state_dir);
  if (system(cmd) != 0) OD_TEST_FAIL("cleanup");
  od_config_free(cfg);
}

static uint64_t checkpoint_of(fake_store *st) {
  pthread_mutex_lock(&st->mu);
  uint64_t v = od_pos_to_u64(&st->checkpoint);
  pthread_mutex_unlock(&st->mu);
  return v;
}

static int run_until(od_config *cfg, int txns, fake_store **st, int n, od_error *err) {
  od_pipeline *p = NULL;
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, err)) OD_TEST_FAIL("new: %s", err->msg);
  if (od_pipeline_start(p, err)) OD_TEST_FAIL("start: %s", err->msg);
  for (int t = 0; t < 2000 && !od_pipeline_finished(p); t++) {
    bool all = true;
    for (int i = 0; i < n; i++) all = all && checkpoint_of(st[i]) >= fake_end(txns);
    if (all) break;
    usleep(10000);
  }
  od_pipeline_request_stop(p);
  int rc = od_pipeline_wait(p, err);
  od_pipeline_free(p);
  return rc;
}

static void clean_run(fake_store *st, int txns) {
  CHECK_INT(st->duplicates, 0);
  CHECK_INT(st->losses, 0);
  CHECK(checkpoint_of(st) >= fake_end(txns));
}

/* What the source wrote into v of row i after the last transaction. */
static void want_v(int i, int txns, char *out) { sprintf(out, i < txns ? "u%d" : "v%d", i); }

static void hmac_hex(const char *v, char out[65]) {
  unsigned char d[32];
  unsigned int n = 32;
  HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)v, strlen(v), d, &n);
  for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

TEST(mask_and_pseudonymize_and_rename_on_one_sink_each) {
  fake_register();
  fake_reset();
  const int txns = 60;
  fake_store *a = fake_store_get("ma"), *b = fake_store_get("mb"), *c = fake_store_get("mc");
  od_config *cfg = config("",
                          "    sinks:\n"
                          "      - name: a\n"
                          "        type: fakesink\n"
                          "        store: ma\n"
                          "        transforms: [{ type: mask, columns: [secret], style: keep_last, keep: 1 }]\n"
                          "      - name: b\n"
                          "        type: fakesink\n"
                          "        store: mb\n"
                          "        transforms:\n"
                          "          - { type: pseudonymize, columns: [secret], prefix: s_, key: \"${env:PT_KEY}\" }\n"
                          "          - { type: rename, columns: [v=value, secret=token] }\n"
                          "      - name: c\n"
                          "        type: fakesink\n"
                          "        store: mc\n"
                          "        transforms: [{ type: null, columns: [secret] }]\n",
                          txns);
  od_error err = {0};
  fake_store *all[] = {a, b, c};
  CHECK_INT(run_until(cfg, txns, all, 3, &err), OD_OK);
  for (int s = 0; s < 3; s++) clean_run(all[s], txns);
  for (int i = 1; i <= txns; i++) {
    char v[32], sec[32], masked[32], hex[65], tok[32];
    want_v(i, txns, v);
    sprintf(sec, "s%d", i);
    memset(masked, '*', strlen(sec) - 1);
    strcpy(masked + strlen(sec) - 1, sec + strlen(sec) - 1);
    hmac_hex(sec, hex);
    snprintf(tok, sizeof tok, "s_%.16s", hex);
    for (int s = 0; s < 3; s++) CHECK_STR(all[s]->rows[i], v);
    CHECK_STR(a->secret[i], masked);
    CHECK_STR(b->secret[i], tok);
    CHECK(c->secret[i] == NULL);
  }
  CHECK_STR(a->names_seen, "id,v,secret");
  CHECK_INT(a->types_seen[2], 25);
  CHECK_STR(b->names_seen, "id,value,token");
  CHECK_STR(c->names_seen, "id,v,secret");
  cleanup(cfg);
}

TEST(filter_updates_leaving_it_become_deletes) {
  fake_register();
  fake_reset();
  const int txns = 50;
  fake_store *a = fake_store_get("fa");
  od_config *cfg = config("",
                          "    sink:\n"
                          "      type: fakesink\n"
                          "      store: fa\n"
                          "      transforms: [{ type: filter, where: \"v LIKE 'v%'\" }]\n",
                          txns);
  od_error err = {0};
  fake_store *one[] = {a};
  CHECK_INT(run_until(cfg, txns, one, 1, &err), OD_OK);
  clean_run(a, txns);
  /* every row was inserted as v<i> (passes) and then updated to u<i> (leaves): only the last stays */
  for (int i = 1; i < txns; i++)
    if (a->rows[i]) OD_TEST_FAIL("row %d is still in the sink ('%s')", i, a->rows[i]);
  CHECK_STR(a->rows[txns], "v50");
  CHECK_STR(a->secret[txns], "s50");
  cleanup(cfg);
}

TEST(filter_updates_entering_it_become_inserts_with_the_old_rows_values) {
  fake_register();
  fake_reset();
  const int txns = 50;
  fake_store *a = fake_store_get("fb");
  od_config *cfg = config(", old_full: true",
                          "    sink:\n"
                          "      type: fakesink\n"
                          "      store: fb\n"
                          "      transforms: [{ type: filter, where: \"v LIKE 'u%'\" }]\n",
                          txns);
  od_error err = {0};
  fake_store *one[] = {a};
  CHECK_INT(run_until(cfg, txns, one, 1, &err), OD_OK);
  clean_run(a, txns); /* an update of a row the sink lacks would count as a loss */
  for (int i = 1; i < txns; i++) {
    char v[32], sec[32];
    sprintf(v, "u%d", i);
    sprintf(sec, "s%d", i); /* unchanged in the update: taken from the full old row */
    CHECK_STR(a->rows[i], v);
    CHECK_STR(a->secret[i], sec);
  }
  CHECK(a->rows[txns] == NULL);
  cleanup(cfg);
}

TEST(a_key_filter_keeps_a_range_of_rows) {
  fake_register();
  fake_reset();
  const int txns = 40;
  fake_store *a = fake_store_get("fc"), *b = fake_store_get("fd");
  od_config *cfg = config("",
                          "    transforms: [{ type: filter, where: \"id <= 10 OR id IN (20, 40)\" }]\n"
                          "    sinks:\n"
                          "      - { name: a, type: fakesink, store: fc }\n"
                          "      - { name: b, type: fakesink, store: fd }\n",
                          txns);
  od_error err = {0};
  fake_store *both[] = {a, b};
  CHECK_INT(run_until(cfg, txns, both, 2, &err), OD_OK);
  for (int s = 0; s < 2; s++) {
    fake_store *st = both[s];
    clean_run(st, txns);
    for (int i = 1; i <= txns; i++) {
      char v[32];
      want_v(i, txns, v);
      if (i <= 10 || i == 20 || i == 40) CHECK_STR(st->rows[i], v);
      else if (st->rows[i]) OD_TEST_FAIL("store %s: row %d passed the filter", st->name, i);
    }
  }
  cleanup(cfg);
}

TEST(refused_transforms_stop_the_pipeline_naming_table_and_column) {
  fake_register();
  const char *cases[][2] = {
      {"{ type: mask, columns: [id] }", "column id is part of the key of public.t"},
      {"{ type: truncate_date, columns: [secret] }", "column secret of public.t is of type"},
      {"{ type: filter, where: \"region = 'eu'\" }", "column region (at character 1 of the filter) is not a column of public.t"},
  };
  for (int k = 0; k < 3; k++) {
    fake_reset();
    fake_store *a = fake_store_get("ra");
    char sink[256];
    snprintf(sink, sizeof sink, "    sink:\n      type: fakesink\n      store: ra\n      transforms: [%s]\n", cases[k][0]);
    od_config *cfg = config("", sink, 10);
    od_error err = {0};
    fake_store *one[] = {a};
    CHECK_INT(run_until(cfg, 10, one, 1, &err), OD_ECONFIG);
    CHECK_CONTAINS(err.msg, cases[k][1]);
    CHECK_INT(a->changes, 0);
    cleanup(cfg);
  }
}
