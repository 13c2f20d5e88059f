/* Unit tests for od_pg_align_columns (src/sources/pg/pg_attalign.c): which of today's catalog
 * columns each column of an older Relation message is.
 * Asserts: an up-to-date message matches by name; a column renamed since and a new column added
 * under its old name are told apart (also with the same type when another column pins the order,
 * and with the old type when it differs); a column dropped since takes the dropped attnum; a
 * retyped column keeps its attnum; columns skipped by the message (generated, later) are skipped;
 * a message wider than the catalog has no alignment (all -1). */
#include "sources/pg/pg_attalign.h"
#include "test.h"

#define ATT(n, oid, num) {.name = (n), .type_oid = (oid), .attnum = (num)}
#define DROPPED(num) {.name = "........pg.dropped........", .type_oid = 0, .attnum = (num), .dropped = true}

TEST(up_to_date_message_matches_by_name) {
  pg_att cat[] = {ATT("id", 23, 1), ATT("a", 23, 2), ATT("b", 25, 3)};
  pg_wire_col w[] = {{"id", 23}, {"a", 23}, {"b", 25}};
  int m[3];
  CHECK_INT(od_pg_align_columns(w, 3, cat, 3, m), 0);
  CHECK_INT(m[0], 0);
  CHECK_INT(m[1], 1);
  CHECK_INT(m[2], 2);
}

TEST(renamed_column_and_new_column_under_the_old_name) {
  /* a int renamed to aa, then a text added: the old message (id, a int, b) */
  pg_att cat[] = {ATT("id", 23, 1), ATT("aa", 23, 2), ATT("b", 25, 3), ATT("a", 25, 4)};
  pg_wire_col w[] = {{"id", 23}, {"a", 23}, {"b", 25}};
  int m[3];
  CHECK_INT(od_pg_align_columns(w, 3, cat, 4, m), 0);
  CHECK_INT(cat[m[1]].attnum, 2);
  CHECK_INT(cat[m[2]].attnum, 3);
  /* the same with the new a of the same type: b pins the order */
  pg_att cat2[] = {ATT("id", 23, 1), ATT("aa", 23, 2), ATT("b", 25, 3), ATT("a", 23, 4)};
  CHECK_INT(od_pg_align_columns(w, 3, cat2, 4, m), 0);
  CHECK_INT(cat2[m[1]].attnum, 2);
  /* the message after the rename and before the add */
  pg_wire_col w2[] = {{"id", 23}, {"aa", 23}, {"b", 25}};
  CHECK_INT(od_pg_align_columns(w2, 3, cat, 4, m), 0);
  CHECK_INT(cat[m[1]].attnum, 2);
  CHECK_INT(cat[m[2]].attnum, 3);
}

TEST(dropped_retyped_and_skipped_columns) {
  /* b dropped since, c retyped int -> text since, g generated (never sent), d added later */
  pg_att cat[] = {ATT("a", 23, 1), DROPPED(2), ATT("c", 25, 3), ATT("g", 23, 4), ATT("e", 23, 5), ATT("d", 23, 6)};
  pg_wire_col w[] = {{"a", 23}, {"b", 23}, {"c", 23}, {"e", 23}};
  int m[4];
  CHECK_INT(od_pg_align_columns(w, 4, cat, 6, m), 0);
  CHECK_INT(cat[m[0]].attnum, 1);
  CHECK_INT(cat[m[1]].attnum, 2);
  CHECK_INT(cat[m[2]].attnum, 3);
  CHECK_INT(cat[m[3]].attnum, 5);
}

TEST(no_alignment_when_the_message_is_wider) {
  pg_att cat[] = {ATT("a", 23, 1)};
  pg_wire_col w[] = {{"a", 23}, {"b", 23}};
  int m[2] = {7, 7};
  CHECK_INT(od_pg_align_columns(w, 2, cat, 1, m), 0);
  CHECK_INT(m[0], -1);
  CHECK_INT(m[1], -1);
  CHECK_INT(od_pg_align_columns(w, 2, NULL, 0, m), 0);
  CHECK_INT(m[0], -1);
}
