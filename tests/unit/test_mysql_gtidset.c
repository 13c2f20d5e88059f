/* test_mysql_gtidset.c — MySQL GTID sets and the "mysqlgtid" position kind
 * (src/sources/mysql/mysql_gtidset.c): parsing with MySQL's spellings, the canonical form (sorted
 * uuids, merged intervals), inclusion, adding GTIDs, the binary form of PREVIOUS_GTIDS, and the
 * position kind's format/parse round trip, order and size limit. */
#include <string.h>

#include "sources/mysql/mysql_gtidset.h"
#include "test.h"

#define U1 "3e11fa47-71ca-11e1-9e33-c80aa9429562"
#define U2 "4a6f2b00-0000-11e1-8000-000000000002"

static const char *canon(const char *text) {
  static char buf[1024];
  static mysql_gtidset s;
  static od_error err;
  if (mysql_gtidset_parse(text, &s, &err) != OD_OK) return err.msg;
  CHECK(mysql_gtidset_format(&s, buf, sizeof buf) >= 0);
  return buf;
}

TEST(parse_and_canonical_form) {
  CHECK_STR(canon(""), "");
  CHECK_STR(canon("  \n"), "");
  CHECK_STR(canon(U1 ":1-5:7"), U1 ":1-5:7");
  /* uuids sorted, intervals sorted and merged (overlapping and adjacent), case folded */
  CHECK_STR(canon(U2 ":1-3,\n" "3E11FA47-71CA-11E1-9E33-C80AA9429562:7:1-5"), U1 ":1-5:7," U2 ":1-3");
  CHECK_STR(canon(U1 ":1-3:4-6:10:8-9"), U1 ":1-6:8-10");
  CHECK_STR(canon(U1 ":5:1-10"), U1 ":1-10");
  CHECK_STR(canon(U1 ":1-2," U1 ":3"), U1 ":1-3"); /* a uuid twice */
  CHECK_STR(canon(U1 " : 1 - 4 , " U2 " : 9"), U1 ":1-4," U2 ":9");
  CHECK_STR(canon(U1 ":9223372036854775807"), U1 ":9223372036854775807");
}

