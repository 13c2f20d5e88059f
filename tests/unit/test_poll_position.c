/* test_poll_position.c — the positions of postgres_poll / postgres_trigger (round trip through the
 * stored text form, order) and the text[] literal parser the trigger source reads rows with. */
#include "test.h"

#include "odsync/position.h"
#include "sources/poll/poll_position.h"
#include "sources/poll/pq_util.h"

static void roundtrip(const od_pos *p, const char *text) {
  char buf[OD_POS_TEXT_MAX];
  CHECK_STR(od_pos_to_text(p, buf, sizeof buf), text);
  od_pos back;
  od_error err = {0};
  CHECK_INT(od_pos_from_text(text, &back, &err), OD_OK);
  CHECK(od_pos_eq(&back, p));
}

TEST(poll_positions_roundtrip) {
  od_pos x = od_pgpoll_pos('x', 4294967301ULL);
  roundtrip(&x, "pgpoll:xmin:4294967301");
  od_pos t = od_pgpoll_pos('t', 1796258550602341ULL);
  roundtrip(&t, "pgpoll:ts:1796258550602341");
  od_pos l = od_pgpoll_pos('i', 7);
  roundtrip(&l, "pgpoll:load:7");
  CHECK(od_pos_lt(&l, &t) && od_pos_lt(&l, &x)); /* a load's chunks sort below every horizon */
  od_pos l2 = od_pgpoll_pos('i', 8);
  CHECK(od_pos_lt(&l, &l2));
  od_pos g = od_pos_from_u64(&od_pgtrig_position, 735);
  roundtrip(&g, "pgtrig:735");
  char mode;
  uint64_t v;
  CHECK(od_pgpoll_get(&x, &mode, &v));
  CHECK(mode == 'x' && v == 4294967301ULL);
  CHECK(!od_pgpoll_get(&g, &mode, &v));
}

TEST(poll_positions_order) {
  /* Numeric order across byte boundaries: 255 < 256, 2^32 - 1 < 2^32. */
  od_pos a = od_pgpoll_pos('x', 255), b = od_pgpoll_pos('x', 256);
  CHECK(od_pos_lt(&a, &b));
  a = od_pgpoll_pos('x', 4294967295ULL), b = od_pgpoll_pos('x', 4294967296ULL);
  CHECK(od_pos_lt(&a, &b));
  od_pos c = od_pos_from_u64(&od_pgtrig_position, 9), d = od_pos_from_u64(&od_pgtrig_position, 10);
  CHECK(od_pos_lt(&c, &d));
}

TEST(poll_positions_reconcile_seq) {
  /* A reconciliation while the horizon stands still: h < h+1 < h+2 < the next horizon. */
  od_pos h = od_pgpoll_pos('x', 1029), s1 = od_pgpoll_pos_seq('x', 1029, 1), s2 = od_pgpoll_pos_seq('x', 1029, 2);
  od_pos n = od_pgpoll_pos('x', 1030);
  roundtrip(&s1, "pgpoll:xmin:1029+1");
  od_pos t = od_pgpoll_pos_seq('t', 1796258550602341ULL, 300);
  roundtrip(&t, "pgpoll:ts:1796258550602341+300");
  CHECK(od_pos_lt(&h, &s1) && od_pos_lt(&s1, &s2) && od_pos_lt(&s2, &n));
  CHECK(od_pgpoll_seq(&h) == 0 && od_pgpoll_seq(&s2) == 2);
  char mode;
  uint64_t v;
  CHECK(od_pgpoll_get(&s2, &mode, &v) && mode == 'x' && v == 1029);
  CHECK(od_pgpoll_pos_seq('x', 5, 0).len == od_pgpoll_pos('x', 5).len);
  /* The version grows with the position too (ClickHouse keeps the highest). */
  const od_pos_kind *k = &od_pgpoll_position;
  CHECK(k->version(&h) < k->version(&s1) && k->version(&s1) < k->version(&s2) && k->version(&s2) < k->version(&n));
}

TEST(poll_positions_load_resume) {
  /* A resumable chunk end of an initial load: load:k < load:k@h/t/key < load:k+1, round trip. */
  od_pos k = od_pgpoll_pos('i', 40), k1 = od_pgpoll_pos('i', 41);
  od_pos r = od_pgpoll_load_pos(40, 732, 1, "7\0a b\0", 6);
  roundtrip(&r, "pgpoll:load:40@732/1/370061206200");
  CHECK(od_pos_lt(&k, &r) && od_pos_lt(&r, &k1));
  uint64_t h;
  uint16_t t;
  const uint8_t *key;
  size_t keylen;
  CHECK(od_pgpoll_load_resume(&r, &h, &t, &key, &keylen));
  CHECK(h == 732 && t == 1 && keylen == 6 && !memcmp(key, "7\0a b\0", 6));
  char mode;
  uint64_t v;
  CHECK(od_pgpoll_get(&r, &mode, &v) && mode == 'i' && v == 40);
  CHECK(od_pgpoll_seq(&r) == 0);
  CHECK(!od_pgpoll_load_resume(&k, &h, &t, &key, &keylen));
  /* A key too long for a position: the plain, non-resumable position. */
  char big[OD_PGPOLL_LOAD_KEY_MAX + 1];
  memset(big, 'x', sizeof big);
  od_pos p = od_pgpoll_load_pos(40, 732, 0, big, sizeof big);
  CHECK(od_pos_eq(&p, &k));
  od_pos q;
  od_error e = {0};
  CHECK(od_pos_from_text("pgpoll:load:40@732/1/37006", &q, &e) != OD_OK); /* odd hex */
  CHECK(od_pos_from_text("pgpoll:load:40@732/70000/3700", &q, &e) != OD_OK);
  CHECK(od_pos_from_text("pgpoll:load:40@/1/3700", &q, &e) != OD_OK);
  CHECK(od_pos_from_text("pgpoll:xmin:40@732/1/3700", &q, &e) != OD_OK);
}

