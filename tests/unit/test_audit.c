/* test_audit.c — the audit log (core/audit.h) in a temp state dir: records chain and verify;
 * records from several threads keep one chain; an edit, a deletion, a swap and a cut tail are each
 * found; a partial last line (crash in a write) is cut at the next start and the chain goes on;
 * rotation keeps the chain across segments; a gap is recorded when a sink's checkpoint is past the
 * log. And the PII detectors (core/pii.h) on values that must and must not match, the config keys
 * (audit:, pii:), and lineage's column protection through a rename. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/audit.h"
#include "core/lineage.h"
#include "core/pii.h"
#include "core/pii_guard.h"
#include "odsync/position.h"
#include "test.h"

static char dir[256];

static od_config *load(const char *yaml) {
  od_config *cfg = NULL;
  od_error err;
  if (od_config_parse(yaml, strlen(yaml), "t.yaml", &cfg, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return NULL;
  }
  return cfg;
}

static od_config *start(size_t max_bytes) {
  snprintf(dir, sizeof dir, "/tmp/odsync-test-audit.XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  char yaml[1024];
  snprintf(yaml, sizeof yaml,
           "state_dir: %s\naudit: { fsync_ms: 0, max_bytes: %zu }\npipelines:\n  - name: p\n"
           "    source: { type: postgres, dsn: x }\n    sink: { type: sqlite, path: /tmp/x.db }\n",
           dir, max_bytes);
  od_config *cfg = load(yaml);
  CHECK(cfg != NULL);
  od_error err;
  CHECK_INT(od_audit_init(cfg, &err), OD_OK);
  return cfg;
}

static int verify(char *out, size_t n) {
  FILE *f = fmemopen(out, n, "w");
  od_error err;
  int rc = od_audit_verify(dir, "p", f, &err);
  fclose(f);
  return rc;
}

static void cleanup(od_config *cfg) {
  od_audit_shutdown();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK_INT(system(cmd), 0);
  od_config_free(cfg);
}

static void edit_file(const char *path, void (*fn)(char **lines, int *n)) {
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  char *lines[512];
  int n = 0;
  char buf[4096];
  while (n < 512 && fgets(buf, sizeof buf, f)) lines[n++] = strdup(buf);
  fclose(f);
  fn(lines, &n);
  f = fopen(path, "w");
  for (int i = 0; i < n; i++) {
    fputs(lines[i], f);
    free(lines[i]);
  }
  fclose(f);
}

static void edit_value(char **l, int *n) {
  (void)n;
  char *p = strstr(l[3], "\"i\":3");
  p[4] = '7';
}
static void delete_sixth(char **l, int *n) {
  free(l[5]);
  memmove(l + 5, l + 6, (size_t)(*n - 6) * sizeof *l);
  (*n)--;
}
static void swap_third_fourth(char **l, int *n) {
  (void)n;
  char *t = l[2];
  l[2] = l[3];
  l[3] = t;
}
static void cut_last(char **l, int *n) { free(l[--*n]); }

static void add_records(int n) {
  for (int i = 0; i < n; i++) {
    char f[64];
    snprintf(f, sizeof f, "\"i\":%d", i);
    CHECK_INT(od_audit_record("p", "test", f), OD_OK);
  }
}

TEST(chain_verifies_and_detects_each_kind_of_tampering) {
  od_config *cfg = start(64 << 20);
  add_records(10);
  od_audit_shutdown();
  char out[4096], path[400];
  CHECK_INT(verify(out, sizeof out), 0);
  CHECK_CONTAINS(out, "10 records in 1 segment, seq 1..10; chain intact");
  snprintf(path, sizeof path, "%s/audit/p.jsonl", dir);
  /* each edit on a fresh copy of the lines */
  char saved[1024];
  snprintf(saved, sizeof saved, "cp %s %s.orig", path, path);
  CHECK_INT(system(saved), 0);
  snprintf(saved, sizeof saved, "cp %s.orig %s", path, path);

  edit_file(path, edit_value);
  CHECK(verify(out, sizeof out) > 0);
  CHECK_CONTAINS(out, "record seq 4 was edited");

  CHECK_INT(system(saved), 0);
  edit_file(path, delete_sixth);
  CHECK(verify(out, sizeof out) > 0);
  CHECK_CONTAINS(out, "record seq 7 does not follow the record before it (seq 5)");

  CHECK_INT(system(saved), 0);
  edit_file(path, swap_third_fourth);
  CHECK(verify(out, sizeof out) > 0);
  CHECK_CONTAINS(out, "does not follow the record before it");

  CHECK_INT(system(saved), 0);
  edit_file(path, cut_last);
  CHECK(verify(out, sizeof out) > 0);
  CHECK_CONTAINS(out, "the log ends at seq 9 but seq 10 was written and fsynced");
  cleanup(cfg);
}

