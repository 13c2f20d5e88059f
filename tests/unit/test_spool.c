/* Unit tests for the spool record format (src/core/spool_codec.c) and the segment store
 * (src/core/spool.c): round trips of every value kind, relations by reference and by copy, real
 * segment files in a mkdtemp dir (append, read, compression, checksum failure, torn tails, pruning,
 * the byte bound, recovery of episodes). In the valgrind list of scripts/test.sh. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/queue.h"
#include "core/spool.h"
#include "core/spool_codec.h"
#include "test.h"

static od_column cols[3] = {
    {.name = "id", .type_oid = 23, .typmod = -1, .key = true, .type_name = "integer", .attnum = 1},
    {.name = "body", .type_oid = 25, .typmod = -1, .type_name = "text", .attnum = 2, .missing_value = "dflt"},
    {.name = "blob", .type_oid = 17, .typmod = -1, .type_name = "bytea", .attnum = 4},
};
static od_relation rel = {.oid = 16384, .schema = "public", .name = "t", .replica_identity = 'd', .ncolumns = 3,
                          .columns = cols, .version = 2, .has_primary_key = true};

static od_queue q;

/* A chunk with: an insert of text, binary (with NULs) and NULL values; an update with an unchanged
 * TOAST value and a key before-image; a delete; a truncate; a message; a 1 MiB value. */
static od_chunk *sample_chunk(od_pos *start1, od_pos *start2, char *big, size_t biglen) {
  od_chunk *c = od_queue_take_free(&q);
  static od_value v_ins[3], v_upd[3], v_old[3], v_del[3], v_msg[2];
  static const char bin[5] = {0, 1, 2, 0, (char)255};
  v_ins[0] = (od_value){.data = "1", .len = 1, .kind = OD_VALUE_TEXT};
  v_ins[1] = (od_value){.data = "", .len = 0, .kind = OD_VALUE_TEXT};
  v_ins[2] = (od_value){.data = bin, .len = 5, .kind = OD_VALUE_BINARY};
  v_upd[0] = (od_value){.data = "1", .len = 1, .kind = OD_VALUE_TEXT};
  v_upd[1] = (od_value){.kind = OD_VALUE_UNCHANGED};
  v_upd[2] = (od_value){.kind = OD_VALUE_NULL};
  v_old[0] = (od_value){.data = "1", .len = 1, .kind = OD_VALUE_TEXT};
  v_old[1] = v_old[2] = (od_value){.kind = OD_VALUE_NULL};
  v_del[0] = (od_value){.data = big, .len = (uint32_t)biglen, .kind = OD_VALUE_TEXT};
  v_del[1] = v_del[2] = (od_value){.kind = OD_VALUE_NULL};
  v_msg[0] = (od_value){.data = "pfx", .len = 3, .kind = OD_VALUE_TEXT};
  v_msg[1] = (od_value){.data = bin, .len = 5, .kind = OD_VALUE_BINARY};
  od_change *ch = od_chunk_add(c);
  *ch = (od_change){.op = OD_OP_INSERT, .rel = &rel, .newtup = {3, v_ins}, .index = 0, .txn_start = start1};
  ch = od_chunk_add(c);
  *ch = (od_change){.op = OD_OP_UPDATE, .old_kind = 'K', .rel = &rel, .newtup = {3, v_upd}, .oldtup = {3, v_old},
                    .index = 1, .txn_start = start1};
  ch = od_chunk_add(c);
  *ch = (od_change){.op = OD_OP_DELETE, .old_kind = 'O', .rel = &rel, .oldtup = {3, v_del}, .index = 0,
                    .txn_start = start2};
  ch = od_chunk_add(c);
  *ch = (od_change){.op = OD_OP_TRUNCATE, .truncate_flags = 3, .rel = &rel, .index = 1, .txn_start = start2};
  ch = od_chunk_add(c);
  *ch = (od_change){.op = OD_OP_MESSAGE, .newtup = {2, v_msg}, .index = 2, .txn_start = start2};
  ch = od_chunk_add(c);
  *ch = (od_change){.op = OD_OP_READ, .rel = &rel, .newtup = {3, v_ins}, .txn_start = NULL};
  c->ntxns = 1;
  c->boundary = 2;
  c->end = od_pos_legacy_lsn(0x2000);
  c->commit_time = 1700000000123456LL;
  c->xid = 777;
  od_chunk_add_mark(c, "isnap/public.t/pos", 42);
  od_chunk_add_text_mark(c, "isnap/public.t/key", "k\x01z");
  return c;
}

