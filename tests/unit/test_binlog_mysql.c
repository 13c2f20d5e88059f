/* test_binlog_mysql.c — the events MySQL writes and MariaDB does not, decoded from bytes built here
 * from MySQL's documented layouts (there is no MySQL server in Debian to capture them from):
 * GTID_LOG_EVENT as 5.6, 5.7 and 8.0 write it (with and without the original timestamp and server
 * version, with a commit ticket), ANONYMOUS_GTID_LOG_EVENT, PREVIOUS_GTIDS_LOG_EVENT (a GTID set),
 * v2 rows events with extra row info (NDB info, partition ids), PARTIAL_UPDATE_ROWS_EVENT (a row
 * without partial JSON decodes as an update; a JSON diff list is refused naming the setting), and
 * MySQL's JSON diff list itself; and the MariaDB stream refusing a MySQL server by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sources/mysql/binlog.h"
#include "sources/mysql/my_stream.h"
#include "sources/mysql/mysql_gtidset.h"
#include "test.h"

typedef struct buf {
  uint8_t b[1024];
  size_t n;
} buf;

static void le(buf *o, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) o->b[o->n++] = (uint8_t)(v >> (8 * i));
}
static void raw(buf *o, const void *p, size_t n) {
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

/* A whole event: the 19-byte header, the body, and with `crc` the CRC32 trailer. */
static size_t event(uint8_t *out, uint8_t type, const buf *body, bool crc) {
  size_t size = 19 + body->n + (crc ? 4 : 0);
  buf h = {.n = 0};
  le(&h, 1700000000, 4);
  h.b[h.n++] = type;
  le(&h, 7, 4);
  le(&h, size, 4);
  le(&h, 4000 + size, 4);
  le(&h, 0, 2);
  memcpy(out, h.b, 19);
  memcpy(out + 19, body->b, body->n);
  if (crc) {
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), out, (uInt)(19 + body->n));
    for (int i = 0; i < 4; i++) out[19 + body->n + (size_t)i] = (uint8_t)(c >> (8 * i));
  }
  return size;
}

static const uint8_t UUID[16] = {0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1,
                                 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62};

static void gtid_post_header(buf *o, uint64_t gno, bool clock) {
  o->b[o->n++] = 1; /* FLAG_MAY_HAVE_SBR */
  raw(o, UUID, 16);
  le(o, gno, 8);
  if (clock) {
    o->b[o->n++] = 2; /* LOGICAL_TIMESTAMP_TYPECODE */
    le(o, 41, 8);     /* last_committed */
    le(o, 42, 8);     /* sequence_number */
  }
}

static int parse_gtid(const buf *body, uint8_t type, uint8_t post_header, bool crc, my_mysql_gtid *g, od_error *err) {
  my_format f;
  my_format_init(&f, crc);
  f.post_header[type] = post_header;
  uint8_t e[1024];
  size_t n = event(e, type, body, crc);
  my_event ev;
  int rc = my_event_parse(&f, e, n, &ev, err);
  return rc ? rc : my_mysql_gtid_parse(&f, &ev, g, err);
}

TEST(gtid_event_mysql_80_full) {
  buf b = {.n = 0};
  gtid_post_header(&b, 1234567, true);
  le(&b, 1700000000123456ULL | (1ULL << 55), 7); /* immediate commit ts, original follows */
  le(&b, 1690000000000001ULL, 7);                /* original commit ts */
  b.b[b.n++] = 0xfc;                             /* transaction_length, packed in 3 bytes */
  le(&b, 4321, 2);
  le(&b, 80036u | (1u << 31), 4); /* immediate server version, original follows */
  le(&b, 80028, 4);
  le(&b, 99, 8); /* commit_group_ticket */
  my_mysql_gtid g;
  od_error err;
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, true, &g, &err), OD_OK);
  CHECK(!g.anonymous);
  CHECK_INT(g.flags, 1);
  CHECK(memcmp(g.uuid, UUID, 16) == 0);
  CHECK_INT((long long)g.gno, 1234567);
  CHECK(g.has_logical_clock);
  CHECK_INT(g.last_committed, 41);
  CHECK_INT(g.sequence_number, 42);
  CHECK(g.has_commit_ts);
  CHECK_INT((long long)g.immediate_commit_ts, 1700000000123456LL);
  CHECK_INT((long long)g.original_commit_ts, 1690000000000001LL);
  CHECK(g.has_length);
  CHECK_INT((long long)g.transaction_length, 4321);
  CHECK(g.has_server_version);
  CHECK_INT(g.immediate_server_version, 80036);
  CHECK_INT(g.original_server_version, 80028);
  CHECK(g.has_ticket);
  CHECK_INT((long long)g.commit_group_ticket, 99);
  /* the GTID goes into a set as MySQL prints it */
  mysql_gtidset s = {0};
  CHECK_INT(mysql_gtidset_add(&s, g.uuid, g.gno, &err), OD_OK);
  char t[128];
  CHECK(mysql_gtidset_format(&s, t, sizeof t) > 0);
  CHECK_STR(t, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1234567");
}

