/* Unit tests for the pgoutput decoder, driven by bytes captured from PostgreSQL 15
 * (tests/fixtures/pgoutput: stream.hex from workload.sql in text mode, binary.hex from
 * binary.sql with binary 'true'). Every message is decoded from its own exactly-sized heap
 * buffer so that the sanitizers and valgrind see any read past its end. */
#include "sources/pg/pgoutput.h"
#include "test.h"

#include <stdint.h>

/* ---- fixture loading ---- */

typedef struct msg {
  char *buf;
  size_t len;
} msg;

typedef struct fixture {
  msg *m;
  size_t n;
} fixture;

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static fixture load(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/fixtures/pgoutput/%s", ODSYNC_SOURCE_DIR, name);
  FILE *f = fopen(path, "r");
  if (!f) OD_TEST_FAIL("cannot open %s", path);
  fixture fx = {0};
  size_t cap = 0, lcap = 0;
  char *line = NULL;
  ssize_t n;
  while ((n = getline(&line, &lcap, f)) > 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    if (n == 0) continue;
    if (fx.n == cap) {
      cap = cap ? cap * 2 : 64;
      fx.m = realloc(fx.m, cap * sizeof *fx.m);
    }
    msg *m = &fx.m[fx.n++];
    m->len = (size_t)n / 2;
    m->buf = malloc(m->len);
    for (size_t i = 0; i < m->len; i++)
      m->buf[i] = (char)(hexval(line[2 * i]) << 4 | hexval(line[2 * i + 1]));
  }
  free(line);
  fclose(f);
  return fx;
}

static void unload(fixture *fx) {
  for (size_t i = 0; i < fx->n; i++) free(fx->m[i].buf);
  free(fx->m);
}

/* ---- a handler that records deep copies of everything ---- */

typedef struct rval {
  char kind;
  char *data; /* copy, NUL-terminated; NULL for null/unchanged */
  uint32_t len;
  const char *orig; /* the pointer the decoder passed */
} rval;

typedef struct event {
  char what; /* 'B' begin, 'C' commit, 'X' change, 'R' relation */
  od_txn_info txn;
  char origin[64]; /* copy of txn.origin, "" when NULL */
  bool has_origin;
  uint8_t op;
  char old_kind;
  uint8_t tflags;
  const od_relation *rel;
  uint32_t index;
  int nnew, nold;
  rval newv[10], oldv[10];
} event;

typedef struct recorder {
  event *ev;
  size_t n, cap;
  int bad_text; /* TEXT values whose data[len] was not NUL */
  int fail_change; /* status the change callback returns (0: none) */
  bool clear_keys; /* relation callback clears has_primary_key */
} recorder;

static event *push(recorder *r, char what, const od_txn_info *txn) {
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
  }
  event *e = &r->ev[r->n++];
  memset(e, 0, sizeof *e);
  e->what = what;
  if (txn) {
    e->txn = *txn;
    e->has_origin = txn->origin != NULL;
    if (txn->origin) snprintf(e->origin, sizeof e->origin, "%s", txn->origin);
    e->txn.origin = NULL;
  }
  return e;
}

static void copy_tuple(recorder *r, const od_tuple *t, rval *out, int *n) {
  *n = t->ncolumns;
  for (int i = 0; i < t->ncolumns && i < 10; i++) {
    const od_value *v = &t->values[i];
    out[i].kind = (char)v->kind;
    out[i].len = v->len;
    out[i].orig = v->data;
    if (v->kind == OD_VALUE_TEXT && v->data[v->len] != '\0') r->bad_text++;
    if (v->data) {
      out[i].data = malloc(v->len + 1);
      memcpy(out[i].data, v->data, v->len);
      out[i].data[v->len] = '\0';
    }
  }
}

static int rec_begin(void *ctx, const od_txn_info *txn, od_error *err) {
  (void)err;
  push(ctx, 'B', txn);
  return 0;
}

static int rec_commit(void *ctx, const od_txn_info *txn, od_error *err) {
  (void)err;
  push(ctx, 'C', txn);
  return 0;
}

static int rec_change(void *ctx, const od_txn_info *txn, const od_change *c, od_error *err) {
  recorder *r = ctx;
  if (r->fail_change) return OD_FAIL(err, r->fail_change, "handler refused");
  event *e = push(r, 'X', txn);
  e->op = c->op;
  e->old_kind = c->old_kind;
  e->tflags = c->truncate_flags;
  e->rel = c->rel;
  e->index = c->index;
  copy_tuple(r, &c->newtup, e->newv, &e->nnew);
  copy_tuple(r, &c->oldtup, e->oldv, &e->nold);
  return 0;
}

