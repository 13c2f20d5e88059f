/* Unit tests for streamed in-progress transactions: the store (src/sources/pg/pg_xact_store.c:
 * records in memory and in spill files, replay order, aborts of the whole transaction and of
 * subtransactions, reset, stale files removed at open, sealed spill files) and the protocol v2
 * router (src/sources/pg/pg_stream.c) in front of the real decoder: a Stream Commit replays the
 * kept messages as Begin / changes / Commit with the commit's LSN, time and xid; errors for
 * malformed and unknown-xid messages. Real files in a mkdtemp dir. In the valgrind list of
 * scripts/test.sh. */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/seal.h"
#include "sources/pg/pg_stream.h"
#include "sources/pg/pg_xact_store.h"
#include "test.h"

static char dir[64];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/od_pgstr_XXXXXX");
  if (!mkdtemp(dir)) OD_TEST_FAIL("mkdtemp failed");
}

static void rm_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) OD_TEST_FAIL("rm failed");
}

static int count_files(void) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Replays xid and concatenates "msg|" for each record. */
static void replay_all(od_pg_xact_store *st, uint32_t xid, char *out, size_t cap) {
  od_error err;
  CHECK_INT(od_pg_xact_store_replay(st, xid, &err), 0);
  out[0] = '\0';
  char *m;
  size_t len;
  int rc;
  while ((rc = od_pg_xact_store_next(st, &m, &len, &err)) == 1) {
    size_t at = strlen(out);
    CHECK(at + len + 2 < cap);
    memcpy(out + at, m, len);
    out[at + len] = '|';
    out[at + len + 1] = '\0';
  }
  CHECK_INT(rc, 0);
  od_pg_xact_store_end_replay(st);
}

