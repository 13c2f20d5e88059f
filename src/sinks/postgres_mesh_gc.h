/* sinks/postgres_mesh_gc.h — the mesh's periodic clean-up of tombstones, row versions and the
 * clock table (postgres_mesh_gc.c; private to the PostgreSQL sink). */
#ifndef ODSYNC_SINKS_POSTGRES_MESH_GC_H
#define ODSYNC_SINKS_POSTGRES_MESH_GC_H

#include "odsync/error.h"

typedef struct pgs_mesh_gc pgs_mesh_gc;

/* What the clean-up needs, all borrowed for the call (copied). */
typedef struct pgs_mesh_gc_conf {
  const char *dsn;       /* the node's connection string (secret: never printed) */
  const char *where;     /* "host:port/db" for messages */
  const char *pipeline;  /* for application_name */
  const char *node;      /* this node */
  const char *const *nodes; /* every node of the mesh (mesh_nodes; the peer at least) */
  int nnodes;
  const char *const *tables; /* mesh tables, "schema.table" */
  int ntables;
  const char *tomb_q, *ver_q, *hlc_q, *pvv_q; /* quoted side tables */
  const char *ul_q;      /* quoted _odsync_unique_left */
  int interval_s;        /* > 0 */
} pgs_mesh_gc_conf;

/* Start the clean-up thread of one mesh sink (its own connection; one run every interval_s, never
 * two at once on a node: an advisory lock). *out NULL on failure (err filled). */
int pgs_mesh_gc_start(const pgs_mesh_gc_conf *c, pgs_mesh_gc **out, od_error *err);
/* Stop and join the thread, close its connection, free everything (NULL: nothing). */
void pgs_mesh_gc_stop(pgs_mesh_gc *g);

#endif
