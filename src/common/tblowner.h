/* tblowner.h — the words and names the SQL sinks use for table ownership (_odsync_tables), so that
 * both sinks say the same thing the same way (docs/adapters/sqlite.md and postgres.md, "Table
 * ownership"). A sink records, for every target table it creates or first writes, the pipeline and
 * the source table that own it; a second source table or pipeline landing in the same target
 * table, and a target table the sink had and lost, are refused with these messages.
 * Owns nothing (pure functions over caller buffers). Never touches a database.
 */
#ifndef ODSYNC_TBLOWNER_H
#define ODSYNC_TBLOWNER_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/error.h"

/* schema.name as PostgreSQL would print it: each part bare when it is a lower-case identifier
 * ([a-z_][a-z0-9_$]*), else in double quotes with embedded quotes doubled; public."x.y" and
 * x.y stay apart. Truncated to cap (always NUL-terminated). */
void od_owner_source_name(char *out, size_t cap, const char *schema, const char *name);

/* OD_ESCHEMA (not retriable): target table `target` already holds `owner_source` of pipeline
 * `owner_pipeline`, and `source` of `pipeline` would be written to it too. `sink` names the sink
 * ("sqlite sink /x.db"), `fix` how to send one elsewhere for this sink type. */
int od_owner_fail_taken(od_error *err, const char *sink, const char *target, const char *owner_pipeline,
                        const char *owner_source, const char *pipeline, const char *source, const char *fix);
/* OD_ESCHEMA (not retriable): `target` (source table schema.name of `pipeline`) was created by
 * odsync and is gone. `keyed`: the source table has a key, so `odsync snapshot` can re-copy it by
 * itself. `forget` is the statement that makes the sink forget the table (accept a table that
 * starts empty). */
int od_owner_fail_dropped(od_error *err, const char *sink, const char *target, const char *pipeline,
                          const char *schema, const char *name, bool keyed, const char *forget);

#endif