static int rec_relation(void *ctx, od_relation *rel, od_error *err) {
  (void)err;
  recorder *r = ctx;
  event *e = push(r, 'R', NULL);
  e->rel = rel;
  if (r->clear_keys) rel->has_primary_key = false;
  return 0;
}

static od_change_handler handler(recorder *r) {
  od_change_handler h = {.ctx = r, .begin = rec_begin, .change = rec_change,
                         .commit = rec_commit, .relation = rec_relation};
  return h;
}

static void rec_free(recorder *r) {
  for (size_t i = 0; i < r->n; i++)
    for (int j = 0; j < 10; j++) {
      free(r->ev[i].newv[j].data);
      free(r->ev[i].oldv[j].data);
    }
  free(r->ev);
}

/* Decodes a whole fixture; fails the test on the first error. */
static void decode_all(od_pgoutput *d, const fixture *fx, recorder *r) {
  od_change_handler h = handler(r);
  for (size_t i = 0; i < fx->n; i++) {
    od_error err = {0};
    int rc = od_pgoutput_decode(d, fx->m[i].buf, fx->m[i].len, &h, &err);
    if (rc != 0) OD_TEST_FAIL("message %zu: %d %s", i + 1, rc, err.msg);
  }
}

/* The k-th (from 0) committed transaction's changes: *first = index of its Begin event. */
static size_t txn_at(const recorder *r, int k) {
  for (size_t i = 0; i < r->n; i++)
    if (r->ev[i].what == 'B' && k-- == 0) return i;
  OD_TEST_FAIL("no transaction %d", k);
}

/* The whole text fixture, decoded once per test (tests stay independent). */
typedef struct run {
  fixture fx;
  od_pgoutput *d;
  recorder r;
} run;

static run run_stream(const char *file) {
  run x = {.fx = load(file), .d = od_pgoutput_new()};
  CHECK(x.d != NULL);
  decode_all(x.d, &x.fx, &x.r);
  CHECK_INT(x.r.bad_text, 0);
  return x;
}

static void run_free(run *x) {
  od_pgoutput_free(x->d);
  rec_free(&x->r);
  unload(&x->fx);
}

static const event *change_in(const run *x, int txn, int idx) {
  size_t b = txn_at(&x->r, txn);
  for (size_t i = b + 1; i < x->r.n && x->r.ev[i].what != 'C'; i++)
    if (x->r.ev[i].what == 'X' && (int)x->r.ev[i].index == idx) return &x->r.ev[i];
  OD_TEST_FAIL("transaction %d has no change %d", txn, idx);
}

#define CHECK_TEXT(v, s)                  \
  do {                                    \
    CHECK_INT((v).kind, OD_VALUE_TEXT);   \
    CHECK_STR((v).data, (s));             \
    CHECK_INT((v).len, strlen(s));        \
  } while (0)
#define CHECK_NULL(v)                     \
  do {                                    \
    CHECK_INT((v).kind, OD_VALUE_NULL);   \
    CHECK((v).orig == NULL);              \
  } while (0)

/* Transactions of workload.sql, in order (see the comments there). */
enum { T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15, T16, T17, T18, TBIN };

/* ---- tests on the captured stream ---- */

TEST(begin_commit_pairs_in_lsn_order) {
  run x = run_stream("stream.hex");
  int begins = 0, commits = 0;
  od_lsn last_end = 0;
  const event *open = NULL;
  for (size_t i = 0; i < x.r.n; i++) {
    const event *e = &x.r.ev[i];
    if (e->what == 'B') {
      CHECK(open == NULL);
      open = e;
      begins++;
      CHECK(e->txn.xid != 0);
      CHECK(od_pg_lsn(&e->txn.start) > last_end);
      CHECK_INT(od_pg_lsn(&e->txn.end), 0);
      /* 2020-01-01 .. 2100-01-01 in Unix microseconds: the PG epoch was converted */
      CHECK(e->txn.commit_time > INT64_C(1577836800000000));
      CHECK(e->txn.commit_time < INT64_C(4102444800000000));
    } else if (e->what == 'C') {
      CHECK(open != NULL);
      commits++;
      CHECK_INT(e->txn.xid, open->txn.xid);
      CHECK_INT(od_pg_lsn(&e->txn.start), od_pg_lsn(&open->txn.start));
      CHECK(od_pg_lsn(&e->txn.end) > od_pg_lsn(&e->txn.start));
      CHECK_INT(e->txn.commit_time, open->txn.commit_time);
      last_end = od_pg_lsn(&e->txn.end);
      open = NULL;
    } else if (e->what == 'X' && e->txn.xid != 0) {
      CHECK(open != NULL);
      CHECK_INT(e->txn.xid, open->txn.xid);
    }
  }
  CHECK_INT(begins, 19);
  CHECK_INT(commits, 19);
  CHECK(!od_pgoutput_in_transaction(x.d));
  /* indexes count from 0 inside every transaction */
  uint32_t next = 0;
  for (size_t i = 0; i < x.r.n; i++) {
    if (x.r.ev[i].what == 'B') next = 0;
    if (x.r.ev[i].what == 'X' && x.r.ev[i].txn.xid != 0) CHECK_INT(x.r.ev[i].index, next++);
  }
  run_free(&x);
}

