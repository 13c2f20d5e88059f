/* test_sink_clickhouse_types.c — the ClickHouse sink's type mapping and TabSeparated encoding
 * (src/sinks/clickhouse_types.c): PostgreSQL types to ClickHouse types, which type changes are
 * widenings, and how each value's text form becomes a field (or is refused with a reason). */
#include <string.h>

#include "sinks/clickhouse_internal.h"
#include "test.h"

static const char *enc(int kind, const char *text, int *rc) {
  static od_sqlbuf b;
  od_sqlbuf_reset(&b);
  od_value v = {.data = text, .len = text ? (uint32_t)strlen(text) : 0, .kind = text ? OD_VALUE_TEXT : OD_VALUE_NULL};
  const char *why = NULL;
  *rc = ch_encode(&b, kind, &v, &why);
  if (*rc) return why;
  od_sqlbuf_add(&b, ""); /* a NULL field still leaves a string */
  return b.p;
}

TEST(type_mapping) {
  char t[96];
  CHECK_INT(ch_type_of(16, -1, t, sizeof t), CHK_BOOL);
  CHECK_STR(t, "UInt8");
  CHECK_INT(ch_type_of(20, -1, t, sizeof t), CHK_INT);
  CHECK_STR(t, "Int64");
  CHECK_INT(ch_type_of(21, -1, t, sizeof t), CHK_INT);
  CHECK_STR(t, "Int16");
  CHECK_INT(ch_type_of(701, -1, t, sizeof t), CHK_FLOAT);
  CHECK_STR(t, "Float64");
  /* numeric(12,2): typmod = (12 << 16 | 2) + 4 */
  CHECK_INT(ch_type_of(1700, (12 << 16 | 2) + 4, t, sizeof t), CHK_DECIMAL);
  CHECK_STR(t, "Decimal(12, 2)");
  CHECK_INT(ch_type_of(1700, (38 << 16 | 10) + 4, t, sizeof t), CHK_DECIMAL);
  CHECK_STR(t, "Decimal(38, 10)");
  /* beyond 38 digits, or no precision at all: kept exactly as text */
  CHECK_INT(ch_type_of(1700, (40 << 16 | 2) + 4, t, sizeof t), CHK_STRING);
  CHECK_STR(t, "String");
  CHECK_INT(ch_type_of(1700, -1, t, sizeof t), CHK_STRING);
  CHECK_INT(ch_type_of(1184, -1, t, sizeof t), CHK_DATETIME);
  CHECK_STR(t, "DateTime('UTC')");
  CHECK_INT(ch_type_of(1082, -1, t, sizeof t), CHK_DATE);
  CHECK_STR(t, "Date");
  CHECK_INT(ch_type_of(17, -1, t, sizeof t), CHK_BYTES);
  CHECK_STR(t, "String");
  CHECK_INT(ch_type_of(3802, -1, t, sizeof t), CHK_STRING); /* jsonb */
  CHECK_INT(ch_type_of(2950, -1, t, sizeof t), CHK_STRING); /* uuid */
}

TEST(widening) {
  CHECK(ch_type_widens("Int16", "Int32"));
  CHECK(ch_type_widens("Int32", "Int64"));
  CHECK(!ch_type_widens("Int64", "Int32"));
  CHECK(ch_type_widens("Float32", "Float64"));
  CHECK(ch_type_widens("Decimal(10, 2)", "Decimal(14, 2)"));
  CHECK(!ch_type_widens("Decimal(10, 2)", "Decimal(14, 3)")); /* scale change rewrites values */
  CHECK(!ch_type_widens("Decimal(14, 2)", "Decimal(10, 2)"));
  CHECK(!ch_type_widens("Int64", "String"));
  CHECK(ch_type_widens("String", "String"));
}

