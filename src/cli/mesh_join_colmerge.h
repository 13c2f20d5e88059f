/* mesh_join_colmerge.h — what `odsync mesh join` (mesh_join.c) copies for column_merge tables beyond
 * row versions: every column's version as the seed's sinks would read it, and the tombstones' last
 * rows (docs/MULTI_MASTER.md, "Adding a node to a running mesh" and "column_merge").
 * Owns nothing: the SQL is appended to the caller's buffer; pointers point into the caller's config. */
#ifndef ODSYNC_MESH_JOIN_COLMERGE_H
#define ODSYNC_MESH_JOIN_COLMERGE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/sqlbuf.h"
#include "odsync/config.h"

/* Is `target` ("schema.table" as the catalog names it) a column_merge table of pipeline p's sink
 * (mesh_table_policies, else mesh_policy — as the sink picks a table's policy)? */
bool mesh_join_colmerge_table(const od_pipeline_config *p, const char *target);

/* Has pipeline p's sink any column_merge table (mesh-wide or per table)? */
bool mesh_join_colmerge_any(const od_pipeline_config *p);

/* Append ", <expr> FROM x LEFT JOIN public._odsync_versions v ON ..." to b: the last column of the
 * seed's versions query, `also`, and that query's FROM clause: x is its relation of keys (k: the
 * key's text, rid: its xmin's replication origin), v the seed's _odsync_versions row of the key.
 * merge: per column, the seed's local write recorded in public._odsync_colver as
 * "<seed>:<commit time>:<hlc>" (resolved as the seed's sinks resolve it, postgres_mesh_colver.c),
 * else v.also's entry; !merge: what the seed's sinks read for a table of another policy. seed_lit and tbl_lit are SQL literals (the seed's name, the table). */
void mesh_join_also_sql(od_sqlbuf *b, bool merge, const char *seed_lit, const char *tbl_lit);

/* The seed holds what the copy of column_merge tables reads (public._odsync_colver,
 * _odsync_versions.also, _odsync_tombstones.img)? 0: yes (*img tells whether the tombstones have
 * img, also when `merge` is false); 1: a query failed; 2: something is missing (msg says what). */
int mesh_join_colmerge_check(PGconn *seed, bool merge, bool *img, char *msg, size_t cap);

#endif
