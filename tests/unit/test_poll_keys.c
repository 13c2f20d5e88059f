/* test_poll_keys.c — postgres_poll's delivered-key ledger (sources/poll/poll_keys.h): the key order
 * and the checksum term (they must equal what PostgreSQL computes), and the journal's rules across
 * restarts: a superset of what sinks hold, removals written only once acknowledged, a re-delivered key
 * cancelling its pending removal, a torn last line ignored, trust refused to a sink behind the file. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include "odsync/position.h"
#include "sources/poll/poll_keys.h"
#include "sources/poll/poll_position.h"

static char g_dir[] = "/tmp/odsync-test-poll-keys.XXXXXX";
static char g_path[512];

static void setup(pk_ledger *l) {
  pk_init(l, g_path);
  bool numeric[2] = {true, false};
  od_error err = {0};
  CHECK_INT(pk_add_table(l, "public.items", 1, numeric, &err), OD_OK);
  CHECK_INT(pk_add_table(l, "public.tags", 2, numeric, &err), OD_OK);
}

static bool has(pk_ledger *l, int ti, const char *const *parts) {
  pk_table *t = &l->tables[ti];
  od_error err = {0};
  if (pk_normalize(t, &err)) return false;
  char key[256];
  size_t o = 0;
  for (int i = 0; i < t->nparts; i++) {
    size_t n = strlen(parts[i]) + 1;
    memcpy(key + o, parts[i], n);
    o += n;
  }
  for (size_t i = 0; i < t->n; i++)
    if (t->keys[i] && !pk_key_cmp(t, t->keys[i], key)) return true;
  return false;
}

static size_t find(pk_ledger *l, int ti, const char *part0) {
  pk_table *t = &l->tables[ti];
  for (size_t i = 0; i < t->n; i++)
    if (t->keys[i] && !strcmp(t->keys[i], part0)) return i;
  return (size_t)-1;
}

static void load(pk_ledger *l, const od_pos *from, bool expect_trusted) {
  setup(l);
  bool trusted = false;
  od_error err = {0};
  CHECK_INT(pk_load(l, from, &od_pgpoll_position, &trusted, &err), OD_OK);
  CHECK(trusted == expect_trusted);
}

TEST(key_hash_matches_postgres_md5) {
  /* ('x' || left(md5('42'), 16))::bit(64)::bigint and the same of concat_ws(chr(31), '1', 'a'). */
  pk_table one = {.nparts = 1}, two = {.nparts = 2};
  CHECK(pk_key_hash(&one, "42") == -6786705937655499993LL);
  CHECK(pk_key_hash(&two, "1\0a") == 5481657435162660241LL);
  CHECK(pk_key_hash(&one, "tab\there") == -8912671152970441764LL);
}

TEST(key_order_numeric_then_c_text) {
  pk_table t = {.nparts = 2, .numeric = {true, false}};
  CHECK(pk_key_cmp(&t, "9\0b", "10\0a") < 0);     /* 9 < 10 as numbers */
  CHECK(pk_key_cmp(&t, "-5\0z", "3\0a") < 0);
  CHECK(pk_key_cmp(&t, "1\0Zeta", "1\0alpha") < 0); /* "C": upper case first */
  CHECK(pk_key_cmp(&t, "1\0alpha", "1\0\xc3\x89" "clair") < 0); /* bytes, unsigned */
  CHECK(pk_key_cmp(&t, "1\0a", "1\0a") == 0);
}