TEST(poll_positions_reject) {
  od_pos q;
  od_error e = {0};
  CHECK(od_pos_from_text("pgpoll:xmin:5+0", &q, &e) != OD_OK);
  CHECK(od_pos_from_text("pgpoll:xmin:5+", &q, &e) != OD_OK);
  CHECK(od_pos_from_text("pgpoll:load:5+1", &q, &e) != OD_OK);
  od_pos p;
  od_error err = {0};
  CHECK(od_pos_from_text("pgpoll:xmin:", &p, &err) != OD_OK);
  CHECK(od_pos_from_text("pgpoll:lsn:5", &p, &err) != OD_OK);
  CHECK(od_pos_from_text("pgpoll:ts:-5", &p, &err) != OD_OK);
  CHECK(od_pos_from_text("pgtrig:12x", &p, &err) != OD_OK);
  CHECK(od_pos_from_text("pgtrig:", &p, &err) != OD_OK);
}

TEST(text_array_parse) {
  char s1[] = "{1,\"two words\",NULL,\"NULL\",\"a\\\"b\\\\c\",\"\",x}";
  char *v[8];
  CHECK_INT(pq_parse_text_array(s1, v, 8), 7);
  CHECK_STR(v[0], "1");
  CHECK_STR(v[1], "two words");
  CHECK(v[2] == NULL);
  CHECK_STR(v[3], "NULL"); /* quoted: the text NULL, not SQL NULL */
  CHECK_STR(v[4], "a\"b\\c");
  CHECK_STR(v[5], "");
  CHECK_STR(v[6], "x");
  char s2[] = "{}";
  CHECK_INT(pq_parse_text_array(s2, v, 8), 0);
  char s3[] = "{\"{1,2}\",\"2024-01-01 00:00:00+00\"}";
  CHECK_INT(pq_parse_text_array(s3, v, 8), 2);
  CHECK_STR(v[0], "{1,2}");
  char bad1[] = "{1,2", bad2[] = "1,2}", bad3[] = "{\"open}", bad4[] = "{1,2,3}";
  CHECK_INT(pq_parse_text_array(bad1, v, 8), -1);
  CHECK_INT(pq_parse_text_array(bad2, v, 8), -1);
  CHECK_INT(pq_parse_text_array(bad3, v, 8), -1);
  CHECK_INT(pq_parse_text_array(bad4, v, 2), -1); /* more elements than room */
}

#include "sources/sqlpoll/sqlpoll_position.h"

TEST(sqlpoll_positions) {
  int64_t w[3] = {12, -5, 0};
  od_pos p = od_sqlpoll_pos(3, w);
  roundtrip(&p, "sqlpoll:12,-5,0");
  int64_t back[SQLPOLL_MAX_TABLES];
  CHECK_INT(od_sqlpoll_get(&p, back, SQLPOLL_MAX_TABLES), 3);
  CHECK(back[0] == 12 && back[1] == -5 && back[2] == 0);
  /* Order: by the sum of the watermarks, so raising any one table's raises the position. */
  int64_t w2[3] = {12, -5, 1}, w3[3] = {11, 100, 0};
  od_pos p2 = od_sqlpoll_pos(3, w2), p3 = od_sqlpoll_pos(3, w3);
  CHECK(od_pos_lt(&p, &p2));
  CHECK(od_pos_lt(&p2, &p3));
  int64_t mins[2] = {INT64_MIN, INT64_MIN}, one[2] = {INT64_MIN, 7};
  od_pos a = od_sqlpoll_pos(2, mins), b = od_sqlpoll_pos(2, one);
  CHECK(od_pos_lt(&a, &b)); /* no overflow in the sum */
  od_error err = {0};
  CHECK(od_pos_from_text("sqlpoll:1,,2", &p, &err) != OD_OK);
  CHECK(od_pos_from_text("sqlpoll:1,2,3,4,5,6,7,8,9,10,11,12", &p, &err) != OD_OK);
  CHECK(od_pos_from_text("sqlpoll:", &p, &err) != OD_OK);
}
