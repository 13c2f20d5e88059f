/* test_mytrig_values.c — `type: mariadb_trigger`: the column expressions its triggers store
 * (src/sources/mysql/mytrig_values.c), the conversion of what they stored into the text forms of
 * docs/TYPES.md ("MariaDB"), trigger names, the "mytrig" position and the source's config keys. */
#include <stdlib.h>
#include <string.h>

#include "odsync/config.h"
#include "sources/mysql/mytrig.h"
#include "test.h"

static my_column col(uint8_t type, uint8_t charset, uint32_t length) {
  return (my_column){.type = type, .real_type = type, .charset = charset, .length = length, .name = "c`x"};
}

static const char *conv(my_column c, const char *in) {
  static char out[256];
  long n = mytrig_value(&c, in, strlen(in), out, sizeof out);
  if (n < 0) return "(fail)";
  if ((size_t)n != strlen(out)) return "(bad length)";
  return out;
}

TEST(values) {
  /* binary strings: HEX() text -> bytea hex, lower case */
  CHECK_STR(conv(col(MY_T_VARCHAR, MY_CS_BINARY, 10), "00FFA0"), "\\x00ffa0");
  CHECK_STR(conv(col(MY_T_BLOB, MY_CS_BINARY, 2), ""), "\\x");
  CHECK_STR(conv(col(MY_T_GEOMETRY, MY_CS_BINARY, 4), "0102"), "\\x0102");
  CHECK_STR(conv(col(MY_T_VARCHAR, MY_CS_BINARY, 10), "0G"), "(fail)");
  CHECK_STR(conv(col(MY_T_VARCHAR, MY_CS_BINARY, 10), "012"), "(fail)");
  /* a text column keeps its bytes, even when they look like hex */
  CHECK_STR(conv(col(MY_T_VARCHAR, MY_CS_UTF8, 40), "00FF \"ü\" \\"), "00FF \"ü\" \\");
  /* floats re-printed shortest */
  CHECK_STR(conv(col(MY_T_DOUBLE, 0, 8), "0.1"), "0.1");
  CHECK_STR(conv(col(MY_T_FLOAT, 0, 4), "1.100000023841858"), "1.1");
  /* TIMESTAMP: seconds since the epoch -> UTC text with the column's fraction and +00 */
  CHECK_STR(conv(col(MY_T_TIMESTAMP2, 0, 3), "1717225200.500"), "2024-06-01 07:00:00.500+00");
  CHECK_STR(conv(col(MY_T_TIMESTAMP2, 0, 6), "1704164645.678"), "2024-01-02 03:04:05.678000+00");
  CHECK_STR(conv(col(MY_T_TIMESTAMP2, 0, 0), "0"), "0000-00-00 00:00:00");
  CHECK_STR(conv(col(MY_T_TIMESTAMP2, 0, 0), "2147483647"), "2038-01-19 03:14:07+00");
  /* everything else as stored */
  CHECK_STR(conv(col(MY_T_NEWDECIMAL, 0, 0), "-12.50"), "-12.50");
  CHECK_STR(conv(col(MY_T_DATETIME2, 0, 3), "1000-01-01 00:00:00.000"), "1000-01-01 00:00:00.000");
  /* too small a buffer is an error, never a truncated value */
  my_column b = col(MY_T_VARCHAR, MY_CS_UTF8, 40);
  char small[4];
  CHECK_INT(mytrig_value(&b, "abcd", 4, small, sizeof small), -1);
}

TEST(expressions) {
  char buf[300];
  my_column c = col(MY_T_VARCHAR, MY_CS_BINARY, 10);
  CHECK(mytrig_column_expr(&c, "NEW", buf, sizeof buf) > 0);
  CHECK_STR(buf, "HEX(NEW.`c``x`)");
  c = col(MY_T_TIMESTAMP2, 0, 6);
  CHECK(mytrig_column_expr(&c, "OLD", buf, sizeof buf) > 0);
  CHECK_STR(buf, "IF(OLD.`c``x` = 0, '0', CAST(UNIX_TIMESTAMP(OLD.`c``x`) AS CHAR))");
  c = col(MY_T_BIT, 0, 5);
  CHECK(mytrig_column_expr(&c, "NEW", buf, sizeof buf) > 0);
  CHECK_STR(buf, "LPAD(BIN(NEW.`c``x`), 5, '0')");
  c = col(MY_T_YEAR, 0, 0);
  CHECK(mytrig_column_expr(&c, "t", buf, sizeof buf) > 0);
  CHECK_STR(buf, "CAST(t.`c``x` + 0 AS CHAR)");
  c = col(MY_T_LONG, 0, 0);
  CHECK(mytrig_column_expr(&c, "NEW", buf, sizeof buf) > 0);
  CHECK_STR(buf, "CAST(NEW.`c``x` AS CHAR CHARACTER SET utf8mb4)");
  CHECK_INT(mytrig_column_expr(&c, "NEW", buf, 10), -1);
}

TEST(names_and_position) {
  char buf[80];
  CHECK(mytrig_trigger_name("orders", 'u', buf, sizeof buf) > 0);
  CHECK_STR(buf, "odsync_u_orders");
  char longname[60];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0'; /* 59 characters: 9 + 59 > 64 */
  CHECK_INT(mytrig_trigger_name(longname, 'i', buf, sizeof buf), -1);
  od_pos p;
  CHECK_INT(od_mytrig_position.parse("12345", &p), OD_OK);
  CHECK_INT((int)od_pos_to_u64(&p), 12345);
  CHECK(p.kind == &od_mytrig_position);
  char text[32];
  CHECK_INT(od_mytrig_position.format(&p, text, sizeof text), 5);
  CHECK_STR(text, "12345");
  CHECK(od_mytrig_position.parse("-1", &p) != OD_OK);
  CHECK(od_mytrig_position.parse("12x", &p) != OD_OK);
  /* positions of the same kind order as the numbers do */
  od_pos a = od_pos_from_u64(&od_mytrig_position, 255), b = od_pos_from_u64(&od_mytrig_position, 256);
  CHECK(od_pos_compare(&a, &b) < 0);
}

TEST(config_keys) {
  my_settings s;
  od_error e = {0};
  const char yaml[] = "pipelines:\n  - name: shop\n    source:\n      type: mariadb_trigger\n"
                      "      dsn: \"host=db1 user=u dbname=shop\"\n      interval_ms: 50\n      server_id: 7\n"
                      "    sink: { type: sqlite, path: /tmp/x.db }\n";
  od_config *c = NULL;
  CHECK_INT(od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, &e), OD_OK);
  /* server_id belongs to the binlog source, not to this one */
  CHECK_INT(my_settings_load_keys(&s, &c->pipelines[0].source, "shop", od_mytrig_config_keys, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "unknown key 'server_id'");
  od_config_free(c);
}