TEST(insert_values_by_kind) {
  run x = run_stream("stream.hex");
  const event *a = change_in(&x, T1, 0), *b = change_in(&x, T1, 1);
  CHECK_INT(a->op, OD_OP_INSERT);
  CHECK_STR(a->rel->schema, "public");
  CHECK_STR(a->rel->name, "items");
  CHECK_INT(a->old_kind, 0);
  CHECK_INT(a->nold, 0);
  CHECK_INT(a->nnew, 7);
  CHECK_TEXT(a->newv[0], "1");
  CHECK_TEXT(a->newv[1], "widget");
  CHECK_TEXT(a->newv[2], "12345.6789");
  CHECK_TEXT(a->newv[3], "t");
  CHECK_TEXT(a->newv[4], "2024-01-02 03:04:05.123456+00");
  CHECK_TEXT(a->newv[5], "\\x00ff10");
  CHECK_TEXT(a->newv[6], "{\"a\": 1, \"b\": [true, null]}");
  /* empty string is TEXT of length 0, not NULL */
  CHECK_TEXT(b->newv[0], "2");
  CHECK_TEXT(b->newv[1], "");
  CHECK(b->newv[1].orig != NULL);
  for (int i = 2; i < 7; i++) CHECK_NULL(b->newv[i]);
  CHECK(a->rel == b->rel);
  run_free(&x);
}

TEST(keyless_table) {
  run x = run_stream("stream.hex");
  const event *a = change_in(&x, T2, 0), *b = change_in(&x, T2, 1);
  CHECK_STR(a->rel->name, "events");
  CHECK_INT(a->rel->replica_identity, 'd');
  CHECK(!a->rel->has_primary_key);
  for (int i = 0; i < a->rel->ncolumns; i++) CHECK(!a->rel->columns[i].key);
  CHECK_TEXT(a->newv[0], "hello, world");
  CHECK_TEXT(a->newv[1], "7");
  CHECK_NULL(b->newv[0]);
  CHECK_NULL(b->newv[1]);
  run_free(&x);
}

TEST(text_values_use_one_reused_scratch_buffer) {
  run x = run_stream("stream.hex");
  /* consecutive inserts decode into the same scratch (no allocation per row) */
  const event *a = change_in(&x, T1, 0), *b = change_in(&x, T1, 1);
  CHECK(a->newv[0].orig == b->newv[0].orig);
  a = change_in(&x, T15, 0);
  b = change_in(&x, T15, 2);
  CHECK(a->newv[0].orig == b->newv[0].orig);
  CHECK_TEXT(a->newv[0], "before message");
  CHECK_TEXT(b->newv[0], "after message");
  run_free(&x);
}

/* decode_inplace gives the same events, value for value, as decode, with text values terminated
 * inside the caller's buffer (never in the scratch), for both captured streams: inserts, updates
 * with old tuples, deletes, NULLs, empty strings, unchanged TOAST, binary values, messages. */
