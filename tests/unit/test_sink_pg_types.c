/* Unit tests for the PostgreSQL sink's type-change rule (pgs_type_widens, postgres_schema.c):
 * which source type changes the sink carries with ALTER COLUMN TYPE, and which stop. */
#include "sinks/postgres_internal.h"
#include "test.h"

enum { INT2 = 21, INT4 = 23, INT8 = 20, TEXT = 25, VARCHAR = 1043, NUMERIC = 1700, TIMESTAMP = 1114,
       TIMESTAMPTZ = 1184, INTERVAL = 1186, BPCHAR = 1042, FLOAT8 = 701 };
#define NUM(p, s) ((((p) << 16) | (s)) + 4)
#define VC(n) ((n) + 4)

TEST(integer_widening_only) {
  CHECK(pgs_type_widens(INT2, -1, INT4, -1));
  CHECK(pgs_type_widens(INT4, -1, INT8, -1));
  CHECK(pgs_type_widens(INT2, -1, INT8, -1));
  CHECK(!pgs_type_widens(INT8, -1, INT4, -1));
  CHECK(!pgs_type_widens(INT4, -1, NUMERIC, -1));
  CHECK(!pgs_type_widens(INT4, -1, TEXT, -1));
  CHECK(!pgs_type_widens(TEXT, -1, INT4, -1));
}

TEST(varchar_to_longer_or_text) {
  CHECK(pgs_type_widens(VARCHAR, VC(10), TEXT, -1));
  CHECK(pgs_type_widens(VARCHAR, VC(10), VARCHAR, VC(20)));
  CHECK(pgs_type_widens(VARCHAR, VC(10), VARCHAR, -1));
  CHECK(!pgs_type_widens(VARCHAR, VC(20), VARCHAR, VC(10)));
  CHECK(!pgs_type_widens(TEXT, -1, VARCHAR, VC(10)));
  CHECK(!pgs_type_widens(BPCHAR, VC(5), BPCHAR, VC(10))); /* padding changes the text */
}

TEST(numeric_precision_up_same_scale) {
  CHECK(pgs_type_widens(NUMERIC, NUM(8, 2), NUMERIC, NUM(12, 2)));
  CHECK(pgs_type_widens(NUMERIC, NUM(8, 2), NUMERIC, -1));
  CHECK(!pgs_type_widens(NUMERIC, NUM(8, 2), NUMERIC, NUM(12, 4)));
  CHECK(!pgs_type_widens(NUMERIC, NUM(12, 2), NUMERIC, NUM(8, 2)));
  CHECK(!pgs_type_widens(NUMERIC, -1, NUMERIC, NUM(12, 2)));
  CHECK(!pgs_type_widens(NUMERIC, NUM(8, 2), FLOAT8, -1));
}

TEST(time_precision_up) {
  CHECK(pgs_type_widens(TIMESTAMP, 3, TIMESTAMP, 6));
  CHECK(pgs_type_widens(TIMESTAMPTZ, 0, TIMESTAMPTZ, -1));
  CHECK(!pgs_type_widens(TIMESTAMP, 6, TIMESTAMP, 3));
  CHECK(!pgs_type_widens(TIMESTAMP, -1, TIMESTAMPTZ, -1)); /* the zone changes the value */
  CHECK(!pgs_type_widens(INTERVAL, -1, INTERVAL, 3));
}

TEST(user_types_and_equal_types) {
  CHECK(pgs_type_widens(16500, -1, 16600, -1)); /* both stored as text on the target */
  CHECK(!pgs_type_widens(16500, -1, TEXT, -1));
  CHECK(!pgs_type_widens(TEXT, -1, 16500, -1));
  CHECK(pgs_type_widens(TEXT, -1, TEXT, -1));
}