static void check_value(const od_value *a, const od_value *b) {
  CHECK_INT(a->kind, b->kind);
  CHECK_INT(a->len, b->len);
  if (a->kind == OD_VALUE_TEXT || a->kind == OD_VALUE_BINARY) {
    CHECK(memcmp(a->data, b->data, a->len) == 0);
    CHECK(b->data[b->len] == '\0');
  } else {
    CHECK(b->data == NULL);
  }
}

static void check_tuple(const od_tuple *a, const od_tuple *b) {
  CHECK_INT(a->ncolumns, b->ncolumns);
  for (uint16_t i = 0; i < a->ncolumns; i++) check_value(&a->values[i], &b->values[i]);
}

static void check_chunks(const od_chunk *a, const od_chunk *b, bool same_rel) {
  CHECK_INT(a->nchanges, b->nchanges);
  CHECK_INT(a->ntxns, b->ntxns);
  CHECK_INT(a->boundary, b->boundary);
  CHECK(a->ends_txn == b->ends_txn && a->heartbeat == b->heartbeat);
  CHECK(od_pos_eq(&a->end, &b->end));
  CHECK(a->commit_time == b->commit_time && a->xid == b->xid);
  CHECK_INT(a->nmarks, b->nmarks);
  for (uint32_t i = 0; i < a->nmarks; i++) {
    CHECK_STR(a->marks[i].key, b->marks[i].key);
    CHECK((a->marks[i].text == NULL) == (b->marks[i].text == NULL));
    if (a->marks[i].text) CHECK_STR(a->marks[i].text, b->marks[i].text);
    else CHECK(a->marks[i].value == b->marks[i].value);
  }
  for (uint32_t i = 0; i < a->nchanges; i++) {
    const od_change *x = &a->changes[i], *y = &b->changes[i];
    CHECK_INT(x->op, y->op);
    CHECK_INT(x->old_kind, y->old_kind);
    CHECK_INT(x->truncate_flags, y->truncate_flags);
    CHECK_INT(x->index, y->index);
    CHECK((x->txn_start == NULL) == (y->txn_start == NULL));
    if (x->txn_start) CHECK(od_pos_eq(x->txn_start, y->txn_start));
    CHECK((x->rel == NULL) == (y->rel == NULL));
    if (x->rel && same_rel) CHECK(x->rel == y->rel);
    if (x->rel && !same_rel) {
      CHECK(x->rel != y->rel);
      CHECK_INT(x->rel->oid, y->rel->oid);
      CHECK_INT(x->rel->version, y->rel->version);
      CHECK_STR(x->rel->schema, y->rel->schema);
      CHECK_STR(x->rel->name, y->rel->name);
      CHECK(x->rel->has_primary_key == y->rel->has_primary_key);
      CHECK(x->rel->match_full_row == y->rel->match_full_row);
      CHECK_INT(x->rel->ncolumns, y->rel->ncolumns);
      for (uint16_t k = 0; k < x->rel->ncolumns; k++) {
        const od_column *p = &x->rel->columns[k], *r = &y->rel->columns[k];
        CHECK_STR(p->name, r->name);
        CHECK_STR(p->type_name, r->type_name);
        CHECK(p->type_oid == r->type_oid && p->typmod == r->typmod && p->key == r->key && p->attnum == r->attnum);
        CHECK((p->missing_value == NULL) == (r->missing_value == NULL));
        if (p->missing_value) CHECK_STR(p->missing_value, r->missing_value);
      }
    }
    check_tuple(&x->newtup, &y->newtup);
    check_tuple(&x->oldtup, &y->oldtup);
  }
}