static void same_events_in_place(const char *file, size_t min_values) {
  fixture fx = load(file), cp = load(file);
  od_pgoutput *a = od_pgoutput_new(), *b = od_pgoutput_new();
  recorder ra = {0}, rb = {0};
  od_change_handler ha = handler(&ra), hb = handler(&rb);
  for (size_t i = 0; i < fx.n; i++) {
    od_error err = {0};
    size_t before = rb.n;
    if (od_pgoutput_decode(a, fx.m[i].buf, fx.m[i].len, &ha, &err)) OD_TEST_FAIL("%s message %zu: %s", file, i, err.msg);
    if (od_pgoutput_decode_inplace(b, cp.m[i].buf, cp.m[i].len, &hb, &err))
      OD_TEST_FAIL("%s message %zu in place: %s", file, i, err.msg);
    for (size_t k = before; k < rb.n; k++) /* every value the handler saw lies inside the message */
      for (int c = 0; c < rb.ev[k].nnew + rb.ev[k].nold && rb.ev[k].what == 'X'; c++) {
        const rval *v = c < rb.ev[k].nnew ? &rb.ev[k].newv[c] : &rb.ev[k].oldv[c - rb.ev[k].nnew];
        if (v->orig) CHECK(v->orig >= cp.m[i].buf && v->orig + v->len <= cp.m[i].buf + cp.m[i].len);
      }
  }
  CHECK_INT(ra.bad_text, 0);
  CHECK_INT(rb.bad_text, 0);
  CHECK_INT(ra.n, rb.n);
  size_t values = 0;
  for (size_t k = 0; k < ra.n; k++) {
    const event *x = &ra.ev[k], *y = &rb.ev[k];
    CHECK_INT(x->what, y->what);
    CHECK_INT(x->op, y->op);
    CHECK_INT(x->nnew, y->nnew);
    CHECK_INT(x->nold, y->nold);
    for (int c = 0; c < x->nnew + x->nold; c++) {
      const rval *u = c < x->nnew ? &x->newv[c] : &x->oldv[c - x->nnew];
      const rval *v = c < x->nnew ? &y->newv[c] : &y->oldv[c - x->nnew];
      CHECK_INT(u->kind, v->kind);
      CHECK_INT(u->len, v->len);
      CHECK((u->data == NULL) == (v->data == NULL));
      if (u->data) CHECK(memcmp(u->data, v->data, u->len) == 0);
      values++;
    }
  }
  if (values < min_values) OD_TEST_FAIL("%s: %zu values compared, %zu expected at least", file, values, min_values);
  od_pgoutput_free(a);
  od_pgoutput_free(b);
  rec_free(&ra);
  rec_free(&rb);
  unload(&fx);
  unload(&cp);
}

TEST(decode_inplace_gives_the_same_values) {
  same_events_in_place("stream.hex", 100);
  same_events_in_place("binary.hex", 8);
}

TEST(replica_identity_full_old_rows) {
  run x = run_stream("stream.hex");
  const event *ins = change_in(&x, T3, 0), *up = change_in(&x, T4, 0),
              *del = change_in(&x, T5, 0);
  CHECK_STR(up->rel->name, "audit");
  CHECK_INT(up->rel->replica_identity, 'f');
  CHECK(!up->rel->has_primary_key);
  CHECK(up->rel->columns[0].key && up->rel->columns[1].key); /* FULL: every column */
  CHECK_TEXT(ins->newv[1], "first");
  CHECK_INT(up->op, OD_OP_UPDATE);
  CHECK_INT(up->old_kind, 'O');
  CHECK_INT(up->nold, 2);
  CHECK_TEXT(up->oldv[0], "1");
  CHECK_TEXT(up->oldv[1], "first");
  CHECK_TEXT(up->newv[1], "second");
  CHECK_INT(del->op, OD_OP_DELETE);
  CHECK_INT(del->old_kind, 'O');
  CHECK_INT(del->nnew, 0);
  CHECK_TEXT(del->oldv[0], "1");
  CHECK_TEXT(del->oldv[1], "second");
  run_free(&x);
}

TEST(primary_key_updates_and_deletes) {
  run x = run_stream("stream.hex");
  const event *plain = change_in(&x, T6, 0), *rekey = change_in(&x, T7, 0),
              *del = change_in(&x, T8, 0);
  CHECK(plain->rel->has_primary_key);
  CHECK(plain->rel->columns[0].key);
  CHECK(!plain->rel->columns[1].key);
  CHECK_INT(plain->op, OD_OP_UPDATE);
  CHECK_INT(plain->old_kind, 0);
  CHECK_INT(plain->nold, 0);
  CHECK_TEXT(plain->newv[0], "1");
  CHECK_TEXT(plain->newv[1], "gadget");
  CHECK_TEXT(plain->newv[6], "{\"a\": 1, \"b\": [true, null]}");
  CHECK_INT(rekey->old_kind, 'K');
  CHECK_INT(rekey->nold, 7);
  CHECK_TEXT(rekey->oldv[0], "2");
  for (int i = 1; i < 7; i++) CHECK_NULL(rekey->oldv[i]);
  CHECK_TEXT(rekey->newv[0], "10");
  CHECK_TEXT(rekey->newv[1], "");
  CHECK_INT(del->op, OD_OP_DELETE);
  CHECK_INT(del->old_kind, 'K');
  CHECK_TEXT(del->oldv[0], "10");
  CHECK_NULL(del->oldv[1]);
  run_free(&x);
}

