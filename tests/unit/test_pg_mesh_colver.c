/* Unit tests for src/sinks/postgres_mesh_colver.c: the per-column versions of a column_merge table
 * (no server: the in-memory side; tests/integration/mesh_converge_colmerge.sh and mesh_policies.sh
 * run it against PostgreSQL).
 * Asserts: a key's column versions are each column's local write when one is recorded (this node's
 * name, the resolved time and clock), else the last sink write's entry, else the row's version marked
 * weak; an applied update with its old image gives its version to exactly the columns whose value it
 * changed (not the unchanged ones, not one sent as unchanged TOAST, not one in the kept mask); an
 * insert or an update without known versions gives it to every column; a delete keeps them. */
#include <string.h>

#include "sinks/postgres_mesh_internal.h"
#include "test.h"

static od_value txt(const char *s) { return (od_value){.data = s, .len = (uint32_t)strlen(s), .kind = OD_VALUE_TEXT}; }

TEST(resolve_prefers_local_writes_then_the_side_table_then_the_row) {
  pgs_mesh m = {0};
  snprintf(m.node, sizeof m.node, "a");
  decision d = {0};
  snprintf(d.node, sizeof d.node, "c");
  d.ts = 50;
  d.hlc = 55;
  local_ver lv = {.also = "b:10:11,c:20:21,", .local = ",,30:31,"};
  CHECK(pgs_mesh_colver_resolve(&m, &d, &lv, 4));
  CHECK_STR(d.also, "b:10:11,c:20:21,a:30:31,~c:50:55");
  local_ver none = {0}; /* nothing recorded: every column the row's version, weak */
  d.node[0] = '\0';     /* a local row: this node's */
  CHECK(pgs_mesh_colver_resolve(&m, &d, &none, 2));
  CHECK_STR(d.also, "~a:50:55,~a:50:55");
  free(d.also);
}

TEST(an_update_versions_exactly_the_columns_it_changed) {
  pgs_mesh m = {0};
  snprintf(m.peer, sizeof m.peer, "b");
  stamp st = {.ts = 100, .hlc = 101};
  decision d = {0};
  d.also = strdup("a:1:1,a:2:2,c:3:3,c:4:4");
  od_value oldv[4] = {txt("1"), txt("x"), txt("y"), txt("z")};
  od_value newv[4] = {txt("1"), txt("x2"), txt("y"), {.kind = OD_VALUE_UNCHANGED}};
  od_change c = {.op = OD_OP_UPDATE, .old_kind = 'O', .oldtup = {.ncolumns = 4, .values = oldv},
                 .newtup = {.ncolumns = 4, .values = newv}};
  CHECK(pgs_mesh_colver_note(&m, &d, &c, &st, true, 0, 4));
  CHECK_STR(d.also, "a:1:1,b:100:101,c:3:3,c:4:4");
  /* a column the local version kept against this transaction keeps its version */
  newv[2] = txt("y2");
  CHECK(pgs_mesh_colver_note(&m, &d, &c, &st, true, 1u << 2, 4));
  CHECK_STR(d.also, "a:1:1,b:100:101,c:3:3,c:4:4");
  CHECK(pgs_mesh_colver_note(&m, &d, &c, &st, true, 0, 4));
  CHECK_STR(d.also, "a:1:1,b:100:101,b:100:101,c:4:4");
  /* on a tombstone (re-created row) or without the old image: every column */
  CHECK(pgs_mesh_colver_note(&m, &d, &c, &st, false, 0, 4));
  CHECK_STR(d.also, "b:100:101,b:100:101,b:100:101,b:100:101");
  c.op = OD_OP_DELETE; /* a tombstone keeps the columns' versions (a re-creation takes them up) */
  CHECK(pgs_mesh_colver_note(&m, &d, &c, &st, true, 0, 4));
  CHECK_STR(d.also, "b:100:101,b:100:101,b:100:101,b:100:101");
  c.op = OD_OP_INSERT;
  st.ts = 200;
  st.hlc = 201;
  CHECK(pgs_mesh_colver_note(&m, &d, &c, &st, true, 0, 2));
  CHECK_STR(d.also, "b:200:201,b:200:201");
  free(d.also);
}

