/* pg_mesh.h — the PostgreSQL source's side of a multi-master mesh (docs/MULTI_MASTER.md).
 *
 * Owns: the version vector of the stream it reads (per other node: the highest commit LSN and
 * commit timestamp of that node's transactions this node had applied, in this node's commit order),
 * the hybrid logical clock's running maximum (the highest hlc applied on this node: from the stream,
 * and from the _odsync_hlc rows seeded at the stream's start) and the stamp text of the open
 * transaction.
 * Does: drops every transaction that carries a replication origin (applied by odsync from another
 * node: forwarding it would echo it back, PostgreSQL 15's pgoutput has no origin filter) after
 * adding it to the version vector; puts a stamp message (prefix "odsync.mesh") in front of the
 * first change of every local transaction: node, commit LSN, commit time, hlc and the version vector;
 * at the commit of a dropped transaction that grew the vector, hands the pipeline one message
 * (prefix "odsync.meshvv") with the vector, so the sink persists it with the checkpoint that passes
 * that transaction (docs/MULTI_MASTER.md, "Version vectors across restarts").
 * Never touches: sockets, libpq, the pipeline's queue, sinks.
 */
#ifndef ODSYNC_PG_MESH_H
#define ODSYNC_PG_MESH_H

#include "odsync/change.h"
#include "odsync/error.h"
#include "odsync/source.h"

#define OD_MESH_PREFIX "odsync.mesh"
#define OD_MESH_HLC_PREFIX "odsync.hlc" /* written by a mesh sink in every transaction it applies */
#define OD_MESH_VV_PREFIX "odsync.meshvv" /* a dropped transaction's version-vector update (pg_mesh.c) */
#define OD_MESH_ORIGIN_PREFIX "odsync_"
#define OD_MESH_NODES_MAX 8

typedef struct pg_mesh pg_mesh;

/* node: this node's mesh name (copied). NULL on out-of-memory. */
pg_mesh *od_pg_mesh_new(const char *node);
void od_pg_mesh_free(pg_mesh *m);
/* Call at every Begin. */
void od_pg_mesh_begin(pg_mesh *m);
/* Filter one change: returns OD_OK without calling `out` for a transaction with an origin; else
 * calls out->change with the stamp first (once per transaction), then with c. */
int od_pg_mesh_change(pg_mesh *m, const od_txn_info *t, const od_change *c, const od_change_handler *out,
                      od_error *err);
/* At every Commit, before the pipeline's commit: a dropped transaction that grew the version vector
 * becomes a transaction holding one "odsync.meshvv" message ("v1 <node> <node>:<LSN hex>:<time µs>
 * ..."); any other transaction: nothing. */
int od_pg_mesh_commit(pg_mesh *m, const od_txn_info *t, const od_change_handler *out, od_error *err);
/* At every stream start, before the first transaction: the persisted clock of this node, the rows
 * of _odsync_hlc (each: the commit time on this node of a transaction a mesh sink applied, and the
 * highest hlc it applied; arrays copied). Forgets the previous stream's maximum. */
int od_pg_mesh_seed(pg_mesh *m, const int64_t *at, const int64_t *hlc, size_t n, od_error *err);
/* The hlc of a local transaction committed at commit_time after what the stream showed so far. */
int64_t od_pg_mesh_hlc(const pg_mesh *m, int64_t commit_time);
/* The commit time to report for t at its commit: a dropped transaction a mesh sink applied has the
 * origin timestamp 0 (PostgreSQL's epoch; its commit timestamp on this node is then this node's own);
 * its message's latest author commit time stands in for it (lag metrics). Else t's. */
int64_t od_pg_mesh_commit_time(const pg_mesh *m, const od_txn_info *t);
/* Transactions dropped because they carried an origin (for logs and tests). */
uint64_t od_pg_mesh_dropped(const pg_mesh *m);
/* The echo: row changes of dropped transactions that reached odsync (0 when the slot's plugin,
 * odsync_pgoutput, leaves them out: pg_plugin.h) and their values' bytes, since od_pg_mesh_new. */
void od_pg_mesh_echo(const pg_mesh *m, uint64_t *rows, uint64_t *bytes);

#endif