TEST(toasted_value_unchanged) {
  run x = run_stream("stream.hex");
  const event *ins = change_in(&x, T9, 0), *up = change_in(&x, T10, 0);
  CHECK_STR(ins->rel->name, "docs");
  CHECK_INT(ins->newv[2].kind, OD_VALUE_TEXT);
  CHECK_INT(ins->newv[2].len, 18000);
  CHECK(strncmp(ins->newv[2].data, "toast-me toast-me ", 18) == 0);
  CHECK_INT(strlen(ins->newv[2].data), 18000);
  CHECK_INT(up->old_kind, 0);
  CHECK_TEXT(up->newv[0], "1");
  CHECK_TEXT(up->newv[1], "2");
  CHECK_INT(up->newv[2].kind, OD_VALUE_UNCHANGED);
  CHECK(up->newv[2].orig == NULL);
  CHECK_INT(up->newv[2].len, 0);
  run_free(&x);
}

TEST(custom_type_name) {
  run x = run_stream("stream.hex");
  const event *e = change_in(&x, T11, 0);
  CHECK_STR(e->rel->name, "people");
  uint32_t mood = e->rel->columns[2].type_oid;
  CHECK_STR(e->rel->columns[2].name, "feeling");
  CHECK(mood >= 16384);
  CHECK_STR(od_pgoutput_type_name(x.d, mood), "public.mood");
  CHECK(od_pgoutput_type_name(x.d, 25) == NULL); /* built-in text: never announced */
  CHECK_INT(e->rel->columns[1].type_oid, 25);
  CHECK_TEXT(e->newv[2], "happy");
  run_free(&x);
}

TEST(truncate_of_two_tables) {
  run x = run_stream("stream.hex");
  size_t b = txn_at(&x.r, T14);
  const event *t1 = change_in(&x, T14, 0), *t2 = change_in(&x, T14, 1);
  CHECK_INT(x.r.ev[b + 3].what, 'C'); /* exactly two changes */
  CHECK_INT(t1->op, OD_OP_TRUNCATE);
  CHECK_INT(t2->op, OD_OP_TRUNCATE);
  CHECK_STR(t1->rel->name, "t1");
  CHECK_STR(t2->rel->name, "t2");
  CHECK_INT(t1->tflags, 3); /* CASCADE | RESTART IDENTITY */
  CHECK_INT(t2->tflags, 3);
  CHECK_INT(t1->nnew + t1->nold, 0);
  run_free(&x);
}

TEST(logical_messages) {
  run x = run_stream("stream.hex");
  const event *m = change_in(&x, T15, 1);
  CHECK_INT(m->op, OD_OP_MESSAGE);
  CHECK(m->rel == NULL);
  CHECK(m->txn.xid != 0);
  CHECK_INT(m->nnew, 2);
  CHECK_TEXT(m->newv[0], "odsync");
  CHECK_INT(m->newv[1].kind, OD_VALUE_BINARY);
  CHECK_INT(m->newv[1].len, 21);
  CHECK(memcmp(m->newv[1].data, "transactional payload", 21) == 0);
  CHECK_TEXT(change_in(&x, T15, 2)->newv[0], "after message");
  /* the non-transactional one sits between T15's Commit and T16's Begin, alone */
  size_t b16 = txn_at(&x.r, T16);
  const event *nt = &x.r.ev[b16 - 1];
  CHECK_INT(x.r.ev[b16 - 2].what, 'C');
  CHECK_INT(nt->what, 'X');
  CHECK_INT(nt->op, OD_OP_MESSAGE);
  CHECK_INT(nt->txn.xid, 0);
  CHECK_INT(nt->index, 0);
  CHECK(od_pg_lsn(&nt->txn.start) > od_pg_lsn(&x.r.ev[b16 - 2].txn.start));
  CHECK(od_pg_lsn(&nt->txn.start) < od_pg_lsn(&x.r.ev[b16].txn.start));
  CHECK_TEXT(nt->newv[0], "odsync-nt");
  CHECK_INT(nt->newv[1].len, 25);
  CHECK(memcmp(nt->newv[1].data, "non-transactional payload", 25) == 0);
  /* the message LSN is the 8 bytes after the flags (message 60 of the fixture) */
  const unsigned char *raw = (const unsigned char *)x.fx.m[59].buf;
  CHECK_INT(raw[0], 'M');
  uint64_t lsn = 0;
  for (int i = 2; i < 10; i++) lsn = lsn << 8 | raw[i];
  CHECK_INT(od_pg_lsn(&nt->txn.start), lsn);
  run_free(&x);
}