static void store_case(size_t budget) {
  fresh_dir();
  od_error err;
  od_pg_xact_store *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = budget};
  CHECK_INT(od_pg_xact_store_open(&o, &st, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 100, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 200, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 100, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "xid 100");
  /* interleaved: 100 (top and subtransactions 101, 102, 103), 200 */
  const struct { uint32_t top, xid; const char *m; } recs[] = {
      {100, 100, "a1"}, {200, 200, "b1"}, {100, 101, "s1"}, {100, OD_PG_XACT_KEEP, "R101"},
      {100, 102, "s2"}, {200, 200, "b2"}, {100, 103, "s3"}, {100, 100, "a2"}, {100, 101, "s1b"}};
  for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++)
    CHECK_INT(od_pg_xact_store_append(st, recs[i].top, recs[i].xid, recs[i].m, strlen(recs[i].m), &err), 0);
  CHECK_INT(od_pg_xact_store_append(st, 300, 300, "x", 1, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "top-level xid 300");
  CHECK_INT(od_pg_xact_store_abort(st, 100, 101, &err), 0);
  CHECK_INT(od_pg_xact_store_abort(st, 100, 103, &err), 0);
  CHECK_INT(od_pg_xact_store_abort(st, 999, 999, &err), 0); /* unknown: ignored */
  od_pg_xact_stats s;
  od_pg_xact_store_stats(st, &s);
  CHECK_INT(s.open, 2);
  if (budget < 16) {
    CHECK(s.spilled_txns >= 1);
    CHECK(count_files() >= 1);
  } else {
    CHECK_INT((int)s.spilled_txns, 0);
    CHECK_INT(count_files(), 0);
  }
  char out[256];
  replay_all(st, 100, out, sizeof out);
  CHECK_STR(out, "a1|R101|s2|a2|"); /* 101 and 103 aborted; the Relation kept */
  CHECK(!od_pg_xact_store_has(st, 100));
  CHECK_INT(od_pg_xact_store_replay(st, 100, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Stream Commit of xid 100");
  /* whole abort of 200 */
  CHECK_INT(od_pg_xact_store_abort(st, 200, 200, &err), 0);
  CHECK(!od_pg_xact_store_has(st, 200));
  od_pg_xact_store_stats(st, &s);
  CHECK_INT(s.open, 0);
  CHECK_INT((int)s.mem_bytes, 0);
  CHECK_INT(count_files(), 0);
  od_pg_xact_store_free(st);
  rm_dir();
}

TEST(store_in_memory) { store_case(1 << 20); }
TEST(store_spilled) { store_case(8); }

TEST(store_large_spill_order_and_reset) {
  fresh_dir();
  od_error err;
  od_pg_xact_store *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 4096};
  CHECK_INT(od_pg_xact_store_open(&o, &st, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 7, &err), 0);
  char m[64];
  for (int i = 0; i < 50000; i++) { /* crosses the 1 MiB write chunk several times */
    int n = snprintf(m, sizeof m, "record %d", i);
    CHECK_INT(od_pg_xact_store_append(st, 7, (uint32_t)(i % 3 == 0 ? 8 : 7), m, (size_t)n, &err), 0);
  }
  CHECK_INT(od_pg_xact_store_abort(st, 7, 8, &err), 0);
  od_pg_xact_stats s;
  od_pg_xact_store_stats(st, &s);
  CHECK_INT((int)s.spilled_txns, 1);
  CHECK(s.mem_bytes <= 4096);
  CHECK_INT(od_pg_xact_store_replay(st, 7, &err), 0);
  char *r;
  size_t len;
  int want = 0, got = 0, rc;
  while ((rc = od_pg_xact_store_next(st, &r, &len, &err)) == 1) {
    while (want % 3 == 0) want++;
    int n = snprintf(m, sizeof m, "record %d", want++);
    CHECK_INT((int)len, n);
    CHECK(memcmp(r, m, len) == 0);
    got++;
  }
  CHECK_INT(rc, 0);
  CHECK_INT(got, 50000 - 16667);
  od_pg_xact_store_end_replay(st);
  CHECK_INT(count_files(), 0);
  /* a second spilled transaction replays its own records (not the last chunk read) */
  CHECK_INT(od_pg_xact_store_begin(st, 11, &err), 0);
  for (int i = 0; i < 1000; i++) CHECK_INT(od_pg_xact_store_append(st, 11, 11, "abcdefghij", 10, &err), 0);
  CHECK_INT(od_pg_xact_store_replay(st, 11, &err), 0);
  got = 0;
  while ((rc = od_pg_xact_store_next(st, &r, &len, &err)) == 1) {
    CHECK_INT((int)len, 10);
    CHECK(memcmp(r, "abcdefghij", 10) == 0);
    got++;
  }
  CHECK_INT(rc, 0);
  CHECK_INT(got, 1000);
  od_pg_xact_store_end_replay(st);
  /* reset forgets open transactions and removes their files */
  CHECK_INT(od_pg_xact_store_begin(st, 9, &err), 0);
  for (int i = 0; i < 1000; i++) CHECK_INT(od_pg_xact_store_append(st, 9, 9, "0123456789", 10, &err), 0);
  CHECK_INT(count_files(), 1);
  od_pg_xact_store_reset(st);
  CHECK_INT(count_files(), 0);
  CHECK(!od_pg_xact_store_has(st, 9));
  od_pg_xact_store_free(st);
  rm_dir();
}

TEST(store_open_removes_stale_files) {
  fresh_dir();
  char path[128];
  snprintf(path, sizeof path, "%s/00000000000000000042.xact", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("left by a killed run", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/keep.txt", dir);
  f = fopen(path, "w");
  CHECK(f != NULL);
  fclose(f);
  od_error err;
  od_pg_xact_store *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 0};
  CHECK_INT(od_pg_xact_store_open(&o, &st, &err), 0);
  CHECK_INT(count_files(), 1); /* only keep.txt */
  od_pg_xact_store_free(st);
  rm_dir();
}

TEST(store_sealed_spill_has_no_plaintext) {
  fresh_dir();
  od_error err;
  od_keyring *kr = NULL;
  CHECK_INT(od_keyring_new(&kr, &err), 0);
  CHECK_INT(od_keyring_add(kr, "k1", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", true, "test",
                           &err), 0);
  od_pg_xact_store *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 0, .kr = kr};
  CHECK_INT(od_pg_xact_store_open(&o, &st, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 5, &err), 0);
  CHECK_INT(od_pg_xact_store_append(st, 5, 5, "secret-marker-5512", 18, &err), 0);
  CHECK_INT(od_pg_xact_store_replay(st, 5, &err), 0); /* flushes the file */
  char path[128], buf[4096];
  snprintf(path, sizeof path, "%s/00000000000000000005.xact", dir);
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  CHECK(n > 18);
  CHECK(memmem(buf, n, "secret-marker", 13) == NULL);
  char *m;
  size_t len;
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 1);
  CHECK_INT((int)len, 18);
  CHECK(memcmp(m, "secret-marker-5512", 18) == 0);
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 0);
  od_pg_xact_store_end_replay(st);
  od_pg_xact_store_free(st);
  od_keyring_free(kr);
  rm_dir();
}

