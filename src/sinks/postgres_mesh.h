/* sinks/postgres_mesh.h — the PostgreSQL sink's multi-master mesh mode (postgres_mesh.c; private). */
#ifndef ODSYNC_SINKS_POSTGRES_MESH_H
#define ODSYNC_SINKS_POSTGRES_MESH_H

#include "sinks/postgres_internal.h"

/* Read mesh_node, mesh_peer, mesh_policy, mesh_priority; sets s->mesh when the sink is part of a
 * mesh (schema_q: the quoted schema of the checkpoint table, where the conflict log lives). */
int pgs_mesh_config(pgs_sink *s, const od_config_section *cfg, const char *schema_q, od_error *err);
void pgs_mesh_free(pgs_sink *s);
/* On every new connection: conflict log table, replication origin, session setup. */
int pgs_mesh_session(pgs_sink *s, od_error *err);
/* A mesh sink with `mesh_session: false`: it checks its keys and writes nothing (begin refuses). */
bool pgs_mesh_checks_only(const pgs_sink *s);
/* Forget the open transaction's stamp (begin, rollback). */
void pgs_mesh_reset(pgs_sink *s);
/* After every successful commit (the persisted version vector is the written one). */
void pgs_mesh_committed(pgs_sink *s);
/* apply() of a mesh sink: the changes are copied and decided and applied later, together with the
 * open transaction's other changes (pgs_mesh_flush). */
int pgs_mesh_apply(pgs_sink *s, const od_change *changes, size_t n, od_error *err);
/* Decide and apply the changes the open transaction holds back (before its checkpoint and commit,
 * and before a savepoint is set or released); OD_OK at once when there are none. */
int pgs_mesh_flush(pgs_sink *s, od_error *err);
/* Drop them unapplied (a rollback to a savepoint). */
void pgs_mesh_discard(pgs_sink *s);

#endif