typedef struct { int id; } worker_arg;
static void *worker(void *arg) {
  worker_arg *w = arg;
  for (int i = 0; i < 200; i++) {
    char f[64];
    snprintf(f, sizeof f, "\"w\":%d,\"i\":%d", w->id, i);
    od_audit_record(i % 2 ? "p" : NULL, "thread", f);
  }
  return NULL;
}

TEST(threads_share_one_chain) {
  od_config *cfg = start(64 << 20);
  pthread_t t[4];
  worker_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i].id = i;
    pthread_create(&t[i], NULL, worker, &a[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  od_audit_shutdown();
  char out[4096];
  CHECK_INT(verify(out, sizeof out), 0);
  CHECK_CONTAINS(out, "400 records");
  FILE *f = fmemopen(out, sizeof out, "w");
  od_error err;
  CHECK_INT(od_audit_verify(dir, NULL, f, &err), 0); /* the process log */
  fclose(f);
  CHECK_CONTAINS(out, "400 records");
  cleanup(cfg);
}

TEST(partial_last_line_is_cut_and_the_chain_goes_on) {
  od_config *cfg = start(64 << 20);
  add_records(3);
  od_audit_shutdown();
  char path[512], out[4096];
  snprintf(path, sizeof path, "%s/audit/p.jsonl", dir);
  FILE *f = fopen(path, "a");
  fputs("{\"seq\":4,\"time\":\"cut by a cra", f);
  fclose(f);
  CHECK_INT(verify(out, sizeof out), 0);
  CHECK_CONTAINS(out, "a partial last record");
  od_error err;
  CHECK_INT(od_audit_init(cfg, &err), OD_OK);
  add_records(2);
  od_audit_shutdown();
  CHECK_INT(verify(out, sizeof out), 0);
  CHECK_CONTAINS(out, "5 records in 1 segment, seq 1..5; chain intact");
  cleanup(cfg);
}

TEST(rotation_keeps_the_chain_across_segments) {
  od_config *cfg = start(64 * 1024);
  for (int i = 0; i < 600; i++) {
    char f[256];
    snprintf(f, sizeof f, "\"pad\":\"%0200d\"", i);
    CHECK_INT(od_audit_record("p", "pad", f), OD_OK);
  }
  od_audit_shutdown();
  char out[8192];
  CHECK_INT(verify(out, sizeof out), 0);
  CHECK_CONTAINS(out, "600 records in 4 segments, seq 1..600; chain intact");
  cleanup(cfg);
}

TEST(gap_when_the_checkpoint_is_past_the_log) {
  od_config *cfg = start(64 << 20);
  od_pos a = od_pos_legacy_lsn(0x100), b = od_pos_legacy_lsn(0x200);
  od_error err;
  od_audit_tally t = {0};
  od_audit_session("p", "default", NULL, "none", "[]");
  od_audit_batch("p", "default", "none", NULL, &a, 3, 1, &t);
  od_audit_shutdown();
  CHECK_INT(od_audit_init(cfg, &err), OD_OK);
  od_audit_session("p", "default", &a, "none", "[]"); /* the log knows pg:0/100: no gap */
  od_audit_session("p", "default", &b, "none", "[]"); /* the sink is at pg:0/200: a gap */
  od_audit_shutdown();
  char path[512], text[8192] = "";
  snprintf(path, sizeof path, "%s/audit/p.jsonl", dir);
  FILE *f = fopen(path, "r");
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = 0;
  fclose(f);
  CHECK_CONTAINS(text, "\"kind\":\"gap\",\"sink\":\"default\",\"audited_to\":\"pg:0/100\",\"checkpoint\":\"pg:0/200\"");
  CHECK(strstr(strstr(text, "\"kind\":\"gap\"") + 1, "\"kind\":\"gap\"") == NULL); /* one gap only */
  char out[4096];
  CHECK_INT(verify(out, sizeof out), 0);
  cleanup(cfg);
}

TEST(correlation_ids_listed_capped_and_found) {
  od_config *cfg = start(64 << 20);
  od_relation rel = {.schema = "public", .name = "orders"};
  enum { N = OD_AUDIT_CIDS_MAX + 15 }; /* 10 in a first batch, 1,005 in the second */
  static od_change ch[N];
  static char ids[N][24];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "ev-%d", i);
    ch[i] = (od_change){.rel = &rel, .correlation_id = ids[i]};
  }
  ch[7].correlation_id = "odd \"q\" \\ , ] \xc3\xbc"; /* quotes, backslash, comma, bracket, UTF-8 */
  od_audit_tally t = {0};
  od_pos a = od_pos_legacy_lsn(0x100), b = od_pos_legacy_lsn(0x200);
  od_audit_tally_add(&t, ch, 10); /* a first batch: ev-0..ev-9 */
  od_audit_batch("p", "s1", "none", NULL, &a, 10, 1, &t);
  CHECK(t.ncids == 0 && t.listed == 0); /* reset by the record */
  od_audit_tally_add(&t, ch + 10, N - 10); /* a second batch, past the cap */
  od_audit_batch("p", "s1", "none", &a, &b, N - 10, 1, &t);
  od_audit_tally_free(&t);
  od_audit_shutdown();
  static char out[64 << 10];
  FILE *f = fmemopen(out, sizeof out, "w");
  od_error err;
  CHECK_INT(od_audit_find(dir, "p", "ev-1", f, &err), 1);
  fclose(f);
  CHECK_CONTAINS(out, "\"correlation_ids\":[\"ev-0\",\"ev-1\",");
  CHECK(strstr(out, "correlation_ids_total") == NULL);
  f = fmemopen(out, sizeof out, "w");
  CHECK_INT(od_audit_find(dir, "p", "odd \"q\" \\ , ] \xc3\xbc", f, &err), 1);
  fclose(f);
  f = fmemopen(out, sizeof out, "w");
  CHECK_INT(od_audit_find(dir, "p", "ev-10", f, &err), 1); /* the first of the second batch, not ev-1's */
  fclose(f);
  CHECK_CONTAINS(out, "\"correlation_ids_total\":1005");
  char last[32];
  snprintf(last, sizeof last, "ev-%d", 10 + OD_AUDIT_CIDS_MAX - 1);
  f = fmemopen(out, sizeof out, "w");
  CHECK_INT(od_audit_find(dir, "p", last, f, &err), 1); /* the last one listed */
  fclose(f);
  snprintf(last, sizeof last, "ev-%d", 10 + OD_AUDIT_CIDS_MAX);
  f = fmemopen(out, sizeof out, "w");
  CHECK_INT(od_audit_find(dir, "p", last, f, &err), 0); /* beyond the cap: counted, not listed */
  CHECK_INT(od_audit_find(dir, "p", "ev-", f, &err), 0); /* no prefix matches */
  CHECK_INT(od_audit_find(dir, "p", "v-1", f, &err), 0);
  fclose(f);
  CHECK_INT(od_audit_find("/nonexistent-odsync-dir", "p", "ev-1", stdout, &err), -1);
  CHECK_CONTAINS(err.msg, "cannot open");
  CHECK_INT(verify(out, sizeof out), 0);
  cleanup(cfg);
}