/* Large records given in two pieces (append2): in a spilled transaction each goes to the file as a
 * frame of its own, in order between the small ones that share chunks; an aborted
 * subtransaction's large record is skipped; the same sealed. Checks every byte of the replay. */
static void large_pieces_case(const od_keyring *kr) {
  fresh_dir();
  od_error err;
  od_pg_xact_store *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 4096, .kr = kr};
  CHECK_INT(od_pg_xact_store_open(&o, &st, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 40, &err), 0);
  enum { BIG = 3u << 20 };
  char *body = malloc(BIG);
  CHECK(body != NULL);
  for (size_t i = 0; i < BIG; i++) body[i] = (char)('a' + i % 23);
  /* small, big (xid 40), small, big (sub 41, aborted), big (40), small: the budget is passed at once */
  CHECK_INT(od_pg_xact_store_append(st, 40, 40, "s1", 2, &err), 0);
  CHECK_INT(od_pg_xact_store_append2(st, 40, 40, "I", 1, body, BIG, &err), 0);
  CHECK_INT(od_pg_xact_store_append(st, 40, 40, "s2", 2, &err), 0);
  CHECK_INT(od_pg_xact_store_append2(st, 40, 41, "U", 1, body, BIG - 7, &err), 0);
  CHECK_INT(od_pg_xact_store_append2(st, 40, 40, "D", 1, body + 5, BIG - 5, &err), 0);
  CHECK_INT(od_pg_xact_store_append2(st, 40, 40, "s", 1, "3", 1, &err), 0); /* small in two pieces */
  od_pg_xact_stats stats;
  od_pg_xact_store_stats(st, &stats);
  CHECK_INT((int)stats.spilled_txns, 1);
  CHECK(stats.spilled_bytes > 3ull * BIG); /* the three large records went to the file at once */
  CHECK_INT(od_pg_xact_store_abort(st, 40, 41, &err), 0);
  CHECK_INT(od_pg_xact_store_replay(st, 40, &err), 0);
  char *m;
  size_t len;
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 1);
  CHECK(len == 2 && memcmp(m, "s1", 2) == 0);
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 1);
  CHECK(len == BIG + 1 && m[0] == 'I' && memcmp(m + 1, body, BIG) == 0);
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 1);
  CHECK(len == 2 && memcmp(m, "s2", 2) == 0);
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 1);
  CHECK(len == BIG - 4 && m[0] == 'D' && memcmp(m + 1, body + 5, BIG - 5) == 0);
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 1);
  CHECK(len == 2 && memcmp(m, "s3", 2) == 0);
  CHECK_INT(od_pg_xact_store_next(st, &m, &len, &err), 0);
  od_pg_xact_store_end_replay(st);
  CHECK_INT(count_files(), 0);
  free(body);
  od_pg_xact_store_free(st);
  rm_dir();
}

TEST(store_large_records_in_pieces) { large_pieces_case(NULL); }

TEST(store_large_records_in_pieces_sealed) {
  od_error err;
  od_keyring *kr = NULL;
  CHECK_INT(od_keyring_new(&kr, &err), 0);
  CHECK_INT(od_keyring_add(kr, "k1", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", true, "test",
                           &err), 0);
  large_pieces_case(kr);
  od_keyring_free(kr);
}

/* A spill file that cannot be written (RLIMIT_FSIZE makes write() fail with EFBIG, as a full disk
 * fails with ENOSPC): a retriable OD_EIO naming the file; the transaction can still be aborted. */