TEST(values) {
  int rc;
  CHECK_STR(enc(CHK_BOOL, "t", &rc), "1");
  CHECK_STR(enc(CHK_BOOL, "f", &rc), "0");
  CHECK_STR(enc(CHK_INT, "-42", &rc), "-42");
  CHECK_STR(enc(CHK_INT, NULL, &rc), "\\N");
  CHECK_STR(enc(CHK_FLOAT, "NaN", &rc), "nan");
  CHECK_STR(enc(CHK_FLOAT, "-Infinity", &rc), "-inf");
  CHECK_STR(enc(CHK_FLOAT, "1.5e-07", &rc), "1.5e-07");
  CHECK_STR(enc(CHK_DECIMAL, "-12.50", &rc), "-12.50");
  enc(CHK_DECIMAL, "NaN", &rc);
  CHECK_INT(rc, -1);
  CHECK_STR(enc(CHK_DATE, "2024-02-29", &rc), "2024-02-29");
  CHECK_CONTAINS(enc(CHK_DATE, "1969-12-31", &rc), "1970-01-01..2105-12-31");
  CHECK_INT(rc, -1);
  enc(CHK_DATE, "infinity", &rc);
  CHECK_INT(rc, -1);
  CHECK_STR(enc(CHK_STRING, "a\tb\nc\\d'e", &rc), "a\\tb\\nc\\\\d'e");
}

TEST(timestamps_to_utc_seconds) {
  int rc;
  CHECK_STR(enc(CHK_DATETIME, "2024-03-01 12:00:00+02", &rc), "2024-03-01 10:00:00");
  CHECK_STR(enc(CHK_DATETIME, "2024-03-01 00:30:00-05:30", &rc), "2024-03-01 06:00:00");
  CHECK_STR(enc(CHK_DATETIME, "2024-01-01 00:00:00.999999+00", &rc), "2024-01-01 00:00:00"); /* fraction dropped */
  CHECK_STR(enc(CHK_DATETIME, "2000-02-29 23:59:59", &rc), "2000-02-29 23:59:59");           /* timestamp without tz */
  CHECK_STR(enc(CHK_DATETIME, "1970-01-01 01:00:00+01", &rc), "1970-01-01 00:00:00");
  CHECK_CONTAINS(enc(CHK_DATETIME, "1969-12-31 23:59:59+00", &rc), "range of a ClickHouse DateTime");
  CHECK_INT(rc, -1);
  enc(CHK_DATETIME, "2024-01-01 00:00:00 BC", &rc);
  CHECK_INT(rc, -1);
  enc(CHK_DATETIME, "infinity", &rc);
  CHECK_INT(rc, -1);
  /* offsets with seconds (historical zones), the last second a DateTime holds, malformed times */
  CHECK_STR(enc(CHK_DATETIME, "1900-01-01 00:00:00+00:19:32", &rc), "outside 1970-01-01 00:00:00..2106-02-07 06:28:15 UTC, the range of a ClickHouse DateTime");
  CHECK_STR(enc(CHK_DATETIME, "2001-01-01 00:19:32+00:19:32", &rc), "2001-01-01 00:00:00");
  CHECK_STR(enc(CHK_DATETIME, "2106-02-07 06:28:15+00", &rc), "2106-02-07 06:28:15");
  CHECK_CONTAINS(enc(CHK_DATETIME, "2106-02-07 06:28:16+00", &rc), "range of a ClickHouse DateTime");
  CHECK_STR(enc(CHK_DATETIME, "1999-12-31 23:59:59.5-01", &rc), "2000-01-01 00:59:59");
  enc(CHK_DATETIME, "2024-01-01 1:00:00", &rc);
  CHECK_INT(rc, -1);
  enc(CHK_DATETIME, "2024-01-01 01:00:00+", &rc);
  CHECK_INT(rc, -1);
  enc(CHK_DATETIME, "2024-01-01 01:00:00+01:00x", &rc);
  CHECK_INT(rc, -1);
}

TEST(u64_fields) {
  static od_sqlbuf b;
  od_sqlbuf_reset(&b);
  ch_put_u64(&b, 0);
  od_sqlbuf_add(&b, " ");
  ch_put_u64(&b, 1234567890123ull);
  od_sqlbuf_add(&b, " ");
  ch_put_u64(&b, 18446744073709551615ull);
  CHECK_STR(b.p, "0 1234567890123 18446744073709551615");
}

TEST(bytea_and_unescape) {
  int rc;
  const char *f = enc(CHK_BYTES, "\\x00ff0a0941", &rc);
  CHECK_INT(rc, 0);
  CHECK_INT(memcmp(f, "\\0\xff\\n\\tA", 9), 0);
  enc(CHK_BYTES, "\\x0", &rc);
  CHECK_INT(rc, -1);
  char buf[] = "a\\tb\\nc\\\\d\\'e";
  size_t n = ch_tsv_unescape(buf, strlen(buf));
  CHECK_INT(n, 9);
  CHECK_INT(memcmp(buf, "a\tb\nc\\d'e", 9), 0);
}