TEST(codec_round_trip_same_session_and_later_session) {
  CHECK_INT(od_queue_init(&q, 0, 0, 1), OD_OK);
  size_t biglen = 1 << 20;
  char *big = malloc(biglen + 1);
  for (size_t i = 0; i < biglen; i++) big[i] = (char)('a' + i % 26);
  big[biglen] = '\0';
  od_pos s1 = od_pos_legacy_lsn(0x1000), s2 = od_pos_legacy_lsn(0x1800);
  od_chunk *c = sample_chunk(&s1, &s2, big, biglen);
  od_sbuf buf = {0};
  CHECK_INT(od_spool_encode(c, 7, &buf), OD_OK);
  CHECK(buf.len > biglen);
  od_spool_rels *rels = od_spool_rels_new();
  od_error err;
  /* The same session: the live relation pointer comes back. */
  od_chunk *d = od_queue_take_free(&q);
  CHECK_INT(od_spool_decode(buf.data, buf.len, 7, rels, d, &err), OD_OK);
  check_chunks(c, d, true);
  od_queue_recycle(&q, d);
  /* A later session: a copy, one per relation version, reused across records. */
  d = od_queue_take_free(&q);
  CHECK_INT(od_spool_decode(buf.data, buf.len, 8, rels, d, &err), OD_OK);
  check_chunks(c, d, false);
  const od_relation *copy = d->changes[0].rel;
  CHECK(d->changes[1].rel == copy);
  od_queue_recycle(&q, d);
  d = od_queue_take_free(&q);
  CHECK_INT(od_spool_decode(buf.data, buf.len, 8, rels, d, &err), OD_OK);
  CHECK(d->changes[0].rel == copy);
  od_queue_recycle(&q, d);
  /* Every truncation of the record is refused, never read as a shorter chunk. */
  for (size_t cut = 0; cut < 400; cut += 7) {
    d = od_queue_take_free(&q);
    CHECK(od_spool_decode(buf.data, cut, 9, rels, d, &err) != OD_OK);
    od_queue_recycle(&q, d);
  }
  od_spool_rels_free(rels);
  od_sbuf_free(&buf);
  od_queue_recycle(&q, c);
  free(big);
  od_queue_destroy(&q);
}

/* ---- the store -------------------------------------------------------------------------------- */

static char dir[64];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/od_spool_XXXXXX");
  if (!mkdtemp(dir)) OD_TEST_FAIL("mkdtemp failed");
}

static void rm_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) OD_TEST_FAIL("rm failed");
}

static od_spool *open_spool(int codec, uint64_t max_bytes, uint64_t seg) {
  char sdir[128];
  snprintf(sdir, sizeof sdir, "%s/s", dir);
  od_spool_options o = {.dir = sdir, .max_bytes = max_bytes, .segment_bytes = seg, .compression = codec};
  od_spool *s = NULL;
  od_error err;
  int rc = od_spool_open(&o, &s, &err);
  if (rc) OD_TEST_FAIL("open: %s", err.msg);
  return s;
}

/* Record i: a body of 3000 bytes derived from i; ends a transaction at 0x100 * (i + 1). */
static void put_rec(od_spool *s, int i, uint8_t flags) {
  uint8_t body[3000];
  for (size_t k = 0; k < sizeof body; k++) body[k] = (uint8_t)((k / 50 + (size_t)i) % 251);
  od_spool_meta m = {.flags = (uint8_t)(flags | OD_SPOOL_END), .end = od_pos_legacy_lsn(0x100u * (unsigned)(i + 1)),
                     .base = od_pos_legacy_lsn(0x100u * (unsigned)i)};
  od_error err;
  CHECK_INT(od_spool_append(s, &m, body, sizeof body, false, &err), OD_OK);
}

static int get_rec(od_spool *s) { /* the record's i, or -1 at the end */
  od_spool_meta m;
  od_sbuf b = {0};
  od_error err;
  int rc = od_spool_next(s, &m, &b, &err);
  if (rc == OD_EOF) {
    od_sbuf_free(&b);
    return -1;
  }
  if (rc) OD_TEST_FAIL("next: %s", err.msg);
  CHECK_INT(b.len, 3000);
  int i = (int)(od_pos_to_u64(&m.end) / 0x100) - 1;
  for (size_t k = 0; k < b.len; k++)
    if (b.data[k] != (uint8_t)((k / 50 + (size_t)i) % 251)) OD_TEST_FAIL("record %d byte %zu differs", i, k);
  od_sbuf_free(&b);
  return i;
}