TEST(store_write_failure_is_retriable_and_named) {
  fresh_dir();
  od_error err;
  od_pg_xact_store *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 0};
  CHECK_INT(od_pg_xact_store_open(&o, &st, &err), 0);
  CHECK_INT(od_pg_xact_store_begin(st, 77, &err), 0);
  struct rlimit old, small = {.rlim_cur = 64 * 1024, .rlim_max = RLIM_INFINITY};
  CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
  small.rlim_max = old.rlim_max;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  CHECK_INT(setrlimit(RLIMIT_FSIZE, &small), 0);
  char rec[1000];
  memset(rec, 'r', sizeof rec);
  int rc = 0;
  for (int i = 0; i < 5000 && rc == 0; i++) rc = od_pg_xact_store_append(st, 77, 77, rec, sizeof rec, &err);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  CHECK_INT(rc, OD_EIO);
  if (getenv("OD_TEST_VERBOSE")) fprintf(stderr, "  %s\n", err.msg);
  CHECK(err.retriable);
  CHECK_CONTAINS(err.msg, "streamed transaction 77");
  CHECK_CONTAINS(err.msg, "00000000000000000077.xact");
  CHECK_INT(od_pg_xact_store_abort(st, 77, 77, &err), 0);
  CHECK_INT(count_files(), 0);
  od_pg_xact_store_free(st);
  rm_dir();
}

/* ---- the router in front of the decoder ---- */

typedef struct rec {
  char log[4096];
  od_txn_info last;
} rec;

static void logf_(rec *r, const char *s) { snprintf(r->log + strlen(r->log), sizeof r->log - strlen(r->log), "%s", s); }

static int h_begin(void *ctx, const od_txn_info *t, od_error *err) {
  (void)err;
  rec *r = ctx;
  char b[64];
  snprintf(b, sizeof b, "B%u ", (unsigned)t->xid);
  logf_(r, b);
  return 0;
}
static int h_change(void *ctx, const od_txn_info *t, const od_change *c, od_error *err) {
  (void)err;
  (void)t;
  rec *r = ctx;
  char b[128];
  snprintf(b, sizeof b, "%c%u:%.*s ", c->op, c->index, (int)c->newtup.values[0].len, c->newtup.values[0].data);
  logf_(r, b);
  return 0;
}
static int h_commit(void *ctx, const od_txn_info *t, od_error *err) {
  (void)err;
  rec *r = ctx;
  r->last = *t;
  logf_(r, "C ");
  return 0;
}

/* message builders (big-endian) */
typedef struct mb {
  char b[256];
  size_t n;
} mb;
static void u8(mb *m, unsigned v) { m->b[m->n++] = (char)v; }
static void u32(mb *m, uint32_t v) {
  for (int i = 3; i >= 0; i--) u8(m, (v >> (8 * i)) & 0xff);
}
static void u64(mb *m, uint64_t v) {
  u32(m, (uint32_t)(v >> 32));
  u32(m, (uint32_t)v);
}
static void str(mb *m, const char *s) {
  size_t l = strlen(s) + 1;
  memcpy(m->b + m->n, s, l);
  m->n += l;
}

static mb relation(uint32_t xid, uint32_t oid) {
  mb m = {.n = 0};
  u8(&m, 'R');
  if (xid) u32(&m, xid);
  u32(&m, oid);
  str(&m, "public");
  str(&m, "t");
  u8(&m, 'd');
  u32(&m, 0); /* u16 ncols = 1 written as two bytes below */
  m.n -= 4;
  u8(&m, 0);
  u8(&m, 1);
  u8(&m, 1); /* key */
  str(&m, "id");
  u32(&m, 25); /* text */
  u32(&m, 0xffffffff);
  return m;
}

static mb insert(uint32_t xid, uint32_t oid, const char *v) {
  mb m = {.n = 0};
  u8(&m, 'I');
  if (xid) u32(&m, xid);
  u32(&m, oid);
  u8(&m, 'N');
  u8(&m, 0);
  u8(&m, 1);
  u8(&m, 't');
  u32(&m, (uint32_t)strlen(v));
  memcpy(m.b + m.n, v, strlen(v));
  m.n += strlen(v);
  return m;
}

