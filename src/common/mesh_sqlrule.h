/* mesh_sqlrule.h — SQL-expression business rules of a mesh ("schema.table: sql: EXPR" in mesh.rules,
 * docs/MULTI_MASTER.md "Business rules"): how such a rule is spelled, the one statement that
 * evaluates a table's rules on pairs of rows (the PostgreSQL mesh sink, src/sinks/postgres_mesh_sqlrule.c)
 * and the check that refuses a bad expression (the sink at session start and `odsync check`,
 * src/cli/mesh_cmd.c), so both judge the same text the same way.
 * Owns nothing; appends to the caller's buffer; the check runs its statements on the caller's
 * connection outside any transaction and leaves nothing behind (its probe objects are rolled back).
 */
#ifndef ODSYNC_COMMON_MESH_SQLRULE_H
#define ODSYNC_COMMON_MESH_SQLRULE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/sqlbuf.h"

/* Whether `rule` is an SQL rule, "schema.table: sql: EXPR": the table ("schema.table", exactly one
 * dot) into tbl (cap bytes) and *expr pointing at EXPR inside rule (leading blanks skipped). */
bool od_mesh_sqlrule_split(const char *rule, char *tbl, size_t cap, const char **expr);

/* The statement evaluating exprs[0..n) of table tq (quoted "schema"."table", key columns keys[0..nkey),
 * unquoted) on pairs: parameters $1 int4[] (a number per pair), $2 text[] (the remote row as a JSON
 * object of texts; for a remote delete its key), $3 text[] (the local row likewise, or NULL: the
 * table's row of the remote row's key), $4 text[] ('r': the remote write is a delete, `remote` is
 * NULL; 'l': the local version is a delete, `local` is NULL; NULL: both are rows). Every pair gives
 * two result rows, (number, swapped, one boolean per expression): swapped false evaluates with local
 * and remote as given, swapped true with the two exchanged. A pair whose local row (not deleted) is
 * not found gives none. */
void od_mesh_sqlrule_sql(od_sqlbuf *b, const char *tq, char *const *keys, int nkey, const char *const *exprs, int n);

/* Whether expr holds a ';' outside its string literals ('...', E'...', $tag$...$tag$), quoted
 * identifiers and comments (-- and nested block comments): one expression has none there. A
 * literal left open hides the rest (the server then refuses the expression). */
bool od_mesh_sqlrule_bare_semicolon(const char *expr);

/* Check one SQL rule against table `table` ("schema.table") on connection c (no transaction open):
 * no ';' outside a literal (od_mesh_sqlrule_bare_semicolon) nor "$odsync$" (the probe's quote), then
 * the expression must prepare in the statement above, yield one boolean and use only immutable
 * functions and no subquery (PostgreSQL's own index-expression test on an inlined probe function:
 * every node must decide the same). 0: accepted; -1: refused, msg says why; -2: could not check
 * (connection trouble), msg says what failed. */
int od_mesh_sqlrule_check(PGconn *c, const char *table, const char *expr, char *msg, size_t cap);

#endif