TEST(store_append_read_every_codec_and_reopen) {
  int codecs[3] = {OD_SPOOL_NONE, OD_SPOOL_ZSTD, OD_SPOOL_LZ4};
  for (int c = 0; c < 3; c++) {
    fresh_dir();
    od_spool *s = open_spool(codecs[c], 1 << 26, 16384);
    od_error err;
    for (int i = 0; i < 40; i++) put_rec(s, i, i == 0 ? OD_SPOOL_EPISODE | OD_SPOOL_BASE : 0);
    CHECK_INT(get_rec(s), -1); /* nothing durable before sync */
    CHECK_INT(od_spool_sync(s, &err), OD_OK);
    for (int i = 0; i < 40; i++) CHECK_INT(get_rec(s), i);
    CHECK_INT(get_rec(s), -1);
    if (codecs[c] != OD_SPOOL_NONE) CHECK(od_spool_bytes(s) < 40 * 3000);
    od_spool_close(s);
    s = open_spool(codecs[c], 1 << 26, 16384);
    CHECK_INT(od_spool_records(s), 40);
    CHECK_INT(od_spool_unread(s), 40);
    for (int i = 0; i < 40; i++) CHECK_INT(get_rec(s), i);
    od_spool_close(s);
    rm_dir();
  }
}

static char *seg_file(int n) { /* the n-th segment file (sorted), static buffer */
  static char path[256];
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ls %s/s/*.spool | sed -n %dp", dir, n);
  FILE *p = popen(cmd, "r");
  if (!p || !fgets(path, sizeof path, p)) OD_TEST_FAIL("no segment %d", n);
  pclose(p);
  path[strcspn(path, "\n")] = '\0';
  return path;
}

TEST(store_checksum_failure_names_file_and_offset) {
  fresh_dir();
  od_spool *s = open_spool(OD_SPOOL_NONE, 1 << 26, 1 << 20);
  od_error err;
  for (int i = 0; i < 3; i++) put_rec(s, i, 0);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  od_spool_close(s);
  /* Flip one byte of the second record's body. */
  char *path = seg_file(1);
  int fd = open(path, O_RDWR);
  struct stat st;
  fstat(fd, &st);
  off_t rec = st.st_size / 3, at = rec + rec / 2;
  uint8_t b;
  CHECK(pread(fd, &b, 1, at) == 1);
  b ^= 0x40;
  CHECK(pwrite(fd, &b, 1, at) == 1);
  close(fd);
  char sdir[128];
  snprintf(sdir, sizeof sdir, "%s/s", dir);
  od_spool_options o = {.dir = sdir, .max_bytes = 1 << 26};
  CHECK(od_spool_open(&o, &s, &err) == OD_EIO);
  CHECK_CONTAINS(err.msg, path);
  char off[64];
  snprintf(off, sizeof off, "offset %lld", (long long)rec);
  CHECK_CONTAINS(err.msg, off);
  CHECK_CONTAINS(err.msg, "checksum");
  rm_dir();
}