TEST(gtid_event_older_writers_and_anonymous) {
  my_mysql_gtid g;
  od_error err;
  /* 8.0 without the original timestamp/server version (same as immediate) */
  buf b = {.n = 0};
  gtid_post_header(&b, 5, true);
  le(&b, 1700000000000000ULL, 7);
  b.b[b.n++] = 200; /* transaction_length, one byte */
  le(&b, 80036, 4);
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, false, &g, &err), OD_OK);
  CHECK_INT((long long)g.original_commit_ts, 1700000000000000LL);
  CHECK_INT((long long)g.transaction_length, 200);
  CHECK_INT(g.original_server_version, 80036);
  CHECK(!g.has_ticket);
  /* 5.7: post-header only */
  b.n = 0;
  gtid_post_header(&b, 6, true);
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, false, &g, &err), OD_OK);
  CHECK(g.has_logical_clock && !g.has_commit_ts && !g.has_length);
  /* 5.6: 25-byte post-header, told by the format description or by the body */
  b.n = 0;
  gtid_post_header(&b, 7, false);
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 25, false, &g, &err), OD_OK);
  CHECK(!g.has_logical_clock);
  CHECK_INT((long long)g.gno, 7);
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 0, false, &g, &err), OD_OK);
  /* anonymous (gtid_mode=OFF): zero uuid and GNO */
  b.n = 0;
  b.b[b.n++] = 0;
  uint8_t zero[16] = {0};
  raw(&b, zero, 16);
  le(&b, 0, 8);
  b.b[b.n++] = 2;
  le(&b, 0, 8);
  le(&b, 1, 8);
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_ANON_GTID, 42, true, &g, &err), OD_OK);
  CHECK(g.anonymous);
  CHECK_INT((long long)g.gno, 0);
  /* errors */
  b.n = 0;
  gtid_post_header(&b, 0, true); /* a real GTID with GNO 0 */
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, false, &g, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "out of range");
  b.n = 0;
  gtid_post_header(&b, 9, true);
  b.b[25] = 1; /* logical clock type */
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, false, &g, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "logical clock type");
  b.n = 0;
  gtid_post_header(&b, 9, true);
  le(&b, 1ULL << 55, 7); /* says an original timestamp follows, none does */
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, false, &g, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "truncated");
  b.n = 10;
  CHECK_INT(parse_gtid(&b, MY_EV_MYSQL_GTID, 42, false, &g, &err), OD_EPROTOCOL);
}

