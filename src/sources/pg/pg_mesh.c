/* pg_mesh.c — see pg_mesh.h. The stamp's text form (one line, parsed by the PostgreSQL sink's
 * postgres_mesh.c):
 *   v1 <node> <commit LSN, hex> <commit time, µs since 1970> [<node>:<LSN hex>:<time µs> ...]
 * Version-vector entries come from the Origin messages of transactions this node applied: the
 * origin name "odsync_<node>" names the node, the origin LSN is that node's commit LSN (the sink
 * passes it to pg_replication_origin_xact_setup) and the Begin's commit time is that node's commit
 * time (PostgreSQL decodes an applied transaction with its origin's timestamp).
 * Pointer ownership: everything here is owned by the pg_mesh; the stamp handed to the pipeline
 * points into it and is valid during the call (the pipeline copies it).
 */
#include "sources/pg/pg_mesh.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/pg/pg_position.h"

typedef struct vv_entry {
  char node[64];
  uint64_t lsn;
  int64_t ts;
} vv_entry;

struct pg_mesh {
  char node[64];
  vv_entry vv[OD_MESH_NODES_MAX * 2];
  int nvv;
  bool seen;     /* the open transaction's first change was handled */
  bool dropping; /* the open transaction carries an origin */
  uint64_t dropped;
  char stamp[64 + 40 + OD_MESH_NODES_MAX * 2 * 110];
};

pg_mesh *od_pg_mesh_new(const char *node) {
  pg_mesh *m = calloc(1, sizeof *m);
  if (m) snprintf(m->node, sizeof m->node, "%s", node);
  return m;
}

void od_pg_mesh_free(pg_mesh *m) { free(m); }

void od_pg_mesh_begin(pg_mesh *m) {
  m->seen = false;
  m->dropping = false;
}

uint64_t od_pg_mesh_dropped(const pg_mesh *m) { return m->dropped; }

static void note_origin(pg_mesh *m, const od_txn_info *t) {
  const char *name = t->origin;
  size_t pl = strlen(OD_MESH_ORIGIN_PREFIX);
  if (strncmp(name, OD_MESH_ORIGIN_PREFIX, pl) == 0) name += pl;
  int i = 0;
  while (i < m->nvv && strcmp(m->vv[i].node, name) != 0) i++;
  if (i == m->nvv) {
    if (m->nvv == (int)(sizeof m->vv / sizeof m->vv[0])) return; /* more origins than a mesh has nodes */
    snprintf(m->vv[i].node, sizeof m->vv[i].node, "%s", name);
    m->nvv++;
  }
  if (t->origin_lsn > m->vv[i].lsn) m->vv[i].lsn = t->origin_lsn;
  if (t->commit_time > m->vv[i].ts) m->vv[i].ts = t->commit_time;
}

int od_pg_mesh_change(pg_mesh *m, const od_txn_info *t, const od_change *c, const od_change_handler *out,
                      od_error *err) {
  if (t->xid == 0) return out->change(out->ctx, t, c, err); /* a non-transactional message */
  if (!m->seen) {
    m->seen = true;
    m->dropping = t->origin != NULL;
    if (m->dropping) {
      note_origin(m, t);
      m->dropped++;
    } else {
      uint64_t lsn = od_pg_lsn(&t->start);
      size_t n = (size_t)snprintf(m->stamp, sizeof m->stamp, "v1 %s %" PRIX64 " %" PRId64, m->node, lsn,
                                  t->commit_time);
      for (int i = 0; i < m->nvv && n < sizeof m->stamp; i++)
        n += (size_t)snprintf(m->stamp + n, sizeof m->stamp - n, " %s:%" PRIX64 ":%" PRId64, m->vv[i].node,
                              m->vv[i].lsn, m->vv[i].ts);
      if (n >= sizeof m->stamp)
        return OD_FAIL(err, OD_EINVAL, "mesh node %s: version vector too long for a stamp", m->node);
      od_value vals[2] = {{.data = OD_MESH_PREFIX, .len = (uint32_t)strlen(OD_MESH_PREFIX), .kind = OD_VALUE_TEXT},
                          {.data = m->stamp, .len = (uint32_t)n, .kind = OD_VALUE_TEXT}};
      od_change st = {.op = OD_OP_MESSAGE, .index = c->index, .newtup = {.ncolumns = 2, .values = vals}};
      int rc = out->change(out->ctx, t, &st, err);
      if (rc) return rc;
    }
  }
  if (m->dropping) return OD_OK;
  return out->change(out->ctx, t, c, err);
}