static mb sstart(uint32_t xid, int first) {
  mb m = {.n = 0};
  u8(&m, 'S');
  u32(&m, xid);
  u8(&m, (unsigned)first);
  return m;
}
static mb sstop(void) {
  mb m = {.n = 0};
  u8(&m, 'E');
  return m;
}
static mb scommit(uint32_t xid, uint64_t lsn, uint64_t end, uint64_t ts) {
  mb m = {.n = 0};
  u8(&m, 'c');
  u32(&m, xid);
  u8(&m, 0);
  u64(&m, lsn);
  u64(&m, end);
  u64(&m, ts);
  return m;
}
static mb sabort(uint32_t xid, uint32_t sub) {
  mb m = {.n = 0};
  u8(&m, 'A');
  u32(&m, xid);
  u32(&m, sub);
  return m;
}
static mb begin(uint32_t xid, uint64_t lsn) {
  mb m = {.n = 0};
  u8(&m, 'B');
  u64(&m, lsn);
  u64(&m, 0);
  u32(&m, xid);
  return m;
}
static mb commit(uint64_t lsn, uint64_t end) {
  mb m = {.n = 0};
  u8(&m, 'C');
  u8(&m, 0);
  u64(&m, lsn);
  u64(&m, end);
  u64(&m, 0);
  return m;
}

/* Route one message (exactly-sized heap copy), decoding what the router leaves, then pump. */
static int feed(od_pg_stream *st, od_pgoutput *d, const od_change_handler *h, mb m, od_error *err) {
  char *buf = malloc(m.n);
  memcpy(buf, m.b, m.n);
  bool handled = false;
  int rc = od_pg_stream_route(st, d, buf, m.n, h, &handled, err);
  if (!rc && !handled) rc = od_pgoutput_decode(d, buf, m.n, h, err);
  free(buf);
  while (!rc && od_pg_stream_replaying(st)) rc = od_pg_stream_pump(st, d, h, 2, err);
  return rc;
}

/* A logical message (its prefix, content "c") inside a stream block, with the v2 xid after its type. */
static mb smessage(uint32_t xid, bool transactional, const char *prefix) {
  mb m = {.n = 0};
  u8(&m, 'M');
  u32(&m, xid);
  u8(&m, transactional ? 1 : 0);
  u64(&m, 0x1234);
  str(&m, prefix);
  u32(&m, 1);
  u8(&m, 'c');
  return m;
}

/* A non-transactional message in a streamed block is delivered at once (outside any transaction),
 * a transactional one with its transaction at the commit. */
TEST(router_delivers_non_transactional_message_at_once) {
  fresh_dir();
  od_error err;
  od_pg_stream *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 1 << 20};
  CHECK_INT(od_pg_stream_open(&o, &st, &err), 0);
  od_pgoutput *d = od_pgoutput_new();
  rec r = {.log = ""};
  od_change_handler h = {.ctx = &r, .begin = h_begin, .change = h_change, .commit = h_commit};
  CHECK_INT(feed(st, d, &h, sstart(900, 1), &err), 0);
  CHECK_INT(feed(st, d, &h, smessage(900, true, "later"), &err), 0);
  CHECK_INT(feed(st, d, &h, smessage(900, false, "now"), &err), 0);
  CHECK_STR(r.log, "M0:now ");
  CHECK_INT(feed(st, d, &h, sstop(), &err), 0);
  CHECK_INT(feed(st, d, &h, scommit(900, 0x5000, 0x5010, 0), &err), 0);
  CHECK_STR(r.log, "M0:now B900 M0:later C ");
  mb cut = smessage(901, false, "x");
  cut.n = 5; /* the xid only */
  CHECK_INT(feed(st, d, &h, sstart(901, 1), &err), 0);
  CHECK_INT(feed(st, d, &h, cut, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "flags");
  od_pgoutput_free(d);
  od_pg_stream_free(st);
  rm_dir();
}