TEST(store_torn_tail_truncated_after_crash) {
  fresh_dir();
  od_spool *s = open_spool(OD_SPOOL_ZSTD, 1 << 26, 1 << 20);
  od_error err;
  for (int i = 0; i < 5; i++) put_rec(s, i, 0);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  od_spool_close(s);
  char path[256];
  snprintf(path, sizeof path, "%s", seg_file(1));
  struct stat st;
  stat(path, &st);
  off_t whole = st.st_size;
  /* A crash in the middle of the 6th record: half of a copy of the first record at the end. */
  int fd = open(path, O_RDWR);
  uint8_t buf[200];
  CHECK(pread(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf);
  CHECK(pwrite(fd, buf, 100, whole) == 100);
  close(fd);
  s = open_spool(OD_SPOOL_ZSTD, 1 << 26, 1 << 20);
  CHECK_INT(od_spool_records(s), 5);
  stat(path, &st);
  CHECK(st.st_size == whole);
  for (int i = 0; i < 5; i++) CHECK_INT(get_rec(s), i);
  put_rec(s, 5, 0); /* appends continue at the cut */
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  CHECK_INT(get_rec(s), 5);
  od_spool_close(s);
  s = open_spool(OD_SPOOL_ZSTD, 1 << 26, 1 << 20);
  CHECK_INT(od_spool_records(s), 6);
  od_spool_close(s);
  rm_dir();
}

TEST(store_prune_bound_and_coverage) {
  fresh_dir();
  /* Uncompressed records of ~3 KiB, 8 KiB segments: 2 records per segment... */
  od_spool *s = open_spool(OD_SPOOL_NONE, 32 * 1024, 8 * 1024);
  od_error err;
  int n = 0;
  int rc;
  for (;;) {
    uint8_t body[3000] = {0};
    od_spool_meta m = {.flags = OD_SPOOL_END | (n == 0 ? OD_SPOOL_EPISODE | OD_SPOOL_BASE : 0),
                       .end = od_pos_legacy_lsn(0x100u * (unsigned)(n + 1)), .base = od_pos_legacy_lsn(0)};
    for (size_t k = 0; k < sizeof body; k++) body[k] = (uint8_t)((k / 50 + (size_t)n) % 251);
    if ((rc = od_spool_append(s, &m, body, sizeof body, false, &err)) != OD_OK) break;
    n++;
  }
  /* ...the bound: OD_AGAIN once the next record would pass 32 KiB. */
  CHECK_INT(rc, OD_AGAIN);
  CHECK(n >= 8 && n <= 11);
  CHECK(od_spool_bytes(s) <= 32 * 1024);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  /* Coverage: a sink holding 0 (the base) is covered to the last end; nothing below the base. */
  od_pos held = od_pos_legacy_lsn(0), cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x100u * (unsigned)n);
  /* Pruning needs both: read past, and held. */
  held = od_pos_legacy_lsn(0x100u * (unsigned)n);
  CHECK_INT(od_spool_prune(s, &held, &err), OD_OK);
  CHECK_INT(od_spool_records(s), n);
  for (int i = 0; i < 5; i++) CHECK_INT(get_rec(s), i);
  /* 3 records per 8 KiB segment: the first goes once the sink holds the first end after it. */
  held = od_pos_legacy_lsn(0x100 * 3);
  CHECK_INT(od_spool_prune(s, &held, &err), OD_OK);
  CHECK_INT(od_spool_records(s), n); /* a transaction with changes in it may end in record 3: not held */
  held = od_pos_legacy_lsn(0x100 * 4);
  CHECK_INT(od_spool_prune(s, &held, &err), OD_OK);
  CHECK_INT(od_spool_records(s), n - 3);
  held = od_pos_legacy_lsn(0x100 * 7);
  CHECK_INT(od_spool_prune(s, &held, &err), OD_OK);
  CHECK_INT(od_spool_records(s), n - 3); /* records 3..5 not read whole yet */
  CHECK_INT(get_rec(s), 5);
  CHECK_INT(od_spool_prune(s, &held, &err), OD_OK);
  CHECK_INT(od_spool_records(s), n - 6);
  /* Room again under the bound. */
  uint8_t body[3000] = {0};
  od_spool_meta m = {.flags = OD_SPOOL_END, .end = od_pos_legacy_lsn(0x100u * (unsigned)(n + 1))};
  CHECK_INT(od_spool_append(s, &m, body, sizeof body, false, &err), OD_OK);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  od_spool_close(s);
  /* After a restart, the pruned head's base (0x700) continues a checkpoint at 0x700. */
  s = open_spool(OD_SPOOL_NONE, 32 * 1024, 8 * 1024);
  od_pos ck = od_pos_legacy_lsn(0x700), resume;
  uint64_t kept;
  CHECK_INT(od_spool_recover(s, &ck, &resume, &kept, &err), OD_OK);
  CHECK_INT(kept, (uint64_t)(n - 5));
  CHECK(od_pos_to_u64(&resume) == 0x100u * (unsigned)(n + 1));
  od_spool_close(s);
  rm_dir();
}

