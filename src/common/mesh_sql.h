/* mesh_sql.h — SQL expressions that every reader of a mesh node's versions must spell the same way:
 * the PostgreSQL mesh sink's versions and unique-clash queries and its unique-left trigger
 * (src/sinks/postgres_mesh*.c), and `odsync mesh join`, which reads a seed as its sinks would
 * (src/cli/mesh_join*.c). One definition, so a node and a joining copy never judge a version apart.
 * Owns nothing; appends to the caller's buffer; never runs SQL. */
#ifndef ODSYNC_COMMON_MESH_SQL_H
#define ODSYNC_COMMON_MESH_SQL_H

#include "common/sqlbuf.h"

/* The hlc of a local write committed at `ct` (a timestamptz expression): its commit time in µs, or
 * one tick past the highest hlc this node applied before it (rows of the clock table hlc_q, a quoted
 * name, committed before ct); NULL when ct is NULL. docs/MULTI_MASTER.md, "Clock skew". */
void od_mesh_sql_local_hlc(od_sqlbuf *b, const char *hlc_q, const char *ct);

/* A scalar subquery: per column, "<commit time µs>:<hlc>" of the local write that last changed it
 * (the xids of the column-version table cv_q, resolved at read time), "" for a column no local write
 * changed, comma-separated; NULL when the key has no row there. tbl and key are SQL expressions. */
void od_mesh_sql_colver_list(od_sqlbuf *b, const char *hlc_q, const char *cv_q, const char *tbl, const char *key);

#endif
