/* test_http_ingest.c — the http source's pieces without a listener: table declarations, event
 * validation (paths of bad fields, normalized values), normalized events as od_change, and the
 * journal (group commit from concurrent appenders, dense sequences, duplicates, 409 on a reused id,
 * a torn tail cut at open, pruning with the id index surviving it, backpressure), and the journal
 * sealed with encryption keys (no event text on disk, read back, a record altered is refused). */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/seal.h"
#include "core/clock.h"
#include "sources/http/http_internal.h"
#include "test.h"

static hs_tables T;

static void tables(void) {
  static char a[] = "public.orders (id bigint key, customer text not null, amount numeric(12,2), "
                    "placed timestamptz, ok boolean, meta jsonb, ref uuid, note varchar(3))";
  static char b[] = "app.lines (order_id bigint primary key, n int key, price double precision, at timestamp, d date)";
  char *items[] = {a, b};
  const char *where[] = {"cfg:1:1", "cfg:2:1"};
  od_error e = {0};
  hs_tables_free(&T);
  if (hs_tables_parse(items, 2, where, &T, &e)) OD_TEST_FAIL("tables: %s", e.msg);
}

static int bad_table(const char *decl, od_error *e) {
  char *items[] = {(char *)decl};
  const char *where[] = {"cfg:9:9"};
  hs_tables t;
  int rc = hs_tables_parse(items, 1, where, &t, e);
  hs_tables_free(&t);
  return rc;
}