TEST(store_recover_cuts_an_episode_after_a_gap) {
  fresh_dir();
  od_spool *s = open_spool(OD_SPOOL_LZ4, 1 << 26, 1 << 20);
  od_error err;
  /* Episode 1 covers (0x000, 0x300]; episode 2 starts at 0x500: a gap (0x300, 0x500]. */
  for (int i = 0; i < 3; i++) put_rec(s, i, i == 0 ? OD_SPOOL_EPISODE | OD_SPOOL_BASE : 0);
  uint8_t body[100] = {1};
  od_spool_meta m = {.flags = OD_SPOOL_EPISODE | OD_SPOOL_BASE | OD_SPOOL_END, .base = od_pos_legacy_lsn(0x500),
                     .end = od_pos_legacy_lsn(0x600)};
  CHECK_INT(od_spool_append(s, &m, body, sizeof body, false, &err), OD_OK);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  /* Live coverage: the latest episode counts only once the sink holds its base. */
  od_pos held = od_pos_legacy_lsn(0x300), cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x300);
  held = od_pos_legacy_lsn(0x500);
  cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x600);
  od_spool_close(s);
  s = open_spool(OD_SPOOL_LZ4, 1 << 26, 1 << 20);
  od_pos ck = od_pos_legacy_lsn(0x100), resume;
  uint64_t kept;
  CHECK_INT(od_spool_recover(s, &ck, &resume, &kept, &err), OD_OK);
  CHECK_INT(kept, 3);
  CHECK(od_pos_to_u64(&resume) == 0x300);
  for (int i = 0; i < 3; i++) CHECK_INT(get_rec(s), i);
  CHECK_INT(get_rec(s), -1);
  od_spool_close(s);
  rm_dir();
}

/* A requeued batch and the stream spilled after it may be two episodes back to back (the second's
 * base is the first's end): the acknowledgement and a restart both chain them. */
TEST(store_back_to_back_episodes_chain) {
  fresh_dir();
  od_spool *s = open_spool(OD_SPOOL_ZSTD, 1 << 26, 1 << 20);
  od_error err;
  /* Episode 1: (0x000, 0x200]; episode 2 starts at 0x200 (its base) and ends at 0x400. */
  for (int i = 0; i < 4; i++) put_rec(s, i, i == 0 || i == 2 ? OD_SPOOL_EPISODE | OD_SPOOL_BASE : 0);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  od_pos held = od_pos_legacy_lsn(0), cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x400);
  /* Unsynced records do not count; synced ones do (the cached answer follows). */
  put_rec(s, 4, 0);
  cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x400);
  CHECK_INT(od_spool_sync(s, &err), OD_OK);
  cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x500);
  /* A sink ahead of everything spooled is covered to where it is. */
  held = od_pos_legacy_lsn(0x900);
  cov = od_spool_covered(s, &held);
  CHECK(od_pos_to_u64(&cov) == 0x900);
  od_spool_close(s);
  s = open_spool(OD_SPOOL_ZSTD, 1 << 26, 1 << 20);
  od_pos ck = od_pos_legacy_lsn(0), resume;
  uint64_t kept;
  CHECK_INT(od_spool_recover(s, &ck, &resume, &kept, &err), OD_OK);
  CHECK_INT(kept, 5);
  CHECK(od_pos_to_u64(&resume) == 0x500);
  for (int i = 0; i < 5; i++) CHECK_INT(get_rec(s), i);
  CHECK_INT(get_rec(s), -1);
  od_spool_close(s);
  rm_dir();
}

TEST(codec_names) {
  CHECK_INT(od_spool_codec_parse("zstd"), OD_SPOOL_ZSTD);
  CHECK_INT(od_spool_codec_parse("lz4"), OD_SPOOL_LZ4);
  CHECK_INT(od_spool_codec_parse("none"), OD_SPOOL_NONE);
  CHECK_INT(od_spool_codec_parse("gzip"), -1);
}