TEST(ledger_superset_across_restarts) {
  CHECK(mkdtemp(g_dir) != NULL);
  snprintf(g_path, sizeof g_path, "%s/state/postgres_poll/p.keys", g_dir);
  od_error err = {0};
  pk_ledger l;
  od_pos none = od_pos_none();
  load(&l, &none, true); /* a fresh sink: empty and exact */
  const char *k1[] = {"1"}, *k2[] = {"2"}, *k3[] = {"3"}, *odd[] = {"7", "tab\there \\ new\nline"};
  CHECK_INT(pk_add(&l, 0, k1, &err), OD_OK);
  CHECK_INT(pk_add(&l, 0, k2, &err), OD_OK);
  CHECK_INT(pk_add(&l, 0, k2, &err), OD_OK); /* repeats collapse */
  CHECK_INT(pk_add(&l, 0, k3, &err), OD_OK);
  CHECK_INT(pk_add(&l, 1, odd, &err), OD_OK);
  CHECK_INT(pk_sync(&l, &err), OD_OK);
  pk_free(&l);

  od_pos p10 = od_pgpoll_pos('x', 10), p11 = od_pgpoll_pos('x', 11), p12 = od_pgpoll_pos('x', 12);
  load(&l, &p10, true);
  CHECK(l.tables[0].n == 3);
  CHECK(has(&l, 1, odd)); /* escaping round trip */
  /* Key 2 deleted in the transaction ending at 11; the process dies before the ack. */
  size_t i2 = find(&l, 0, "2");
  CHECK(i2 != (size_t)-1);
  CHECK_INT(pk_remove(&l, 0, i2, &p11, &err), OD_OK);
  pk_compact_keys(&l.tables[0]);
  CHECK(!has(&l, 0, k2));
  CHECK_INT(pk_sync(&l, &err), OD_OK);
  CHECK_INT(pk_acked(&l, &p10, &err), OD_OK); /* not yet durable */
  pk_free(&l);
  load(&l, &p10, true);
  CHECK(has(&l, 0, k2)); /* still there: its delete will be sent again (harmless) */

  /* Deleted again, acked: gone for good; key 3 deleted too but re-delivered before the ack. */
  i2 = find(&l, 0, "2");
  CHECK_INT(pk_remove(&l, 0, i2, &p11, &err), OD_OK);
  size_t i3 = find(&l, 0, "3");
  CHECK_INT(pk_remove(&l, 0, i3, &p11, &err), OD_OK);
  pk_compact_keys(&l.tables[0]);
  CHECK_INT(pk_add(&l, 0, k3, &err), OD_OK);
  CHECK_INT(pk_sync(&l, &err), OD_OK);
  CHECK_INT(pk_acked(&l, &p11, &err), OD_OK);
  CHECK(l.nrm == 0);
  pk_free(&l);
  load(&l, &p11, true);
  CHECK(!has(&l, 0, k2));
  CHECK(has(&l, 0, k3));
  CHECK(has(&l, 0, k1));
  pk_free(&l);

  /* A sink behind the highest acknowledged removal (restored from a backup): not trusted. */
  load(&l, &p10, false);
  pk_free(&l);

  /* A torn last line (no newline) is ignored. */
  FILE *f = fopen(g_path, "a");
  CHECK(f != NULL);
  fputs("+\t0\t99", f);
  fclose(f);
  load(&l, &p12, true);
  const char *k99[] = {"99"};
  CHECK(!has(&l, 0, k99));
  CHECK(has(&l, 0, k1));
  /* A full reload sets the position from which the file is trusted. */
  CHECK_INT(pk_set_valid_from(&l, &p12, &err), OD_OK);
  CHECK_INT(pk_sync(&l, &err), OD_OK);
  pk_free(&l);
  load(&l, &p11, false);
  pk_free(&l);
  load(&l, &p12, true);
  pk_free(&l);

  /* A file of other tables is not trusted. */
  pk_init(&l, g_path);
  bool numeric[1] = {true};
  CHECK_INT(pk_add_table(&l, "public.other", 1, numeric, &err), OD_OK);
  bool trusted = true;
  CHECK_INT(pk_load(&l, &p12, &od_pgpoll_position, &trusted, &err), OD_OK);
  CHECK(!trusted);
  CHECK(l.tables[0].n == 0);
  pk_free(&l);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  CHECK(system(cmd) == 0);
}