TEST(router_replays_at_commit) {
  fresh_dir();
  od_error err;
  od_pg_stream *st = NULL;
  od_pg_xact_store_opts o = {.dir = dir, .mem_budget = 64};
  CHECK_INT(od_pg_stream_open(&o, &st, &err), 0);
  od_pgoutput *d = od_pgoutput_new();
  rec r = {.log = ""};
  od_change_handler h = {.ctx = &r, .begin = h_begin, .change = h_change, .commit = h_commit};
  /* xid 500 streamed in two blocks (its Relation in subtransaction 501, which aborts), xid 600
   * streamed and aborted, an ordinary transaction 700 between. */
  CHECK_INT(feed(st, d, &h, sstart(500, 1), &err), 0);
  CHECK_INT(feed(st, d, &h, relation(501, 16384), &err), 0);
  CHECK_INT(feed(st, d, &h, insert(501, 16384, "sub"), &err), 0);
  CHECK_INT(feed(st, d, &h, insert(500, 16384, "top1"), &err), 0);
  CHECK_INT(feed(st, d, &h, sstop(), &err), 0);
  CHECK(od_pg_stream_busy(st));
  CHECK_INT(feed(st, d, &h, sstart(600, 1), &err), 0);
  CHECK_INT(feed(st, d, &h, relation(600, 16384), &err), 0);
  CHECK_INT(feed(st, d, &h, insert(600, 16384, "aborted"), &err), 0);
  CHECK_INT(feed(st, d, &h, sstop(), &err), 0);
  CHECK_INT(feed(st, d, &h, sabort(500, 501), &err), 0);
  CHECK_STR(r.log, ""); /* nothing delivered yet */
  CHECK_INT(feed(st, d, &h, relation(0, 16384), &err), 0);
  CHECK_INT(feed(st, d, &h, begin(700, 0x1000), &err), 0);
  CHECK_INT(feed(st, d, &h, insert(0, 16384, "plain"), &err), 0);
  CHECK_INT(feed(st, d, &h, commit(0x1000, 0x1010), &err), 0);
  CHECK_INT(feed(st, d, &h, sstart(500, 0), &err), 0);
  CHECK_INT(feed(st, d, &h, insert(500, 16384, "top2"), &err), 0);
  CHECK_INT(feed(st, d, &h, sstop(), &err), 0);
  CHECK_INT(feed(st, d, &h, sabort(600, 600), &err), 0);
  CHECK_INT(feed(st, d, &h, scommit(500, 0x2000, 0x2010, 77), &err), 0);
  CHECK_STR(r.log, "B700 I0:plain C B500 I0:top1 I1:top2 C ");
  CHECK_INT((int)r.last.xid, 500);
  CHECK(od_pg_lsn(&r.last.end) == 0x2010);
  CHECK(od_pg_lsn(&r.last.start) == 0x2000);
  CHECK(!od_pg_stream_busy(st));
  CHECK_INT(count_files(), 0);
  od_pg_xact_stats s;
  od_pg_stream_stats(st, &s);
  CHECK(s.spilled_txns >= 1); /* budget 64: xid 500 went to a file */

  /* errors */
  CHECK_INT(feed(st, d, &h, scommit(999, 0x3000, 0x3010, 0), &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "xid 999");
  mb t = scommit(500, 0x3000, 0x3010, 0);
  t.n -= 3;
  CHECK_INT(feed(st, d, &h, t, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Stream Commit");
  CHECK_CONTAINS(err.msg, "truncated");
  CHECK_INT(feed(st, d, &h, sstart(800, 0), &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "first segment");
  CHECK_INT(feed(st, d, &h, sstop(), &err), OD_EPROTOCOL);
  CHECK_INT(feed(st, d, &h, sstart(801, 1), &err), 0);
  mb ins = insert(801, 16384, "x");
  ins.n = 3; /* cut inside the xid */
  CHECK_INT(feed(st, d, &h, ins, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Insert");
  CHECK_INT(feed(st, d, &h, begin(802, 0x4000), &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "block of xid 801");
  od_pg_stream_reset(st);
  CHECK(!od_pg_stream_busy(st));
  od_pgoutput_free(d);
  od_pg_stream_free(st);
  rm_dir();
}