TEST(positions_chain_across_unrecorded_idle_advances) {
  od_config *cfg = start(64 << 20);
  od_pos p1 = od_pos_legacy_lsn(0x100), p2 = od_pos_legacy_lsn(0x200), p3 = od_pos_legacy_lsn(0x300),
         p4 = od_pos_legacy_lsn(0x400), p5 = od_pos_legacy_lsn(0x500);
  od_audit_tally t = {0};
  od_audit_batch("p", "s", "none", NULL, &p1, 1, 1, &t);
  od_audit_position("p", "s", "idle", &p2); /* recorded: the first idle advance */
  od_audit_position("p", "s", "idle", &p3); /* not recorded: within a minute of the last */
  od_audit_batch("p", "s", "none", &p3, &p4, 1, 1, &t); /* so this batch records p3 first */
  od_audit_batch("p", "s", "none", &p4, &p5, 1, 1, &t); /* continuous: nothing extra */
  od_audit_shutdown();
  char path[512], text[8192] = "";
  snprintf(path, sizeof path, "%s/audit/p.jsonl", dir);
  FILE *f = fopen(path, "r");
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = 0;
  fclose(f);
  const char *i2 = strstr(text, "\"kind\":\"idle\",\"sink\":\"s\",\"position\":\"pg:0/200\"");
  const char *i3 = strstr(text, "\"kind\":\"idle\",\"sink\":\"s\",\"position\":\"pg:0/300\"");
  const char *b4 = strstr(text, "\"from\":\"pg:0/300\",\"to\":\"pg:0/400\"");
  CHECK(i2 && i3 && b4 && i2 < i3 && i3 < b4);
  int idles = 0;
  for (const char *q = text; (q = strstr(q, "\"kind\":\"idle\"")); q++) idles++;
  CHECK_INT(idles, 2); /* p2 and p3: none at p4, where the last batch already left the sink */
  char out[4096];
  CHECK_INT(verify(out, sizeof out), 0);
  cleanup(cfg);
}

