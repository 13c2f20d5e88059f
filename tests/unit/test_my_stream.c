/* test_my_stream.c — the MariaDB stream (src/sources/mysql/my_stream.c) and the "mysql" position
 * kind (my_position.c) over the captured binlog of tests/fixtures/binlog/events.hex: transaction
 * boundaries, positions ([start, end) in order, a GTID only in the end of its transaction), the
 * captured-table filter with idle positions for the rest, TRUNCATE, and a new relation version
 * after ALTER TABLE. */
#include <stdarg.h>
#include <stdint.h>

#include "sources/mysql/my_position.h"
#include "sources/mysql/my_stream.h"
#include "test.h"

static int hexv(int c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

typedef struct rec {
  char log[65536];
  size_t len;
  od_pos last_end, last_idle;
  int ntxn, nchanges, nidle, nrel, nddl;
  const char *only; /* captured table name, or NULL for all */
  od_relation *nokey[4];
  int nnokey;
} rec;

static void logf_(rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(rec *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  r->len += (size_t)vsnprintf(r->log + r->len, sizeof r->log - r->len, fmt, ap);
  va_end(ap);
}

/* The kind's own operations (the core's od_pos_* wrappers are not what is under test). */
static const char *txt(const od_pos *p) {
  static char buf[4][OD_POS_TEXT_MAX];
  static int k;
  k = (k + 1) % 4;
  if (!p->kind) return "";
  int n = snprintf(buf[k], sizeof buf[k], "%s:", p->kind->name);
  CHECK(p->kind->format(p, buf[k] + n, sizeof buf[k] - (size_t)n) > 0);
  return buf[k];
}
static int cmp(const od_pos *a, const od_pos *b) {
  if (!a->kind || !b->kind) return !!a->kind - !!b->kind;
  return od_pos_mysql.compare(a, b);
}
#define POS_LT(a, b) (cmp((a), (b)) < 0)
#define POS_LE(a, b) (cmp((a), (b)) <= 0)

static bool captured(void *ctx, const char *db, const char *table) {
  rec *r = ctx;
  return !strcmp(db, "fx") && (!r->only || !strcmp(table, r->only));
}

static int relation(void *ctx, od_relation *rel, od_error *err) {
  (void)err;
  rec *r = ctx;
  r->nrel++;
  logf_(r, "REL %s.%s v%u ncols=%d key=%d\n", rel->schema, rel->name, rel->version, rel->ncolumns,
        rel->has_primary_key);
  if (!strcmp(rel->name, "t_nokey") && r->nnokey < 4) r->nokey[r->nnokey++] = rel;
  return OD_OK;
}

static int begin(void *ctx, const my_txn *t, od_error *err) {
  (void)err;
  rec *r = ctx;
  CHECK(POS_LE(&r->last_end, &t->start)); /* after everything committed before */
  CHECK(POS_LE(&r->last_idle, &t->start));
  logf_(r, "BEGIN %u-%u-%llu start=%s\n", t->gtid.domain, t->gtid.server, (unsigned long long)t->gtid.seq,
        txt(&t->start));
  return OD_OK;
}

static int change(void *ctx, const my_txn *t, const od_change *c, od_error *err) {
  (void)t;
  (void)err;
  rec *r = ctx;
  r->nchanges++;
  logf_(r, "%c %s #%u", c->op, c->rel->name, c->index);
  if (c->op == OD_OP_UPDATE || c->op == OD_OP_DELETE) CHECK_INT(c->old_kind, 'O');
  if (c->newtup.ncolumns) CHECK_INT(c->newtup.ncolumns, c->rel->ncolumns);
  logf_(r, "\n");
  return OD_OK;
}

static int commit(void *ctx, const my_txn *t, od_error *err) {
  (void)err;
  rec *r = ctx;
  CHECK(POS_LT(&t->start, &t->end));
  r->last_end = t->end;
  r->ntxn++;
  logf_(r, "COMMIT end=%s\n", txt(&t->end));
  return OD_OK;
}

static int idle(void *ctx, const od_pos *p, od_error *err) {
  (void)err;
  rec *r = ctx;
  CHECK(POS_LE(&r->last_end, p));
  CHECK(POS_LT(&r->last_idle, p));
  r->last_idle = *p;
  r->nidle++;
  return OD_OK;
}

static int schema_changed(void *ctx, const char *db, const char *sql, size_t len, od_error *err) {
  (void)err;
  rec *r = ctx;
  r->nddl++;
  logf_(r, "DDL %s: %.*s\n", db, (int)len, sql);
  return OD_OK;
}

static void run(rec *r, const char *only) {
  memset(r, 0, sizeof *r);
  r->only = only;
  my_stream_cb cb = {.ctx = r, .captured = captured, .relation = relation, .begin = begin, .change = change,
                     .commit = commit, .idle = idle, .schema_changed = schema_changed};
  my_stream s;
  od_error err = {0};
  CHECK_INT(my_stream_init(&s, &cb, "odsync-bin.000002", 4, "0-1-11", true, &err), OD_OK);
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fixtures/binlog/events.hex", ODSYNC_SOURCE_DIR);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 1) {
    n--;
    uint8_t *b = malloc((size_t)n / 2);
    for (ssize_t i = 0; i + 1 < n; i += 2) b[i / 2] = (uint8_t)(hexv(line[i]) << 4 | hexv(line[i + 1]));
    int rc = my_stream_event(&s, b, (size_t)n / 2, &err);
    free(b);
    if (rc != OD_OK) OD_TEST_FAIL("%s", err.msg);
  }
  free(line);
  fclose(f);
  od_pos end;
  CHECK_INT(my_stream_position(&s, &end, &err), OD_OK);
  CHECK_STR(txt(&end), "mysql:0-1-36@odsync-bin.000002:12976");
  if (getenv("STREAM_DUMP")) fputs(r->log, stderr);
  /* relations die with the stream: check what we kept before freeing */
  if (r->nnokey >= 2) {
    CHECK(r->nokey[1]->previous == r->nokey[0]);
    CHECK_INT(r->nokey[1]->version, 2);
    CHECK_INT(r->nokey[1]->ncolumns, 3);
    CHECK(!r->nokey[1]->has_primary_key);
    CHECK_INT(r->nokey[1]->replica_identity, 'f');
  }
  my_stream_free(&s);
}

TEST(every_table_transactions_and_positions) {
  rec r;
  run(&r, NULL);
  /* 23 transactions with rows + TRUNCATE; the ALTER commits nothing (no captured change) */
  CHECK_INT(r.ntxn, 24);
  CHECK_INT(r.nddl, 2);
  CHECK_CONTAINS(r.log, "BEGIN 0-1-12 start=mysql:0-1-11@odsync-bin.000002:");
  CHECK_CONTAINS(r.log, "COMMIT end=mysql:0-1-12@odsync-bin.000002:806\n");
  /* one transaction, three statements on three tables */
  CHECK_CONTAINS(r.log, "BEGIN 0-1-31 start=mysql:0-1-30@odsync-bin.000002:9385\nU t_int #0\nU t_str #1\n"
                        "D t_misc #2\nCOMMIT end=mysql:0-1-31@odsync-bin.000002:11945\n");
  CHECK_CONTAINS(r.log, "REL fx.t_nokey v1 ncols=2 key=0\n");
  CHECK_CONTAINS(r.log, "DDL fx: ALTER TABLE t_nokey ADD COLUMN c INT\n");
  CHECK_CONTAINS(r.log, "REL fx.t_nokey v2 ncols=3 key=0\nI t_nokey #0\n");
  CHECK_CONTAINS(r.log, "DDL fx: TRUNCATE TABLE t_nokey\nBEGIN 0-1-36 start=mysql:0-1-35@odsync-bin.000002:12847\n"
                        "T t_nokey #0\nCOMMIT end=mysql:0-1-36@odsync-bin.000002:12976\n");
  CHECK_INT(r.nnokey, 2);
}

TEST(captured_filter_gives_idle_positions) {
  rec r;
  run(&r, "t_float");
  CHECK_INT(r.ntxn, 1);
  CHECK_INT(r.nchanges, 4);
  CHECK_INT(r.nrel, 1);
  CHECK(r.nidle >= 20);
  CHECK_STR(txt(&r.last_idle), "mysql:0-1-36@odsync-bin.000002:12976");
}

TEST(position_text_round_trip_and_order) {
  od_pos a, b, c, d;
  od_error err = {0};
  CHECK_INT(my_pos_make("odsync-bin.000003", 1234, "0-1-42,1-2-7", &a, &err), OD_OK);
  CHECK_INT(my_pos_make("odsync-bin.000003", 1235, "0-1-43,1-2-7", &b, &err), OD_OK);
  CHECK_INT(my_pos_make("odsync-bin.000010", 4, "", &c, &err), OD_OK);
  CHECK(POS_LT(&a, &b) && POS_LT(&b, &c) && !POS_LT(&c, &a));
  CHECK_STR(txt(&a), "mysql:0-1-42,1-2-7@odsync-bin.000003:1234");
  CHECK_STR(txt(&c), "mysql:@odsync-bin.000010:4");
  d.kind = &od_pos_mysql;
  CHECK_INT(od_pos_mysql.parse("0-1-42,1-2-7@odsync-bin.000003:1234", &d), OD_OK);
  CHECK(cmp(&a, &d) == 0 && d.len == a.len && !memcmp(d.data, a.data, a.len));
  char file[64], g[64];
  uint64_t off;
  my_pos_parts(&d, file, sizeof file, &off, g, sizeof g);
  CHECK_STR(file, "odsync-bin.000003");
  CHECK_INT(off, 1234);
  CHECK_STR(g, "0-1-42,1-2-7");
  CHECK(od_pos_mysql.version(&a) < od_pos_mysql.version(&b));
  CHECK(od_pos_mysql.version(&b) < od_pos_mysql.version(&c));
  CHECK_INT(od_pos_mysql.parse("0-1-42@odsync-bin:12", &d), OD_EINVAL);   /* no numeric suffix */
  CHECK_INT(od_pos_mysql.parse("0-1-x@odsync-bin.000001:12", &d), OD_EINVAL);
  CHECK_INT(od_pos_mysql.parse("odsync-bin.000001:12", &d), OD_EINVAL);
  CHECK_INT(od_pos_mysql.parse("@odsync-bin.000001:", &d), OD_EINVAL);
  char many[200] = "";
  for (int i = 0; i < 12; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%s%d-1-1000000", i ? "," : "", i);
  CHECK_INT(my_pos_make("odsync-bin.000001", 4, many, &d, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "does not fit");
}

TEST(gtid_sets) {
  my_gtidset s;
  od_error err = {0};
  CHECK_INT(my_gtidset_parse(&s, "1-2-7,0-1-42", &err), OD_OK);
  my_gtid g = {0, 3, 43, 0};
  CHECK_INT(my_gtidset_add(&s, &g, &err), OD_OK);
  my_gtid h = {5, 1, 1, 0};
  CHECK_INT(my_gtidset_add(&s, &h, &err), OD_OK);
  char buf[128];
  my_gtidset_format(&s, buf, sizeof buf);
  CHECK_STR(buf, "0-3-43,1-2-7,5-1-1");
  CHECK_INT(my_gtidset_parse(&s, "0-1", &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "malformed GTID list '0-1'");
  CHECK_INT(my_gtidset_parse(&s, "", &err), OD_OK);
  CHECK_INT(s.n, 0);
}