TEST(tables_declared) {
  tables();
  CHECK_INT(T.n, 2);
  const hs_table *o = hs_tables_find(&T, "orders");
  CHECK(o != NULL && o == hs_tables_find(&T, "public.orders"));
  CHECK_INT(o->rel.ncolumns, 8);
  CHECK_STR(o->rel.columns[2].type_name, "numeric(12,2)");
  CHECK_INT(o->rel.columns[2].typmod, ((12 << 16) | 2) + 4);
  CHECK_STR(o->rel.columns[3].type_name, "timestamp with time zone");
  CHECK(o->rel.columns[0].key && !o->rel.columns[1].key);
  const hs_table *l = hs_tables_find(&T, "app.lines");
  CHECK(l && l->nkeys == 2 && l->rel.columns[1].key);
  CHECK(hs_tables_find(&T, "lines") == NULL);
  od_error e = {0};
  CHECK_INT(bad_table("public.x (id bigint)", &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "declares no key column");
  CHECK_INT(bad_table("public.x (id blob key)", &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "type 'blob'");
  CHECK_INT(bad_table("x y (id int key)", &e), OD_ECONFIG);
  CHECK_INT(bad_table("t (id int key, id text)", &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "declared twice");
  CHECK_INT(bad_table("t id int key", &e), OD_ECONFIG);
}

static int parse(const char *body, hs_batch *b, char **path, od_error *e) {
  return hs_batch_parse(&T, body, strlen(body), 100, b, path, e);
}

static void bad(const char *body, const char *want_path) {
  hs_batch b;
  char *path = NULL;
  od_error e = {0};
  int rc = parse(body, &b, &path, &e);
  CHECK(rc == OD_EINVAL || !fprintf(stderr, "accepted %s\n", body));
  if (!path || strcmp(path, want_path)) OD_TEST_FAIL("%s: path %s, expected %s (%s)", body, path, want_path, e.msg);
  free(path);
}

TEST(events_rejected_with_path) {
  tables();
  bad("{", "$");
  bad("[]", "$");
  bad("{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"a\"}}", "$.correlation_id");
  bad("[{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"a\"},\"correlation_id\":\"a\"},"
      "{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1.5,\"customer\":\"a\"},\"correlation_id\":\"b\"}]",
      "$[1].row.id");
  bad("{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"a\",\"note\":\"four\"},\"correlation_id\":\"a\"}",
      "$.row.note");
  bad("{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"a\",\"ref\":\"zz\"},\"correlation_id\":\"a\"}",
      "$.row.ref");
  bad("{\"table\":\"app.lines\",\"op\":\"insert\",\"row\":{\"order_id\":1,\"n\":1,\"d\":\"2023-02-29\"},\"correlation_id\":\"a\"}",
      "$.row.d");
  bad("{\"table\":\"app.lines\",\"op\":\"delete\",\"key\":{\"order_id\":1},\"correlation_id\":\"a\"}", "$.key.n");
  bad("{\"table\":\"orders\",\"op\":\"insert\",\"key\":{\"id\":2},\"row\":{\"id\":1,\"customer\":\"a\"},\"correlation_id\":\"a\"}",
      "$.key.id");
  bad("{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"a\"},\"correlation_id\":\"a\",\"correlation_id\":\"b\"}",
      "$");
}

TEST(events_normalized) {
  tables();
  hs_batch b;
  char *path = NULL;
  od_error e = {0};
  const char *body =
      "[{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":7,\"customer\":\"Zoë\",\"amount\":12.34,"
      "\"placed\":\"2024-05-01T01:30:00.120+02:00\",\"ok\":false,\"meta\":{\"a\":[1,null]},"
      "\"ref\":\"ABCDEF01-2345-6789-ABCD-EF0123456789\"},\"correlation_id\":\"x1\"},"
      "{\"table\":\"orders\",\"op\":\"update\",\"key\":{\"id\":7},\"row\":{\"id\":8,\"amount\":\"-0.5\"},\"correlation_id\":\"x2\"},"
      "{\"table\":\"app.lines\",\"op\":\"delete\",\"key\":{\"order_id\":8,\"n\":2},\"correlation_id\":\"x3\"}]";
  if (parse(body, &b, &path, &e)) OD_TEST_FAIL("%s", e.msg);
  CHECK_INT(b.n, 3);
  CHECK_STR(b.ids[1], "x2");
  CHECK(b.hashes[0] != b.hashes[1]);
  od_change ch;
  void *scratch = NULL;
  CHECK_INT(hs_event_change(&T, json_array_get(b.items, 0), &ch, &scratch, &e), OD_OK);
  CHECK_INT(ch.op, OD_OP_INSERT);
  CHECK_STR(ch.correlation_id, "x1");
  CHECK_STR(ch.newtup.values[2].data, "12.34");
  CHECK_STR(ch.newtup.values[3].data, "2024-04-30 23:30:00.12+00");
  CHECK_STR(ch.newtup.values[4].data, "f");
  CHECK_STR(ch.newtup.values[5].data, "{\"a\":[1,null]}");
  CHECK_STR(ch.newtup.values[6].data, "abcdef01-2345-6789-abcd-ef0123456789");
  CHECK_INT(ch.newtup.values[7].kind, OD_VALUE_NULL);
  free(scratch);
  CHECK_INT(hs_event_change(&T, json_array_get(b.items, 1), &ch, &scratch, &e), OD_OK);
  CHECK_INT(ch.op, OD_OP_UPDATE);
  CHECK_INT(ch.old_kind, 'K');
  CHECK_STR(ch.oldtup.values[0].data, "7");
  CHECK_STR(ch.newtup.values[0].data, "8");
  CHECK_STR(ch.newtup.values[2].data, "-0.5");
  CHECK_INT(ch.newtup.values[1].kind, OD_VALUE_UNCHANGED); /* not sent: the sink keeps it */
  free(scratch);
  CHECK_INT(hs_event_change(&T, json_array_get(b.items, 2), &ch, &scratch, &e), OD_OK);
  CHECK_INT(ch.op, OD_OP_DELETE);
  CHECK_STR(ch.oldtup.values[1].data, "2");
  CHECK_INT(ch.newtup.ncolumns, 0);
  free(scratch);
  hs_batch_free(&b);
  /* the content hash is the event as sent: key order and spacing do not matter, values do */
  hs_batch b1, b2, b3;
  CHECK_INT(parse("{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"a\"},\"correlation_id\":\"h\"}",
                  &b1, &path, &e), OD_OK);
  CHECK_INT(parse("{ \"correlation_id\":\"h\", \"row\":{\"customer\":\"a\", \"id\":1}, \"op\":\"insert\", \"table\":\"orders\"}",
                  &b2, &path, &e), OD_OK);
  CHECK_INT(parse("{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":1,\"customer\":\"b\"},\"correlation_id\":\"h\"}",
                  &b3, &path, &e), OD_OK);
  CHECK(b1.hashes[0] == b2.hashes[0] && b1.hashes[0] != b3.hashes[0]);
  hs_batch_free(&b1);
  hs_batch_free(&b2);
  hs_batch_free(&b3);
}

/* ---- journal ---- */

static char dir[256];

static const od_keyring *jkr; /* the keys jopen seals with (NULL: none) */

static hs_journal *jopen(uint64_t seg, uint64_t unacked) {
  hs_journal_opts o = {.dir = dir, .segment_bytes = seg, .max_unacked = unacked, .id_retention_s = 3600,
                       .id_max = 100000, .tables = &T, .kr = jkr};
  hs_journal *j = NULL;
  od_error e = {0};
  if (hs_journal_open(&o, &j, &e)) OD_TEST_FAIL("open: %s", e.msg);
  return j;
}

static int append_one(hs_journal *j, const char *cid, long id, const char *customer, uint64_t *seq) {
  char body[256];
  snprintf(body, sizeof body,
           "{\"table\":\"orders\",\"op\":\"insert\",\"row\":{\"id\":%ld,\"customer\":\"%s\"},\"correlation_id\":\"%s\"}",
           id, customer, cid);
  hs_batch b;
  char *path = NULL;
  od_error e = {0};
  if (parse(body, &b, &path, &e)) OD_TEST_FAIL("%s", e.msg);
  hs_append_result r;
  hs_journal_append(j, &b, &r);
  if (seq) *seq = r.seqs[0];
  free(r.seqs);
  hs_batch_free(&b);
  return r.status;
}

typedef struct worker {
  hs_journal *j;
  int id;
  int ok;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  for (int i = 0; i < 50; i++) {
    char cid[32];
    snprintf(cid, sizeof cid, "w%d-%d", w->id, i);
    w->ok += append_one(w->j, cid, w->id * 1000 + i, "c", NULL) == 200;
  }
  return NULL;
}

static int read_all(hs_journal *j, uint64_t from, uint64_t *events) {
  od_error e = {0};
  if (hs_journal_seek(j, from, &e)) return -1;
  int records = 0;
  *events = 0;
  for (;;) {
    uint64_t first;
    uint32_t count;
    int64_t at;
    char *p;
    size_t len;
    int rc = hs_journal_next(j, 0, &first, &count, &at, &p, &len, &e);
    if (rc == OD_AGAIN) break;
    if (rc) OD_TEST_FAIL("next: %s", e.msg);
    if (first != from + *events && from) OD_TEST_FAIL("gap at %llu", (unsigned long long)first);
    *events += count;
    records++;
    free(p);
  }
  return records;
}

TEST(journal_group_commit_dedup_prune) {
  tables();
  snprintf(dir, sizeof dir, "/tmp/odsync-test-http-%d", (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  hs_journal *j = jopen(4096, 1 << 30);
  pthread_t th[8];
  worker w[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (worker){j, i, 0};
    pthread_create(&th[i], NULL, work, &w[i]);
  }
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 8; i++) CHECK_INT(w[i].ok, 50);
  CHECK_INT(hs_journal_next_seq(j), 401);
  CHECK(hs_journal_groups(j) < 400); /* concurrent requests shared fsyncs */
  uint64_t seq, events;
  CHECK_INT(append_one(j, "w3-7", 3007, "c", &seq), 200); /* duplicate: same answer */
  CHECK(seq >= 1 && seq <= 400);
  CHECK_INT(append_one(j, "w3-7", 3007, "other", NULL), 409);
  CHECK_INT(hs_journal_next_seq(j), 401);
  CHECK_INT(read_all(j, 1, &events), 400); /* one record per request */
  CHECK_INT(events, 400);
  hs_journal_close(j);

  /* ids.log lost (as when requests were accepted into the journal but killed before their ids were
   * written): the ids come back from the journal at open, and must reach ids.log then, because the
   * segments that hold them are pruned below and "w5-5" must still be answered as the first time. */
  snprintf(cmd, sizeof cmd, "rm -f %s/ids.log", dir);
  CHECK(system(cmd) == 0);

  /* a torn tail: garbage after the last record is cut at open */
  char seg[400];
  snprintf(cmd, sizeof cmd, "ls %s/*.seg | tail -1", dir);
  FILE *f = popen(cmd, "r");
  CHECK(f && fgets(seg, sizeof seg, f));
  pclose(f);
  seg[strcspn(seg, "\n")] = '\0';
  f = fopen(seg, "ab");
  fwrite("ODF2garbage", 1, 11, f); /* a frame header cut short */
  fclose(f);
  j = jopen(4096, 1 << 30);
  CHECK_INT(hs_journal_next_seq(j), 401);
  CHECK_INT(append_one(j, "w0-0", 0, "c", &seq), 200);
  CHECK_INT(append_one(j, "new-1", 9001, "c", &seq), 200);
  CHECK_INT((long)seq, 401);

  /* ack: segments below the durable position go; ids survive reopen */
  od_error e = {0};
  CHECK_INT(read_all(j, 1, &events), 401); /* the reader moves on: the segments behind it may go */
  CHECK_INT(events, 401);
  CHECK_INT(hs_journal_ack(j, 402, &e), OD_OK);
  CHECK_INT((long)hs_journal_unacked(j), 0);
  hs_journal_close(j);
  j = jopen(4096, 1 << 30);
  CHECK_INT(append_one(j, "w5-5", 5005, "c", &seq), 200); /* its segment is gone: ids.log answers */
  CHECK(seq >= 1 && seq <= 400);
  CHECK_INT(hs_journal_seek(j, 1, &e), OD_EGAP);
  CHECK_CONTAINS(e.msg, "pruned");
  CHECK_INT(append_one(j, "new-2", 9002, "c", &seq), 200);
  CHECK_INT((long)seq, 402);
  CHECK_INT(read_all(j, 402, &events), 1); /* from what the sinks hold on */
  CHECK_INT(events, 1);
  hs_journal_close(j);

  /* backpressure */
  j = jopen(1 << 20, 1024);
  CHECK_INT(hs_journal_ack(j, hs_journal_next_seq(j), &e), OD_OK);
  CHECK_INT(append_one(j, "bp-1", 8001, "c", NULL), 200);
  CHECK_INT(append_one(j, "bp-2", 8002, "c", NULL), 200);
  for (int i = 0; i < 20; i++) {
    char cid[16];
    snprintf(cid, sizeof cid, "bp-x%d", i);
    if (append_one(j, cid, 8100 + i, "c", NULL) == 503) break;
    CHECK(i < 19);
  }
  hs_journal_close(j);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  hs_tables_free(&T);
}

TEST(ids_retention_and_persistence) {
  char d[128], cmd[400];
  snprintf(d, sizeof d, "/tmp/odsync-test-http-ids-%d", (int)getpid());
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", d, d);
  CHECK(system(cmd) == 0);
  hs_ids *x = NULL;
  od_error e = {0};
  CHECK_INT(hs_ids_open(d, 3600, 3, &x, &e), OD_OK);
  const char *ids[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 5; i++) {
    CHECK_INT(hs_ids_put(x, ids[i], (uint64_t)i + 1, 100 + (uint64_t)i, od_now_us(), false), OD_OK);
    CHECK_INT(hs_ids_get(x, ids[i], NULL, NULL), HS_ID_PENDING);
    hs_ids_settle(x, &ids[i], 1, true);
  }
  CHECK_INT((long)hs_ids_count(x), 3); /* the oldest go first */
  CHECK_INT(hs_ids_get(x, "a", NULL, NULL), HS_ID_ABSENT);
  uint64_t seq, hash;
  CHECK_INT(hs_ids_get(x, "e", &seq, &hash), HS_ID_DONE);
  CHECK_INT((long)seq, 5);
  CHECK_INT((long)hash, 104);
  CHECK_INT(hs_ids_put(x, "f", 6, 1, od_now_us(), false), OD_OK);
  hs_ids_settle(x, (const char *[]){"f"}, 1, false); /* a failed commit forgets the id */
  CHECK_INT(hs_ids_get(x, "f", NULL, NULL), HS_ID_ABSENT);
  CHECK_INT(hs_ids_sync(x, &e), OD_OK);
  hs_ids_close(x);
  CHECK_INT(hs_ids_open(d, 3600, 3, &x, &e), OD_OK); /* reloaded from ids.log */
  CHECK_INT(hs_ids_get(x, "d", &seq, NULL), HS_ID_DONE);
  CHECK_INT((long)seq, 4);
  CHECK_INT(hs_ids_get(x, "b", NULL, NULL), HS_ID_ABSENT);
  hs_ids_close(x);
  /* ids older than the retention go (the index is in acceptance order) */
  snprintf(cmd, sizeof cmd, "rm -f %s/ids.log", d);
  CHECK(system(cmd) == 0);
  CHECK_INT(hs_ids_open(d, 3600, 100, &x, &e), OD_OK);
  CHECK_INT(hs_ids_put(x, "old", 9, 1, od_now_us() - 7200LL * 1000000, true), OD_OK);
  CHECK_INT(hs_ids_put(x, "new", 10, 1, od_now_us(), true), OD_OK);
  CHECK_INT(hs_ids_sync(x, &e), OD_OK);
  bool gone = hs_ids_get(x, "old", NULL, NULL) == HS_ID_ABSENT, kept = hs_ids_get(x, "new", NULL, NULL) == HS_ID_DONE;
  hs_ids_close(x);
  CHECK(gone && kept);
  snprintf(cmd, sizeof cmd, "rm -rf %s", d);
  CHECK(system(cmd) == 0);
}

TEST(journal_sealed_with_keys) {
  tables();
  snprintf(dir, sizeof dir, "/tmp/odsync-test-http-sealed-%d", (int)getpid());
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  od_keyring *kr = NULL;
  od_error e = {0};
  CHECK_INT(od_keyring_new(&kr, &e), OD_OK);
  CHECK_INT(od_keyring_add(kr, "k1", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", true, "t",
                           &e), OD_OK);
  jkr = kr;
  hs_journal *j = jopen(1 << 20, 1 << 30);
  uint64_t seq;
  for (int i = 0; i < 20; i++) {
    char cid[32];
    snprintf(cid, sizeof cid, "s-%d", i);
    CHECK_INT(append_one(j, cid, 7000 + i, "customer-marker-93", &seq), 200);
  }
  hs_journal_close(j);
  snprintf(cmd, sizeof cmd, "grep -rqa customer-marker-93 %s/*.seg", dir);
  CHECK(system(cmd) != 0); /* sealed: the event text is not on disk */
  j = jopen(1 << 20, 1 << 30); /* reopened: every record opens, the ids come back */
  CHECK_INT(hs_journal_next_seq(j), 21);
  CHECK_INT(append_one(j, "s-3", 7003, "customer-marker-93", &seq), 200); /* a duplicate */
  CHECK_INT((long)seq, 4);
  uint64_t events;
  CHECK_INT(read_all(j, 1, &events), 20);
  CHECK_INT(events, 20);
  hs_journal_close(j);
  /* Without the keys the journal is refused, naming the key id. */
  jkr = NULL;
  hs_journal_opts o = {.dir = dir, .segment_bytes = 1 << 20, .max_unacked = 1 << 30, .id_retention_s = 3600,
                       .id_max = 100000, .tables = &T};
  hs_journal *x = NULL;
  CHECK_INT(hs_journal_open(&o, &x, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "key id 'k1'");
  /* One byte of a record's ciphertext altered (CRC fixed is covered by test_segfile): refused. */
  char seg[400];
  snprintf(cmd, sizeof cmd, "ls %s/*.seg | head -1", dir);
  FILE *f = popen(cmd, "r");
  CHECK(f && fgets(seg, sizeof seg, f));
  pclose(f);
  seg[strcspn(seg, "\n")] = '\0';
  f = fopen(seg, "r+b");
  CHECK(fseek(f, 60, SEEK_SET) == 0);
  int c = fgetc(f);
  CHECK(fseek(f, 60, SEEK_SET) == 0);
  fputc(c ^ 1, f);
  fclose(f);
  o.kr = kr;
  CHECK_INT(hs_journal_open(&o, &x, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, seg);
  CHECK_CONTAINS(e.msg, "offset 0");
  od_keyring_free(kr);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}