TEST(previous_gtids_event) {
  buf b = {.n = 0};
  le(&b, 1, 8);
  raw(&b, UUID, 16);
  le(&b, 2, 8);
  le(&b, 1, 8), le(&b, 101, 8);   /* 1-100 */
  le(&b, 200, 8), le(&b, 201, 8); /* 200 */
  my_format f;
  my_format_init(&f, true);
  uint8_t e[512];
  size_t n = event(e, MY_EV_MYSQL_PREV_GTIDS, &b, true);
  my_event ev;
  od_error err;
  CHECK_INT(my_event_parse(&f, e, n, &ev, &err), OD_OK);
  mysql_gtidset s;
  size_t used;
  CHECK_INT(mysql_gtidset_decode(ev.body, ev.body_len, &s, &used, &err), OD_OK);
  CHECK_INT((int)used, (int)ev.body_len);
  char t[256];
  CHECK(mysql_gtidset_format(&s, t, sizeof t) > 0);
  CHECK_STR(t, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:200");
  e[30] ^= 1; /* the CRC catches a flipped bit */
  CHECK_INT(my_event_parse(&f, e, n, &ev, &err), OD_EPROTOCOL);
}

/* A table (id INT, name VARCHAR(40) utf8mb4, doc JSON) as a table map with full metadata gives it. */
static my_table *table(void) {
  my_table *t = calloc(1, sizeof *t);
  t->id = 77;
  t->db = strdup("shop");
  t->name = strdup("t");
  t->ncols = 3;
  t->cols = calloc(3, sizeof *t->cols);
  t->cols[0] = (my_column){.type = MY_T_LONG, .real_type = MY_T_LONG, .name = strdup("id"), .key = true};
  t->cols[1] = (my_column){.type = MY_T_VARCHAR, .real_type = MY_T_VARCHAR, .length = 160, .nullable = true,
                           .name = strdup("name"), .charset = MY_CS_UTF8};
  t->cols[2] = (my_column){.type = MY_T_JSON, .real_type = MY_T_JSON, .length = 4, .nullable = true,
                           .name = strdup("doc")};
  t->full_metadata = t->has_key = true;
  return t;
}

static void v2_header(buf *b, const buf *extra) {
  le(b, 77, 6);                 /* table id */
  le(b, 1, 2);                  /* flags: end of statement */
  le(b, 2 + extra->n, 2);       /* extra data length, itself included */
  raw(b, extra->b, extra->n);
  b->b[b->n++] = 3;             /* columns */
}

/* One image of (id, name, doc) with doc NULL: NULL bitmap, then the values. */
static void image(buf *b, int32_t id, const char *name) {
  b->b[b->n++] = name ? 0x04 : 0x06; /* NULL bits over the 3 present columns */
  le(b, (uint32_t)id, 4);
  if (name) {
    b->b[b->n++] = (uint8_t)strlen(name);
    raw(b, name, strlen(name));
  }
}

static int rows_of(uint8_t type, const buf *body, my_table *t, od_tuple *bt, od_tuple *at, my_rows *r, my_valbuf *vb,
                   od_error *err) {
  my_format f;
  my_format_init(&f, false);
  static uint8_t e[1024];
  size_t n = event(e, type, body, false);
  my_event ev;
  int rc = my_event_parse(&f, e, n, &ev, err);
  if (!rc) rc = my_rows_begin(&f, &ev, r, err);
  if (rc) return rc;
  return my_rows_next(r, t, vb, bt, at, err);
}

TEST(rows_v2_extra_row_info) {
  my_table *t = table();
  my_valbuf vb = {0};
  my_rows r;
  od_tuple bt, at;
  od_error err;
  /* WRITE_ROWS v2 with NDB info (length 5: itself, format, 3 bytes) and partition 3 */
  buf x = {.n = 0}, b = {.n = 0};
  x.b[x.n++] = 0, x.b[x.n++] = 5, x.b[x.n++] = 0, x.b[x.n++] = 'a', x.b[x.n++] = 'b', x.b[x.n++] = 'c';
  x.b[x.n++] = 1;
  le(&x, 3, 2);
  v2_header(&b, &x);
  b.b[b.n++] = 0x07; /* all columns present */
  image(&b, 42, "zoë");
  CHECK_INT(rows_of(MY_EV_WRITE_V2, &b, t, &bt, &at, &r, &vb, &err), 1);
  CHECK_INT(r.op, OD_OP_INSERT);
  CHECK_INT(r.ndb_info_len, 5);
  CHECK_INT(r.partition_id, 3);
  CHECK_INT(r.source_partition_id, -1);
  CHECK_INT(at.ncolumns, 3);
  CHECK_STR(at.values[0].data, "42");
  CHECK_STR(at.values[1].data, "zoë");
  CHECK_INT(at.values[2].kind, OD_VALUE_NULL);
  my_rows_end(&r);
  /* UPDATE_ROWS v2 moving a row from partition 1 to partition 2 */
  x.n = 0, b.n = 0;
  x.b[x.n++] = 1;
  le(&x, 2, 2);
  le(&x, 1, 2);
  v2_header(&b, &x);
  b.b[b.n++] = 0x07, b.b[b.n++] = 0x07;
  image(&b, 42, "old");
  image(&b, -7, NULL);
  CHECK_INT(rows_of(MY_EV_UPDATE_V2, &b, t, &bt, &at, &r, &vb, &err), 1);
  CHECK_INT(r.partition_id, 2);
  CHECK_INT(r.source_partition_id, 1);
  CHECK_STR(bt.values[1].data, "old");
  CHECK_STR(at.values[0].data, "-7");
  CHECK_INT(at.values[1].kind, OD_VALUE_NULL);
  CHECK_INT(my_rows_next(&r, t, &vb, &bt, &at, &err), 0);
  my_rows_end(&r);
  /* without extra info (MariaDB's v2): no partition */
  x.n = 0, b.n = 0;
  v2_header(&b, &x);
  b.b[b.n++] = 0x07;
  image(&b, 1, "x");
  CHECK_INT(rows_of(MY_EV_DELETE_V2, &b, t, &bt, &at, &r, &vb, &err), 1);
  CHECK_INT(r.partition_id, -1);
  CHECK_INT(r.ndb_info_len, 0);
  CHECK_STR(bt.values[0].data, "1");
  my_rows_end(&r);
  /* a truncated partition item is malformed */
  x.n = 0, b.n = 0;
  x.b[x.n++] = 1, x.b[x.n++] = 2;
  v2_header(&b, &x);
  b.b[b.n++] = 0x07;
  image(&b, 1, "x");
  CHECK_INT(rows_of(MY_EV_WRITE_V2, &b, t, &bt, &at, &r, &vb, &err), OD_EPROTOCOL);
  my_valbuf_free(&vb);
  my_table_free(t);
}

typedef struct diffs {
  int n, ops[8];
  char paths[8][32];
  size_t vlen[8];
} diffs;

static void on_diff(void *ctx, int op, const char *path, size_t plen, const uint8_t *value, size_t vlen) {
  diffs *d = ctx;
  d->ops[d->n] = op;
  snprintf(d->paths[d->n], sizeof d->paths[0], "%.*s", (int)plen, path);
  d->vlen[d->n] = value ? vlen : 0;
  d->n++;
}

/* A diff list: REPLACE $.a with a small JSON literal, INSERT $.b[1], REMOVE $.c. The values are
 * opaque bytes here (MySQL's binary JSON: type 0x04 literal, 0x01 true). */
static void diff_list(buf *o) {
  buf d = {.n = 0};
  d.b[d.n++] = 0, d.b[d.n++] = 3, raw(&d, "$.a", 3), d.b[d.n++] = 2, d.b[d.n++] = 0x04, d.b[d.n++] = 0x01;
  d.b[d.n++] = 1, d.b[d.n++] = 6, raw(&d, "$.b[1]", 6), d.b[d.n++] = 2, d.b[d.n++] = 0x04, d.b[d.n++] = 0x00;
  d.b[d.n++] = 2, d.b[d.n++] = 3, raw(&d, "$.c", 3);
  le(o, d.n, 4);
  raw(o, d.b, d.n);
}

TEST(json_diff_list) {
  buf b = {.n = 0};
  diff_list(&b);
  diffs d = {0};
  size_t used;
  CHECK_INT(my_json_diffs_parse(b.b, b.b + b.n, &used, on_diff, &d), 0);
  CHECK_INT((int)used, (int)b.n);
  CHECK_INT(d.n, 3);
  CHECK_INT(d.ops[0], 0);
  CHECK_STR(d.paths[0], "$.a");
  CHECK_INT((int)d.vlen[0], 2);
  CHECK_INT(d.ops[1], 1);
  CHECK_STR(d.paths[1], "$.b[1]");
  CHECK_INT(d.ops[2], 2);
  CHECK_STR(d.paths[2], "$.c");
  CHECK_INT((int)d.vlen[2], 0);
  CHECK_INT(my_json_diffs_parse(b.b, b.b + b.n - 1, &used, on_diff, &d), -1); /* truncated */
  b.b[4] = 3; /* an unknown operation */
  CHECK_INT(my_json_diffs_parse(b.b, b.b + b.n, &used, NULL, NULL), -1);
}

TEST(partial_update_rows) {
  my_table *t = table();
  my_valbuf vb = {0};
  my_rows r;
  od_tuple bt, at;
  od_error err;
  /* value_options 0: an ordinary update (the row's JSON was not updated partially) */
  buf x = {.n = 0}, b = {.n = 0};
  v2_header(&b, &x);
  b.b[b.n++] = 0x07, b.b[b.n++] = 0x07;
  image(&b, 5, "before");
  b.b[b.n++] = 0; /* value_options */
  image(&b, 5, "after");
  CHECK_INT(rows_of(MY_EV_MYSQL_PARTIAL_UPDATE, &b, t, &bt, &at, &r, &vb, &err), 1);
  CHECK(r.partial);
  CHECK_INT(r.op, OD_OP_UPDATE);
  CHECK_STR(bt.values[1].data, "before");
  CHECK_STR(at.values[1].data, "after");
  CHECK_INT(at.values[2].kind, OD_VALUE_NULL);
  my_rows_end(&r);
  /* value_options PARTIAL_JSON_UPDATES, doc's partial bit set, doc sent as a diff list */
  b.n = 0;
  v2_header(&b, &x);
  b.b[b.n++] = 0x07, b.b[b.n++] = 0x07;
  image(&b, 5, "before");
  b.b[b.n++] = 1;    /* value_options */
  b.b[b.n++] = 0x01; /* partial bits: doc */
  b.b[b.n++] = 0x00; /* after image: nothing NULL */
  le(&b, 5, 4);
  b.b[b.n++] = 1, b.b[b.n++] = 'x';
  diff_list(&b);
  CHECK_INT(rows_of(MY_EV_MYSQL_PARTIAL_UPDATE, &b, t, &bt, &at, &r, &vb, &err), OD_EUNSUPPORTED);
  CHECK_CONTAINS(err.msg, "table shop.t: column doc: a partial JSON update (3 diffs, the first REPLACE $.a)");
  CHECK_CONTAINS(err.msg, "binlog_row_value_options=''");
  my_rows_end(&r);
  /* the partial bits present but doc's bit clear and doc NULL: an ordinary after image */
  b.n = 0;
  v2_header(&b, &x);
  b.b[b.n++] = 0x07, b.b[b.n++] = 0x07;
  image(&b, 5, "before");
  b.b[b.n++] = 1, b.b[b.n++] = 0x00;
  image(&b, 6, "after");
  CHECK_INT(rows_of(MY_EV_MYSQL_PARTIAL_UPDATE, &b, t, &bt, &at, &r, &vb, &err), 1);
  CHECK_STR(at.values[0].data, "6");
  my_rows_end(&r);
  /* truncated after the before image */
  b.n = 0;
  v2_header(&b, &x);
  b.b[b.n++] = 0x07, b.b[b.n++] = 0x07;
  image(&b, 5, "before");
  CHECK_INT(rows_of(MY_EV_MYSQL_PARTIAL_UPDATE, &b, t, &bt, &at, &r, &vb, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "value_options");
  my_rows_end(&r);
  my_valbuf_free(&vb);
  my_table_free(t);
}

/* The MariaDB stream meeting a MySQL server's GTID event: decoded, and refused with what it is. */
TEST(stream_names_a_mysql_server) {
  my_stream s;
  my_stream_cb cb = {0};
  od_error err;
  CHECK_INT(my_stream_init(&s, &cb, "binlog.000001", 4, "", false, &err), OD_OK);
  s.fmt.post_header[MY_EV_MYSQL_GTID] = 42;
  buf b = {.n = 0};
  gtid_post_header(&b, 17, true);
  uint8_t e[256];
  size_t n = event(e, MY_EV_MYSQL_GTID, &b, false);
  CHECK_INT(my_stream_event(&s, e, n, &err), OD_EUNSUPPORTED);
  CHECK_CONTAINS(err.msg, "a MySQL GTID event (transaction 17): this server is MySQL");
  CHECK_CONTAINS(err.msg, "mysql-source.md");
  my_stream_free(&s);
}