TEST(relation_versions) {
  run x = run_stream("stream.hex");
  int items_callbacks = 0, t1_callbacks = 0;
  for (size_t i = 0; i < x.r.n; i++) {
    if (x.r.ev[i].what != 'R') continue;
    if (!strcmp(x.r.ev[i].rel->name, "items")) items_callbacks++;
    if (!strcmp(x.r.ev[i].rel->name, "t1")) t1_callbacks++;
  }
  /* items was announced 3 times (first use, after SET fillfactor, after ADD COLUMN) but only
   * changed shape once; t1 was announced again before the truncate, unchanged */
  CHECK_INT(items_callbacks, 2);
  CHECK_INT(t1_callbacks, 1);
  const event *same = change_in(&x, T16, 0), *grown = change_in(&x, T17, 0);
  const od_relation *v1 = change_in(&x, T1, 0)->rel;
  CHECK(same->rel == v1);
  CHECK_TEXT(same->newv[1], "same shape");
  const od_relation *v2 = grown->rel;
  CHECK(v2 == od_pgoutput_relation(x.d, v1->oid));
  CHECK_INT(v2->version, 2);
  CHECK(v2->previous == v1);
  CHECK_INT(v1->version, 1);
  CHECK(v1->previous == NULL);
  CHECK_INT(v1->ncolumns, 7);
  CHECK_INT(v2->ncolumns, 8);
  CHECK_STR(v2->columns[7].name, "qty");
  CHECK_INT(v2->columns[7].type_oid, 23);
  CHECK_INT(v2->columns[7].typmod, -1);
  CHECK_STR(v1->columns[2].name, "price");
  CHECK_INT(v1->columns[2].type_oid, 1700);
  CHECK_INT(v1->columns[2].typmod, ((12 << 16) | 4) + 4); /* numeric(12,4) */
  CHECK(v2->has_primary_key);
  CHECK_INT(grown->nnew, 8);
  CHECK_TEXT(grown->newv[1], "new shape");
  CHECK_TEXT(grown->newv[7], "5");
  run_free(&x);
}

TEST(origin_name) {
  run x = run_stream("stream.hex");
  const event *e = change_in(&x, T18, 0);
  CHECK(e->has_origin);
  CHECK_STR(e->origin, "upstream_a");
  CHECK_TEXT(e->newv[0], "from origin");
  size_t b = txn_at(&x.r, T18);
  CHECK(!x.r.ev[b].has_origin); /* the Origin message follows the Begin */
  CHECK(x.r.ev[b + 2].what == 'C' && x.r.ev[b + 2].has_origin);
  CHECK_STR(x.r.ev[b + 2].origin, "upstream_a");
  CHECK(!change_in(&x, TBIN, 0)->has_origin); /* cleared at commit */
  CHECK(!change_in(&x, T17, 0)->has_origin);
  CHECK_TEXT(change_in(&x, TBIN, 0)->newv[3], "\\xdeadbeef"); /* text mode */
  run_free(&x);
}

TEST(binary_mode_values) {
  run x = run_stream("binary.hex");
  const event *a = change_in(&x, 0, 0), *b = change_in(&x, 0, 1);
  CHECK_STR(a->rel->name, "bin");
  for (int i = 0; i < 4; i++) CHECK_INT(a->newv[i].kind, OD_VALUE_BINARY);
  CHECK_INT(a->newv[0].len, 4);
  CHECK(memcmp(a->newv[0].data, "\0\0\0\1", 4) == 0); /* int4 send: big-endian */
  CHECK_INT(a->newv[1].len, 10);
  CHECK(memcmp(a->newv[1].data, "binary one", 10) == 0);
  CHECK_INT(a->newv[2].len, 1);
  CHECK_INT(a->newv[2].data[0], 1);
  CHECK_INT(a->newv[3].len, 4);
  CHECK(memcmp(a->newv[3].data, "\xde\xad\xbe\xef", 4) == 0);
  CHECK(memcmp(b->newv[0].data, "\0\0\0\2", 4) == 0);
  CHECK_NULL(b->newv[1]);
  CHECK_INT(b->newv[2].data[0], 0);
  CHECK_INT(b->newv[3].kind, OD_VALUE_BINARY); /* empty bytea: binary, length 0, not NULL */
  CHECK_INT(b->newv[3].len, 0);
  CHECK(b->newv[3].orig != NULL);
  run_free(&x);
}

/* ---- relation cache behaviour on real Relation messages ---- */

static const msg *find_msg(const fixture *fx, char type, size_t nth) {
  for (size_t i = 0; i < fx->n; i++)
    if (fx->m[i].buf[0] == type && nth-- == 0) return &fx->m[i];
  OD_TEST_FAIL("fixture has no message '%c'", type);
}

static int decode_copy(od_pgoutput *d, const char *src, size_t len, recorder *r, od_error *err) {
  od_change_handler h = handler(r);
  char *buf = malloc(len ? len : 1);
  memcpy(buf, src, len);
  int rc = od_pgoutput_decode(d, buf, len, &h, err);
  free(buf);
  return rc;
}