TEST(pii_values) {
  od_pii_detector *d;
  od_error err;
  CHECK_INT(od_pii_detector_new(&d, &err), OD_OK);
  struct { const char *v; od_pii_kind k; } cases[] = {
      {"jane.doe@example.com", OD_PII_EMAIL},       {"o'brien+x@mail.example.co.uk", OD_PII_EMAIL},
      {"not an @ address", OD_PII_NONE},           {"+1 (555) 123-4567", OD_PII_PHONE},
      {"+44 20 7946 0958", OD_PII_PHONE},           {"555-123-4567", OD_PII_PHONE},
      {"4111 1111 1111 1111", OD_PII_CARD},         {"4111111111111111", OD_PII_CARD},
      {"4111111111111112", OD_PII_NONE},            /* Luhn fails */
      {"DE89 3704 0044 0532 0130 00", OD_PII_IBAN}, {"GB82WEST12345698765432", OD_PII_IBAN},
      {"DE89370400440532013001", OD_PII_NONE},      /* mod 97 fails */
      {"123-45-6789", OD_PII_SSN},                  {"666-45-6789", OD_PII_NONE}, /* area never issued */
      {"000-12-3456", OD_PII_NONE},                 {"192.168.1.20", OD_PII_IP},
      {"2001:db8::1", OD_PII_IP},                   {"12:30:45", OD_PII_NONE},
      {"256.1.1.1", OD_PII_NONE},                   {"2024-03-15", OD_PII_NONE},
      {"ORD-2024-000123", OD_PII_NONE},             {"12345", OD_PII_NONE},
      {"+49 30 4788089", OD_PII_PHONE},             {"JG 10 37 59 A", OD_PII_NINO},
      {"AB123456C", OD_PII_NINO},                   {"DA123456C", OD_PII_NONE},   /* D never first */
      {"AB123456E", OD_PII_NONE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    od_pii_kind k = od_pii_value(d, cases[i].v, strlen(cases[i].v));
    if (k != cases[i].k) OD_TEST_FAIL("%s: %s, expected %s", cases[i].v, od_pii_kind_name(k), od_pii_kind_name(cases[i].k));
    od_test_checks++;
  }
  double c;
  CHECK_INT(od_pii_column_name(d, "last_name", &c), OD_PII_NAME);
  CHECK(c >= 0.6);
  CHECK_INT(od_pii_column_name(d, "billing_address", &c), OD_PII_ADDRESS);
  CHECK_INT(od_pii_column_name(d, "name", &c), OD_PII_NAME);
  CHECK(c < 0.5);
  CHECK_INT(od_pii_column_name(d, "amount", &c), OD_PII_NONE);
  od_pii_tally t = {.values = 10};
  t.hits[OD_PII_EMAIL] = 9;
  t.hits[OD_PII_NONE] = 1;
  CHECK_INT(od_pii_judge(d, "contact", &t, 3, &c), OD_PII_EMAIL);
  CHECK(c > 0.85 && c < 0.95);
  t.hits[OD_PII_EMAIL] = 5;
  t.hits[OD_PII_NONE] = 5;
  CHECK_INT(od_pii_judge(d, "notes", &t, 3, &c), OD_PII_NONE);
  od_pii_detector_free(d);
}

TEST(config_keys_and_protection) {
  od_config *cfg = load("audit: { enabled: false, max_bytes: 1MiB, fsync_ms: 50 }\npipelines:\n  - name: p\n"
                        "    source: { type: postgres, dsn: x }\n    pii: { detect: enforce, sample: 10 }\n"
                        "    transforms:\n      - { type: rename, tables: [t], columns: [mail=email] }\n"
                        "    sink:\n      type: sqlite\n      path: /tmp/x.db\n      transforms:\n"
                        "        - { type: mask, tables: [public.t], columns: [email], style: email }\n");
  CHECK(cfg != NULL);
  CHECK(!cfg->audit.enabled);
  CHECK_INT(cfg->audit.max_bytes, 1 << 20);
  CHECK_INT(cfg->audit.fsync_ms, 50);
  CHECK_INT(cfg->pipelines[0].pii.detect, OD_PII_ENFORCE);
  CHECK_INT(cfg->pipelines[0].pii.sample, 10);
  const od_pipeline_config *p = &cfg->pipelines[0];
  CHECK(od_lineage_column_protected(p, &p->sinks[0], "public", "t", "mail")); /* renamed to email, then masked */
  CHECK(!od_lineage_column_protected(p, &p->sinks[0], "public", "u", "mail"));
  CHECK(!od_lineage_column_protected(p, &p->sinks[0], "other", "t", "mail")); /* the mask names public.t */
  od_config_free(cfg);
  od_error err;
  od_config *bad = NULL;
  const char *y = "pipelines:\n  - name: p\n    source: { type: postgres, dsn: x }\n    pii: { detect: block }\n"
                  "    sink: { type: sqlite, path: /tmp/x.db }\n";
  CHECK(od_config_parse(y, strlen(y), "t.yaml", &bad, &err) != OD_OK);
  CHECK_CONTAINS(err.msg, "off, warn, enforce");
}

/* The pii.detect guard on a hand-made relation: enforce refuses a column of e-mails after three
 * values, naming table and column; a masked column and a column of other text pass; warn lets it
 * through; a name column is judged from its name when the table is first seen; a new version of the
 * table only checks its new column. */
static od_column col(const char *name) {
  od_column c = {.name = (char *)name, .type_oid = 25};
  snprintf(c.type_name, sizeof c.type_name, "text");
  return c;
}

static int feed(od_pii_guard *g, od_pii_rel *r, const char *const *vals, int n, od_error *err) {
  od_value v[3];
  for (int i = 0; i < 3; i++) v[i] = (od_value){.data = vals[i], .len = (uint32_t)strlen(vals[i]), .kind = OD_VALUE_TEXT};
  od_change ch = {.op = OD_OP_INSERT, .newtup = {.ncolumns = (uint16_t)n, .values = v}};
  return od_pii_guard_change(g, r, &ch, err);
}

TEST(pii_guard_enforce_and_warn) {
  const char *yaml = "pipelines:\n  - name: p\n    source: { type: postgres, dsn: x }\n"
                     "    pii: { detect: enforce, sample: 8 }\n    sink:\n      type: sqlite\n      path: /tmp/x.db\n"
                     "      transforms: [ { type: mask, tables: [t], columns: [masked], style: email } ]\n";
  od_config *cfg = load(yaml);
  CHECK(cfg != NULL);
  od_pipeline_config *p = &cfg->pipelines[0];
  od_column cols[3] = {col("contact"), col("masked"), col("remark")};
  od_relation rel = {.schema = "public", .name = "t", .ncolumns = 3, .columns = cols, .version = 1};
  od_pii_guard *g;
  od_pii_rel *r;
  od_error err;
  CHECK_INT(od_pii_guard_new(p, &p->sinks[0], &g, &err), OD_OK);
  CHECK_INT(od_pii_guard_relation(g, &rel, &r, &err), OD_OK);
  CHECK(r != NULL);
  const char *row1[3] = {"a@example.com", "m@example.com", "hello"};
  const char *row2[3] = {"b@example.com", "n@example.com", "world"};
  CHECK_INT(feed(g, r, row1, 3, &err), OD_OK);
  CHECK_INT(feed(g, r, row2, 3, &err), OD_OK);
  CHECK_INT(feed(g, r, row1, 3, &err), OD_ECONFIG); /* the third e-mail */
  CHECK_CONTAINS(err.msg, "column public.t.contact looks like email");
  CHECK_CONTAINS(err.msg, "refusing to send it unmasked to sink default of pipeline p");
  od_pii_guard_free(g);

  /* a new version: the first version's columns keep their state, the new one is checked */
  p->pii.detect = OD_PII_WARN;
  CHECK_INT(od_pii_guard_new(p, &p->sinks[0], &g, &err), OD_OK);
  od_column cols2[3] = {col("remark"), col("masked"), col("email2")};
  od_relation v1 = {.schema = "public", .name = "t", .ncolumns = 2, .columns = cols2, .version = 1};
  od_relation v2 = {.schema = "public", .name = "t", .ncolumns = 3, .columns = cols2, .version = 2, .previous = &v1};
  CHECK_INT(od_pii_guard_relation(g, &v1, &r, &err), OD_OK);
  for (int i = 0; i < 8; i++) {
    const char *row[3] = {"plain text", "x", ""};
    CHECK_INT(feed(g, r, row, 2, &err), OD_OK);
  }
  CHECK_INT(od_pii_guard_relation(g, &v1, &r, &err), OD_OK);
  CHECK(r == NULL); /* remark sampled 8 values: done; masked is protected */
  CHECK_INT(od_pii_guard_relation(g, &v2, &r, &err), OD_OK);
  CHECK(r != NULL);
  for (int i = 0; i < 4; i++) CHECK_INT(feed(g, r, row1, 3, &err), OD_OK); /* warn: never fails */
  od_pii_guard_free(g);

  /* a name column is judged by its name when the table is first seen */
  p->pii.detect = OD_PII_ENFORCE;
  CHECK_INT(od_pii_guard_new(p, &p->sinks[0], &g, &err), OD_OK);
  od_column cols3[1] = {col("last_name")};
  od_relation rn = {.schema = "public", .name = "u", .ncolumns = 1, .columns = cols3, .version = 1};
  CHECK_INT(od_pii_guard_relation(g, &rn, &r, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "column public.u.last_name looks like name (confidence 0.70, by its name)");
  od_pii_guard_free(g);
  od_config_free(cfg);
}