TEST(parse_errors_name_the_part) {
  mysql_gtidset s;
  od_error err;
  CHECK_INT(mysql_gtidset_parse(U1, &s, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "without ':interval'");
  CHECK_INT(mysql_gtidset_parse(U1 ":0", &s, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "transaction number");
  CHECK_INT(mysql_gtidset_parse(U1 ":5-3", &s, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "bad interval");
  CHECK_INT(mysql_gtidset_parse(U1 ":9223372036854775808", &s, &err), OD_EINVAL);
  CHECK_INT(mysql_gtidset_parse("3e11fa47-71ca-11e1-9e33-c80aa942956:1", &s, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "does not start with a uuid");
  CHECK_INT(mysql_gtidset_parse("0-1-42", &s, &err), OD_EINVAL); /* a MariaDB GTID is not one */
  CHECK_INT(mysql_gtidset_parse(U1 ":1;" U2 ":1", &s, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "unexpected");
}

TEST(contains_has_count_add_union) {
  mysql_gtidset a, b, c;
  od_error err;
  CHECK_INT(mysql_gtidset_parse(U1 ":1-10:20-30," U2 ":1-5", &a, &err), OD_OK);
  CHECK_INT(mysql_gtidset_parse(U1 ":2-9:25," U2 ":5", &b, &err), OD_OK);
  CHECK(mysql_gtidset_contains(&a, &b));
  CHECK(!mysql_gtidset_contains(&b, &a));
  CHECK_INT(mysql_gtidset_parse(U1 ":10-20", &c, &err), OD_OK); /* 11-19 missing */
  CHECK(!mysql_gtidset_contains(&a, &c));
  CHECK_INT(mysql_gtidset_parse("", &c, &err), OD_OK);
  CHECK(mysql_gtidset_contains(&a, &c));
  CHECK_INT((int)mysql_gtidset_count(&a), 10 + 11 + 5);
  uint8_t u1[16];
  memcpy(u1, a.u[0].uuid, 16);
  CHECK(mysql_gtidset_has(&a, u1, 20));
  CHECK(!mysql_gtidset_has(&a, u1, 15));
  /* adding 11..19 one by one closes the gap into one interval */
  for (uint64_t g = 11; g <= 19; g++) CHECK_INT(mysql_gtidset_add(&a, u1, g, &err), OD_OK);
  char buf[256];
  CHECK(mysql_gtidset_format(&a, buf, sizeof buf) > 0);
  CHECK_STR(buf, U1 ":1-30," U2 ":1-5");
  CHECK_INT(mysql_gtidset_add(&a, u1, 0, &err), OD_EINVAL);
  CHECK_INT(mysql_gtidset_parse(U2 ":7-8,4a6f2b00-0000-11e1-8000-000000000001:3", &c, &err), OD_OK);
  CHECK_INT(mysql_gtidset_union(&a, &c, &err), OD_OK);
  CHECK(mysql_gtidset_format(&a, buf, sizeof buf) > 0);
  CHECK_STR(buf, U1 ":1-30,4a6f2b00-0000-11e1-8000-000000000001:3," U2 ":1-5:7-8");
}

TEST(limits_are_errors) {
  mysql_gtidset s;
  od_error err;
  char text[4096];
  size_t n = (size_t)snprintf(text, sizeof text, U1);
  for (int i = 0; i <= MYSQL_GS_MAX_INTERVALS; i++) n += (size_t)snprintf(text + n, sizeof text - n, ":%d", 2 * i + 1);
  CHECK_INT(mysql_gtidset_parse(text, &s, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "intervals");
}

/* PREVIOUS_GTIDS' body: n_sids, per sid uuid, n_intervals, [start, end) pairs; all 8-byte LE. */
static size_t put8(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
  return 8;
}

TEST(binary_form_of_previous_gtids) {
  uint8_t b[256];
  size_t n = 0;
  static const uint8_t u1[16] = {0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1,
                                 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62};
  static const uint8_t u2[16] = {0x4a, 0x6f, 0x2b, 0, 0, 0, 0x11, 0xe1, 0x80, 0, 0, 0, 0, 0, 0, 2};
  n += put8(b + n, 2);
  memcpy(b + n, u2, 16), n += 16; /* written out of order: decoded sets are canonical */
  n += put8(b + n, 1);
  n += put8(b + n, 1), n += put8(b + n, 4);
  memcpy(b + n, u1, 16), n += 16;
  n += put8(b + n, 2);
  n += put8(b + n, 1), n += put8(b + n, 6);
  n += put8(b + n, 7), n += put8(b + n, 8);
  mysql_gtidset s;
  od_error err;
  size_t used;
  CHECK_INT(mysql_gtidset_decode(b, n, &s, &used, &err), OD_OK);
  CHECK_INT((int)used, (int)n);
  char text[256];
  CHECK(mysql_gtidset_format(&s, text, sizeof text) > 0);
  CHECK_STR(text, U1 ":1-5:7," U2 ":1-3");
  /* encode gives the canonical bytes, which decode back to the same set */
  uint8_t e[256];
  long en = mysql_gtidset_encode(&s, e, sizeof e);
  CHECK_INT((int)en, (int)n);
  mysql_gtidset s2;
  CHECK_INT(mysql_gtidset_decode(e, (size_t)en, &s2, &used, &err), OD_OK);
  CHECK(mysql_gtidset_contains(&s, &s2) && mysql_gtidset_contains(&s2, &s));
  /* truncated and bad intervals */
  CHECK_INT(mysql_gtidset_decode(b, n - 1, &s, &used, &err), OD_EPROTOCOL);
  put8(b + 8 + 24, 4); /* [4, 4): empty */
  CHECK_INT(mysql_gtidset_decode(b, n, &s, &used, &err), OD_EPROTOCOL);
  CHECK_CONTAINS(err.msg, "bad interval");
}

static const char *pos_text(const od_pos *p) {
  static char buf[2][OD_POS_TEXT_MAX];
  static int k;
  k ^= 1;
  int n = snprintf(buf[k], sizeof buf[k], "%s:", p->kind->name);
  CHECK(p->kind->format(p, buf[k] + n, sizeof buf[k] - (size_t)n) > 0);
  return buf[k];
}

static od_pos pos_of(const char *body) {
  od_pos p = {0};
  p.kind = &od_pos_mysql_gtid;
  if (od_pos_mysql_gtid.parse(body, &p) != OD_OK) OD_TEST_FAIL("cannot parse %s", body);
  p.kind = &od_pos_mysql_gtid;
  return p;
}

TEST(position_kind_round_trip_and_order) {
  CHECK_STR(od_pos_mysql_gtid.name, "mysqlgtid");
  od_pos a = pos_of(U2 ":1-3," U1 ":7:1-5@binlog.000003:1234");
  CHECK_STR(pos_text(&a), "mysqlgtid:" U1 ":1-5:7," U2 ":1-3@binlog.000003:1234");
  od_pos e = pos_of("@binlog.000001:4"); /* before the first GTID */
  CHECK_STR(pos_text(&e), "mysqlgtid:@binlog.000001:4");
  /* the binlog's order first: file number, then offset */
  od_pos b = pos_of(U1 ":1-6:7," U2 ":1-3@binlog.000003:1500");
  od_pos c = pos_of(U1 ":1-7," U2 ":1-3@binlog.000004:4");
  CHECK(od_pos_mysql_gtid.compare(&e, &a) < 0);
  CHECK(od_pos_mysql_gtid.compare(&a, &b) < 0);
  CHECK(od_pos_mysql_gtid.compare(&b, &c) < 0);
  CHECK(od_pos_mysql_gtid.compare(&c, &a) > 0);
  CHECK_INT(od_pos_mysql_gtid.compare(&a, &a), 0);
  /* same coordinates: the larger set is later */
  od_pos a2 = pos_of(U1 ":1-5," U2 ":1-3@binlog.000003:1234");
  CHECK(od_pos_mysql_gtid.compare(&a2, &a) < 0);
  /* parts */
  char file[64];
  uint64_t off;
  mysql_gtidset s;
  CHECK_INT(mysql_gtidpos_parts(&b, file, sizeof file, &off, &s), OD_OK);
  CHECK_STR(file, "binlog.000003");
  CHECK_INT((int)off, 1500);
  CHECK_INT((int)mysql_gtidset_count(&s), 10);
  /* rejected bodies */
  od_pos x = {0};
  CHECK_INT(od_pos_mysql_gtid.parse(U1 ":1-5", &x), OD_EINVAL);            /* no coordinates */
  CHECK_INT(od_pos_mysql_gtid.parse("0-1-42@binlog.000001:4", &x), OD_EINVAL); /* MariaDB's GTID */
  CHECK_INT(od_pos_mysql_gtid.parse(U1 ":1@binlog:4", &x), OD_EINVAL);     /* no file number */
  CHECK_INT(od_pos_mysql_gtid.parse(U1 ":1@binlog.000001:-4", &x), OD_EINVAL);
}

TEST(position_size_limit_is_a_clear_error) {
  mysql_gtidset s;
  od_error err;
  char text[2048];
  size_t n = 0;
  for (int u = 0; u < 5; u++)
    n += (size_t)snprintf(text + n, sizeof text - n, "%s4a6f2b00-0000-11e1-8000-00000000000%d:1-100", u ? "," : "", u);
  CHECK_INT(mysql_gtidset_parse(text, &s, &err), OD_OK);
  od_pos p;
  CHECK_INT(mysql_gtidpos_make("binlog.000001", 4, &s, &p, &err), OD_EINVAL);
  CHECK_CONTAINS(err.msg, "does not fit");
  /* two uuids with a few intervals fit */
  CHECK_INT(mysql_gtidset_parse(U1 ":1-1000000:1000002:1000004-1000010," U2 ":1-77", &s, &err), OD_OK);
  CHECK_INT(mysql_gtidpos_make("mysql-bin.000042", 123456789, &s, &p, &err), OD_OK);
  CHECK_STR(pos_text(&p), "mysqlgtid:" U1 ":1-1000000:1000002:1000004-1000010," U2 ":1-77@mysql-bin.000042:123456789");
}