TEST(same_relation_keeps_version_even_after_handler_override) {
  fixture fx = load("stream.hex");
  const msg *rel = find_msg(&fx, 'R', 0);
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {.clear_keys = true};
  od_error err = {0};
  CHECK_INT(decode_copy(d, rel->buf, rel->len, &r, &err), 0);
  const od_relation *v1 = od_pgoutput_relation(d, 0);
  CHECK(v1 == NULL);
  CHECK_INT(r.n, 1);
  v1 = r.ev[0].rel;
  CHECK(!v1->has_primary_key); /* the handler's override stuck */
  CHECK(od_pgoutput_relation(d, v1->oid) == v1);
  CHECK_INT(decode_copy(d, rel->buf, rel->len, &r, &err), 0);
  CHECK_INT(r.n, 1); /* no second callback */
  CHECK(od_pgoutput_relation(d, v1->oid) == v1);
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

TEST(empty_namespace_is_pg_catalog) {
  fixture fx = load("stream.hex");
  const msg *rel = find_msg(&fx, 'R', 0); /* 'R' oid(4) "public\0" "items\0" ... */
  CHECK(memcmp(rel->buf + 5, "public", 7) == 0);
  size_t len = rel->len - 6;
  char *buf = malloc(len);
  memcpy(buf, rel->buf, 5);
  memcpy(buf + 5, rel->buf + 11, rel->len - 11);
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  od_error err = {0};
  CHECK_INT(decode_copy(d, buf, len, &r, &err), 0);
  CHECK_STR(r.ev[0].rel->schema, "pg_catalog");
  CHECK_STR(r.ev[0].rel->name, "items");
  free(buf);
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

TEST(handler_status_passes_through) {
  fixture fx = load("stream.hex");
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  od_error err = {0};
  for (int i = 0; i < 2; i++) CHECK_INT(decode_copy(d, fx.m[i].buf, fx.m[i].len, &r, &err), 0);
  r.fail_change = OD_ESINK;
  CHECK_INT(decode_copy(d, fx.m[2].buf, fx.m[2].len, &r, &err), OD_ESINK);
  CHECK_STR(err.msg, "handler refused");
  od_pgoutput_reset(d);
  CHECK(!od_pgoutput_in_transaction(d));
  r.fail_change = 0;
  CHECK_INT(decode_copy(d, fx.m[0].buf, fx.m[0].len, &r, &err), 0); /* Begin again */
  CHECK(od_pgoutput_in_transaction(d));
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

/* ---- errors ---- */

static const char *type_name(char t) {
  switch (t) {
  case 'B': return "Begin ";
  case 'C': return "Commit ";
  case 'O': return "Origin ";
  case 'R': return "Relation ";
  case 'Y': return "Type ";
  case 'I': return "Insert ";
  case 'U': return "Update ";
  case 'D': return "Delete ";
  case 'T': return "Truncate ";
  case 'M': return "Message ";
  }
  return "?";
}

/* Every real message, cut short at many lengths, in the decoder state where the whole message
 * would decode: each must fail with EPROTOCOL naming the type and offset, and change nothing. */
TEST(truncated_messages_are_protocol_errors) {
  fixture fx = load("stream.hex");
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  int tried = 0;
  for (size_t i = 0; i < fx.n; i++) {
    const msg *m = &fx.m[i];
    char want[8];
    snprintf(want, sizeof want, "('%c')", m->buf[0]);
    for (size_t cut = 1; cut < m->len; cut++) {
      if (cut > 48 && cut < m->len - 48) continue; /* the head and the tail of big ones */
      od_error err = {0};
      size_t before = r.n;
      int rc = decode_copy(d, m->buf, cut, &r, &err);
      if (rc != OD_EPROTOCOL) OD_TEST_FAIL("message %zu cut at %zu: rc %d", i + 1, cut, rc);
      CHECK_CONTAINS(err.msg, want);
      CHECK_CONTAINS(err.msg, type_name(m->buf[0]));
      CHECK_CONTAINS(err.msg, "truncated");
      CHECK_CONTAINS(err.msg, "byte offset");
      if ((m->buf[0] == 'I' || m->buf[0] == 'U' || m->buf[0] == 'D') && cut >= 5)
        CHECK_CONTAINS(err.msg, "(relation public.");
      CHECK_INT(r.n, before);
      tried++;
    }
    od_error err = {0};
    CHECK_INT(decode_copy(d, m->buf, m->len, &r, &err), 0);
  }
  CHECK(tried > 1000);
  CHECK_INT(r.bad_text, 0);
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

TEST(truncated_relation_names_it) {
  fixture fx = load("stream.hex");
  const msg *rel = find_msg(&fx, 'R', 0);
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  od_error err = {0};
  CHECK_INT(decode_copy(d, rel->buf, rel->len - 3, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Relation message ('R')");
  CHECK_CONTAINS(err.msg, "column typmod");
  CHECK_CONTAINS(err.msg, "(relation public.items)");
  CHECK(od_pgoutput_relation(d, 16391) == NULL && r.n == 0);
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

TEST(unknown_message_type) {
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  od_error err = {0};
  CHECK_INT(decode_copy(d, "Zabc", 4, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "unknown message type");
  CHECK_CONTAINS(err.msg, "('Z')");
  CHECK_CONTAINS(err.msg, "byte offset 0");
  CHECK_INT(decode_copy(d, "\x01", 1, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "(0x01)");
  CHECK_INT(decode_copy(d, "", 0, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "empty message");
  CHECK_INT(r.n, 0);
  od_pgoutput_free(d);
  rec_free(&r);
}

TEST(change_for_unknown_relation) {
  fixture fx = load("stream.hex");
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  od_error err = {0};
  CHECK_INT(fx.m[2].buf[0], 'I');
  CHECK_INT(decode_copy(d, fx.m[0].buf, fx.m[0].len, &r, &err), 0); /* Begin, no Relation */
  CHECK_INT(decode_copy(d, fx.m[2].buf, fx.m[2].len, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Insert message ('I')");
  CHECK_CONTAINS(err.msg, "unknown relation OID 16391");
  CHECK_CONTAINS(err.msg, "byte offset 1");
  const msg *t = find_msg(&fx, 'T', 0);
  CHECK_INT(decode_copy(d, t->buf, t->len, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Truncate message ('T')");
  CHECK_CONTAINS(err.msg, "unknown relation OID");
  CHECK_INT(r.n, 1);
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

TEST(commit_without_begin_and_changes_outside_transactions) {
  fixture fx = load("stream.hex");
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  od_error err = {0};
  const msg *c = find_msg(&fx, 'C', 0);
  CHECK_INT(decode_copy(d, c->buf, c->len, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Commit message ('C')");
  CHECK_CONTAINS(err.msg, "without a Begin");
  CHECK_INT(decode_copy(d, fx.m[1].buf, fx.m[1].len, &r, &err), 0); /* Relation outside: ok */
  CHECK_INT(decode_copy(d, fx.m[2].buf, fx.m[2].len, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Insert message ('I')");
  CHECK_CONTAINS(err.msg, "outside a transaction");
  CHECK_CONTAINS(err.msg, "(relation public.items)");
  CHECK_INT(decode_copy(d, fx.m[0].buf, fx.m[0].len, &r, &err), 0);
  CHECK_INT(decode_copy(d, fx.m[0].buf, fx.m[0].len, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Begin message ('B')");
  const msg *o = find_msg(&fx, 'O', 0);
  od_pgoutput_reset(d);
  CHECK_INT(decode_copy(d, o->buf, o->len, &r, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "Origin message ('O')");
  CHECK_INT(r.n, 2); /* the relation callback and one Begin */
  od_pgoutput_free(d);
  rec_free(&r);
  unload(&fx);
}

TEST(streaming_messages_are_unsupported) {
  static const struct {
    const char *bytes;
    size_t len;
    const char *name;
  } cases[] = {
      {"S\0\0\x04\xd2\x01", 6, "Stream Start message ('S')"},
      {"E", 1, "Stream Stop message ('E')"},
      {"c\0\0\x04\xd2\0" "\0\0\0\0\1\0\0\0" "\0\0\0\0\1\0\0\x10" "\0\0\0\0\0\0\0\0", 30,
       "Stream Commit message ('c')"},
      {"A\0\0\x04\xd2\0\0\x04\xd3", 9, "Stream Abort message ('A')"},
  };
  od_pgoutput *d = od_pgoutput_new();
  recorder r = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    od_error err = {0};
    CHECK_INT(decode_copy(d, cases[i].bytes, cases[i].len, &r, &err), OD_EUNSUPPORTED);
    CHECK_CONTAINS(err.msg, cases[i].name);
    CHECK_CONTAINS(err.msg, "not supported");
    if (cases[i].bytes[0] != 'E') CHECK_CONTAINS(err.msg, "xid 1234");
    if (cases[i].len > 1) {
      CHECK_INT(decode_copy(d, cases[i].bytes, cases[i].len - 1, &r, &err), OD_EPROTOCOL);
      CHECK_CONTAINS(err.msg, cases[i].name);
    }
  }
  CHECK_INT(r.n, 0);
  od_pgoutput_free(d);
  rec_free(&r);
}
