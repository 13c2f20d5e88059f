/* Unit tests for the schema-evolution planner shared by the SQL sinks (common/schema_plan.h). */
#include <stdio.h>
#include <string.h>

#include "common/schema_plan.h"
#include "test.h"

static od_relation rel_of(od_column *cols, uint16_t n) {
  return (od_relation){.oid = 1, .schema = "public", .name = "t", .ncolumns = n, .columns = cols, .version = 2};
}

static const char *steps_text(const od_schema_plan *p, const od_relation *rel) {
  static char buf[512];
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < p->nsteps && o < sizeof buf; i++) {
    const od_plan_step *s = &p->steps[i];
    if (s->kind == OD_PLAN_DROP) o += (size_t)snprintf(buf + o, sizeof buf - o, "drop #%d; ", s->tcol);
    if (s->kind == OD_PLAN_RENAME) o += (size_t)snprintf(buf + o, sizeof buf - o, "rename %s->%s; ", s->from, s->to);
    if (s->kind == OD_PLAN_ADD) o += (size_t)snprintf(buf + o, sizeof buf - o, "add %s; ", rel->columns[s->rcol].name);
  }
  return buf;
}

TEST(rename_then_a_new_column_under_the_old_name) {
  /* ALTER TABLE t RENAME a TO aa; ALTER TABLE t ADD a text: attnum 2 is aa, attnum 3 the new a. */
  od_column cols[] = {{.name = "id", .attnum = 1, .key = true}, {.name = "aa", .attnum = 2}, {.name = "a", .attnum = 3}};
  od_relation rel = rel_of(cols, 3);
  od_plan_col t[] = {{"id", 1, true}, {"a", 2, true}};
  od_schema_plan p;
  CHECK_INT(od_schema_plan_make(&rel, t, 2, false, &p), OD_OK);
  CHECK_INT(p.match[1], 1);
  CHECK_STR(steps_text(&p, &rel), "rename a->aa; add a; ");
  od_schema_plan_free(&p);
}

TEST(a_swap_of_names_goes_through_temporary_names) {
  od_column cols[] = {{.name = "b", .attnum = 1}, {.name = "a", .attnum = 2}};
  od_relation rel = rel_of(cols, 2);
  od_plan_col t[] = {{"a", 1, true}, {"b", 2, true}};
  od_schema_plan p;
  CHECK_INT(od_schema_plan_make(&rel, t, 2, false, &p), OD_OK);
  CHECK_STR(steps_text(&p, &rel),
            "rename a->_odsync_renaming_0; rename b->_odsync_renaming_1; rename _odsync_renaming_0->b; "
            "rename _odsync_renaming_1->a; ");
  CHECK_INT(p.renames, 4);
  od_schema_plan_free(&p);
}

TEST(dropped_recorded_columns_go_and_the_users_own_stay) {
  od_column cols[] = {{.name = "id", .attnum = 1, .key = true}, {.name = "v", .attnum = 3}};
  od_relation rel = rel_of(cols, 2);
  /* old (attnum 2, recorded) was dropped at the source; note is the user's own column */
  od_plan_col t[] = {{"id", 1, true}, {"old", 2, true}, {"note", 0, false}, {"v", 3, true}};
  od_schema_plan p;
  CHECK_INT(od_schema_plan_make(&rel, t, 4, false, &p), OD_OK);
  CHECK_STR(steps_text(&p, &rel), "drop #1; ");
  CHECK_INT(p.drop[1], 1);
  CHECK_INT(p.drop[2], 0);
  CHECK_INT(p.match[2], -1);
  od_schema_plan_free(&p);
}

TEST(without_attnums_columns_match_by_name_folding_case_for_sqlite) {
  od_column cols[] = {{.name = "ID", .key = true}, {.name = "Name"}, {.name = "extra"}};
  od_relation rel = rel_of(cols, 3);
  od_plan_col t[] = {{"id", 0, true}, {"name", 0, true}};
  od_schema_plan p;
  CHECK_INT(od_schema_plan_make(&rel, t, 2, true, &p), OD_OK);
  CHECK_INT(p.match[0], 0);
  CHECK_INT(p.match[1], 1);
  CHECK_STR(steps_text(&p, &rel), "rename id->ID; rename name->Name; add extra; ");
  od_schema_plan_free(&p);
  CHECK_INT(od_schema_plan_make(&rel, t, 2, false, &p), OD_OK); /* PostgreSQL: case matters */
  CHECK_STR(steps_text(&p, &rel), "add ID; add Name; add extra; ");
  od_schema_plan_free(&p);
}
