/* Unit tests for src/sinks/postgres_mesh_vv.c: a mesh sink's copy of its peer's version vector
 * (no server: the in-memory side; tests/integration/mesh_restart_causal.sh runs it against PostgreSQL).
 * Asserts: a stamp's vector is completed with the maximum of the vectors before it (entries it
 * lacks added, lower ones raised, higher ones kept) and raises that maximum; an "odsync.meshvv"
 * message raises it too (and one from another node is refused); only entries above what the open
 * transaction wrote are dirty and listed for the upsert; a rollback returns to what the last commit
 * wrote (entries of a rolled-back transaction never complete a replayed stamp: no overestimate),
 * a commit keeps what was written. */
#include <string.h>

#include "sinks/postgres_mesh_internal.h"
#include "test.h"

static stamp mk(const char *spec) { /* "node:lsn:ts ..." (lsn hex) */
  stamp st = {0};
  char buf[256];
  snprintf(buf, sizeof buf, "%s", spec);
  for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
    vv_entry *e = &st.vv[st.nvv++];
    char *c1 = strchr(t, ':'), *c2 = strchr(c1 + 1, ':');
    *c1 = '\0';
    snprintf(e->node, sizeof e->node, "%s", t);
    e->lsn = strtoull(c1 + 1, NULL, 16);
    e->ts = strtoll(c2 + 1, NULL, 10);
  }
  return st;
}

static long long ts_of(const vv_entry *vv, int n, const char *node) {
  const vv_entry *e = pgs_mesh_vv_find(vv, n, node);
  return e ? (long long)e->ts : -1;
}

static int vvmsg(pgs_sink *s, pgs_mesh *m, const char *text) {
  od_value vals[2] = {{.data = MESH_VV_PREFIX, .len = (uint32_t)strlen(MESH_VV_PREFIX), .kind = OD_VALUE_TEXT},
                      {.data = text, .len = (uint32_t)strlen(text), .kind = OD_VALUE_TEXT}};
  od_change c = {.op = OD_OP_MESSAGE, .newtup = {.ncolumns = 2, .values = vals}};
  CHECK(pgs_mesh_is_vv(&c));
  od_error err = {0};
  return pgs_mesh_pvv_message(s, m, &c, &err);
}

TEST(stamps_are_completed_with_the_maximum_before_them) {
  pgs_mesh m = {0};
  snprintf(m.peer, sizeof m.peer, "a");
  stamp s1 = mk("b:100:1000 c:50:500");
  pgs_mesh_pvv_stamp(&m, &s1);
  CHECK_INT(s1.nvv, 2);
  stamp s2 = mk("b:90:900"); /* a restarted reader: less than before */
  pgs_mesh_pvv_stamp(&m, &s2);
  CHECK_INT(s2.nvv, 2);
  CHECK_INT(ts_of(s2.vv, s2.nvv, "b"), 1000);
  CHECK_INT(ts_of(s2.vv, s2.nvv, "c"), 500);
  CHECK(pgs_mesh_vv_find(s2.vv, s2.nvv, "b")->lsn == 0x100);
  stamp s3 = mk("b:200:2000"); /* higher entries are kept and raise the maximum */
  pgs_mesh_pvv_stamp(&m, &s3);
  CHECK_INT(ts_of(s3.vv, s3.nvv, "b"), 2000);
  CHECK_INT(ts_of(m.pvv, m.npvv, "b"), 2000);
}

TEST(vector_messages_raise_the_maximum_and_name_the_peer) {
  pgs_sink s = {0};
  snprintf(s.where, sizeof s.where, "test");
  pgs_mesh m = {0};
  snprintf(m.peer, sizeof m.peer, "a");
  CHECK_INT(vvmsg(&s, &m, "v1 a b:1F0:3000"), OD_OK);
  stamp st = mk("");
  pgs_mesh_pvv_stamp(&m, &st);
  CHECK_INT(ts_of(st.vv, st.nvv, "b"), 3000);
  CHECK(pgs_mesh_vv_find(st.vv, st.nvv, "b")->lsn == 0x1F0);
  CHECK(vvmsg(&s, &m, "v1 zz b:1F0:3000") != OD_OK); /* from another node: a misconfigured mesh */
  CHECK(vvmsg(&s, &m, "v1 a b") != OD_OK);          /* unreadable */
}

TEST(dirty_written_committed_and_rollback) {
  pgs_mesh m = {0};
  snprintf(m.peer, sizeof m.peer, "a");
  CHECK(!pgs_mesh_pvv_dirty(&m));
  stamp s1 = mk("b:100:1000");
  pgs_mesh_pvv_stamp(&m, &s1);
  CHECK(pgs_mesh_pvv_dirty(&m));
  od_sqlbuf a[3] = {{0}};
  pgs_mesh_pvv_arrays(&m, a);
  CHECK_STR(a[0].p, "{\"b\"}");
  CHECK_STR(a[1].p, "{0/100}");
  CHECK_STR(a[2].p, "{1000}");
  for (int k = 0; k < 3; k++) od_sqlbuf_free(&a[k]);
  pgs_mesh_pvv_written(&m);
  CHECK(!pgs_mesh_pvv_dirty(&m));
  pgs_mesh_pvv_committed(&m);
  /* the next transaction raises b and adds c, then rolls back */
  stamp s2 = mk("b:200:2000 c:10:100");
  pgs_mesh_pvv_stamp(&m, &s2);
  od_sqlbuf b2[3] = {{0}};
  pgs_mesh_pvv_arrays(&m, b2);
  CHECK_STR(b2[0].p, "{\"b\",\"c\"}");
  for (int k = 0; k < 3; k++) od_sqlbuf_free(&b2[k]);
  pgs_mesh_pvv_written(&m);
  pgs_mesh_pvv_rollback(&m);
  /* the replayed stamp before s2 is completed with the committed maximum only */
  stamp s1b = mk("");
  pgs_mesh_pvv_stamp(&m, &s1b);
  CHECK_INT(s1b.nvv, 1);
  CHECK_INT(ts_of(s1b.vv, s1b.nvv, "b"), 1000);
  CHECK(!pgs_mesh_pvv_dirty(&m)); /* nothing above what the table holds */
  /* s2 again: dirty again, entries listed again */
  pgs_mesh_pvv_stamp(&m, &s2);
  CHECK(pgs_mesh_pvv_dirty(&m));
}
