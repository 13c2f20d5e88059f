/* schema_plan.h — the one schema-evolution planner of the SQL sinks: which steps make an existing
 * sink table fit a new relation version (drop, rename, add), in an order that works. Each sink
 * only checks what its dialect cannot do (keys, indexes, type changes) and writes the SQL of each
 * step.
 *
 * Rules: relation column i is table column k when both know the source's attnum and they are equal,
 * else when k has no recorded attnum and the names are equal (case-folded for SQLite). A table
 * column without a match goes only when odsync recorded it with an attnum and every relation column
 * has one (so it is known to be gone at the source); other unmatched columns are the user's and
 * stay. Renames run straight while the new name is free; what remains is a cycle, broken through
 * temporary names "_odsync_renaming_<k>". Drops come first, then renames, then adds.
 * Owns: the plan's arrays (od_schema_plan_free). Never touches a sink.
 */
#ifndef ODSYNC_COMMON_SCHEMA_PLAN_H
#define ODSYNC_COMMON_SCHEMA_PLAN_H

#include <stdbool.h>

#include "odsync/change.h"

/* A column of the sink's table, as the sink read it. */
typedef struct od_plan_col {
  const char *name; /* its name in the table now */
  int attnum;       /* the source attnum odsync recorded for it (0: unknown) */
  bool meta;        /* odsync recorded it */
} od_plan_col;

enum od_plan_kind { OD_PLAN_DROP = 1, OD_PLAN_RENAME = 2, OD_PLAN_ADD = 3 };

typedef struct od_plan_step {
  int kind;     /* enum od_plan_kind */
  int tcol;     /* DROP, RENAME: the table column */
  int rcol;     /* ADD: the relation column to add; RENAME: the relation column it is, or -1 for a
                   rename to a temporary name */
  char from[80], to[80]; /* RENAME: the names (a name may be up to 63 bytes; temporaries are short) */
} od_plan_step;

typedef struct od_schema_plan {
  int *match;          /* match[k]: the relation column table column k is, -1 none (n entries) */
  int *drop;           /* drop[k]: 1 when table column k is dropped */
  od_plan_step *steps; /* in order */
  int nsteps;
  int drops, renames, adds;
} od_schema_plan;

/* OD_OK or OD_ENOMEM. fold_case: names compare ASCII-case-insensitively (SQLite). */
int od_schema_plan_make(const od_relation *rel, const od_plan_col *t, int n, bool fold_case, od_schema_plan *out);
void od_schema_plan_free(od_schema_plan *p);

#endif
