/* core/schema.h — the versioned schema history of one pipeline's tables, and the
 * `schema_changes` policy (apply | ignore | stop, see docs/SCHEMA.md).
 *
 * Owns: STATE_DIR/<pipeline>.schema.jsonl (one JSON line per recorded table version, appended and
 * fsynced, reloaded on open) and an immutable od_relation copy of every recorded version (the
 * "pinned" relations handed to the sink under `ignore`), alive until od_schema_close().
 * Borrows: the source's od_relation versions passed to od_schema_relation(), remembered by pointer
 * only to find their column mapping again; every relation version passes through
 * od_schema_relation() before a change uses it, so a reused address is re-registered first.
 * Never touches: the sink, the source, the pipeline's threads; it is used by one thread (the
 * reader). Never calls exit().
 */
#ifndef ODSYNC_CORE_SCHEMA_H
#define ODSYNC_CORE_SCHEMA_H

#include <stddef.h>

#include "core/arena.h"
#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_schema od_schema;

/* Opens (creates) STATE_DIR/<pipeline>.schema.jsonl: one JSON line per recorded table version
 * {"table":"public.orders","version":3,"recorded_at":"...","columns":[{"name":..,"type":..,
 * "type_oid":..,"typmod":..,"attnum":..,"key":..}],"change":"add column note text"}
 * (plus "policy", "applied", "oid", "replica_identity", "primary_key"). `policy` is an
 * enum od_schema_policy. A truncated last line (crash while appending) is cut off with a warning;
 * any other malformed line is an error naming FILE:LINE. */
int od_schema_open(const char *state_dir, const char *pipeline, int policy, od_schema **out,
                   od_error *err);
/* The same with encryption at rest (common/seal.h): with a keyring (borrowed, must outlive the
 * schema) every line is written sealed ("sealed:<base64>", bound to the file name and the line's
 * index), and read back only when it authenticates; a plain history is rewritten sealed when it is
 * first opened with a keyring. A sealed history without a keyring, a mix of sealed and plain
 * lines, or a line that does not authenticate (edited, swapped, deleted from the middle) fails
 * with an error naming FILE:LINE. kr NULL: od_schema_open. */
typedef struct od_keyring od_keyring;
int od_schema_open_sealed(const char *state_dir, const char *pipeline, int policy, const od_keyring *kr,
                          od_schema **out, od_error *err);

/* Called by the reader for every new relation version before any change uses it (rel is mutable
 * here). Compares it with the recorded versions of the same table (schema.name): the same shape
 * as a recorded version -> rel->version = that version; a new shape -> under apply/ignore appends
 * a history line (fsync) and sets rel->version = last + 1; under stop returns OD_ESCHEMA (not
 * retriable) naming the table, the difference and the policy. The first sight of a table records
 * version 1 under every policy. Under ignore, a version whose kept key column is gone fails with
 * OD_ESCHEMA (rows could not be matched). */
int od_schema_relation(od_schema *s, od_relation *rel, od_error *err);

/* The same for a relation the stream sent inside a transaction: `at` is the text of that
 * transaction's source position (od position text form; NULL: not from the stream, e.g. a
 * snapshot). Versions match only within one incarnation of the table (same relation OID): a new
 * OID under a known name is a table dropped and re-created at the source, recorded as a new
 * version with `"recreated_at": at` (under stop: OD_ESCHEMA naming the table and the way out).
 * *starts_over (may be NULL) becomes true when `at` is the transaction that first used the new
 * incarnation — now or when it was recorded (a replay after a crash): the caller must then empty
 * the sink's table before that transaction's changes of it, inside the same sink transaction.
 * A shape whose attnums disagree with every recorded version but that sends the same columns
 * (names, types, typmods, key flags) as one of them takes that version and its attnums. */
int od_schema_relation_at(od_schema *s, od_relation *rel, const char *at, bool *starts_over, od_error *err);

/* Policy ignore: the sink keeps the first shape it was given (the last version recorded while
 * changes were applied). Rewrites change `c` (already copied into a chunk arena `a`) so its tuples
 * match that pinned version: columns matched by attnum (falling back to the name), columns the
 * pinned version lacks are dropped, columns it has but the change lacks become NULL; c->rel is set
 * to the pinned od_relation (owned here, valid until od_schema_close). No-op under apply/stop and
 * for changes without a relation. */
int od_schema_map_change(od_schema *s, od_change *c, od_arena *a, od_error *err);

void od_schema_close(od_schema *s);
/* New table shapes (versions after a table's first) recorded since open; 0 for NULL. */
uint64_t od_schema_versions_recorded(const od_schema *s);

/* A human description of the difference between two versions ("column note added; column qty
 * renamed to quantity"), for logs. Returns the number of differences (0: same shape; buf then
 * holds ""). Columns match by attnum, or by name when either attnum is 0. */
int od_schema_describe_diff(const od_relation *from, const od_relation *to, char *buf, size_t size);

#endif
