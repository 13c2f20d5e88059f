/* filter_expr.h — the row filter's expression language (docs/TRANSFORMS.md): parsing once at
 * config time, binding to each relation version (column names to positions and types), and
 * evaluating a tuple without allocating.
 *
 *   expr    := expr OR expr | expr AND expr | NOT expr | '(' expr ')' | pred
 *   pred    := operand cmp operand | operand [NOT] IN '(' operand {',' operand} ')'
 *            | operand IS [NOT] NULL | operand [NOT] LIKE 'pattern'
 *   cmp     := = | != | <> | < | <= | > | >=
 *   operand := column | "Quoted Column" | 'string' | number | TRUE | FALSE | NULL
 *
 * SQL's three-valued logic: a comparison with NULL is unknown, and a row passes only when the whole
 * expression is true. Keywords are case-insensitive; unquoted column names are lower-cased.
 * Owns: the parsed expression (fx_free) and each binding (fx_bound_free). Never touches: values
 * beyond reading them.
 */
#ifndef ODSYNC_TRANSFORMS_FILTER_EXPR_H
#define ODSYNC_TRANSFORMS_FILTER_EXPR_H

#include <stdbool.h>

#include "odsync/change.h"
#include "odsync/error.h"

typedef struct fx_expr fx_expr;
typedef struct fx_bound fx_bound;

enum fx_result { FX_FALSE = 0, FX_TRUE = 1, FX_UNKNOWN = 2, FX_CANT = 3 };

/* Parse `text`. On error the message reads "at character N: what was expected, what was found"
 * (N counted from 1). */
int fx_parse(const char *text, fx_expr **out, od_error *err);
void fx_free(fx_expr *e);
/* Resolve the expression's columns in `rel`; a missing column is an error naming it and the table. */
int fx_bind(const fx_expr *e, const od_relation *rel, fx_bound **out, od_error *err);
void fx_bound_free(fx_bound *b);
/* Every column the expression reads is a key column of the bound relation. */
bool fx_bound_key_only(const fx_bound *b);
/* Evaluate over tuple t (one value per column of the bound relation). An unchanged (TOAST) value is
 * taken from `fallback` (may be NULL) when it has it; FX_CANT when a value the expression reads is
 * unchanged with no fallback, or not in text form. FX_UNKNOWN is SQL's unknown (a row with it does
 * not pass). */
enum fx_result fx_eval(const fx_expr *e, const fx_bound *b, const od_tuple *t, const od_tuple *fallback);

#endif
