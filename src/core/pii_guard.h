/* core/pii_guard.h — `pii: { detect: warn | enforce }` of a pipeline, for one sink: checks each
 * column as it appears (a new table, a new column after a schema change) on the first `pii.sample`
 * non-NULL values that reach it, never on every row. A column that a drop_columns, mask, hash,
 * pseudonymize or null transform of that sink covers is not checked. A column found to look like PII:
 * warn logs it once and writes a "pii_unmasked" audit record; enforce fails the apply with an error
 * naming pipeline, sink, table, column and kind (not retried: the pipeline stops).
 *
 * Owns: its detector and the per-relation column state. Borrows the configs. Used by the transform
 * chain (core/transform.c) of one sink writer, from one thread. Never touches: sinks, values
 * (read only), the network.
 */
#ifndef ODSYNC_CORE_PII_GUARD_H
#define ODSYNC_CORE_PII_GUARD_H

#include <stdbool.h>

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_pii_guard od_pii_guard;
typedef struct od_pii_rel od_pii_rel; /* the state of one input relation version (owned by the guard) */

/* *out = NULL when the pipeline's pii.detect is off. */
int od_pii_guard_new(const od_pipeline_config *cfg, const od_sink_config *sk, od_pii_guard **out, od_error *err);
void od_pii_guard_free(od_pii_guard *g);

/* The state for an input relation (name-only kinds are judged here: a name/address column of
 * confidence >= 0.6 that is not covered fails under enforce). *out NULL: nothing left to check. */
int od_pii_guard_relation(od_pii_guard *g, const od_relation *in, od_pii_rel **out, od_error *err);
/* Check the values of one change (relation state from od_pii_guard_relation, not NULL). */
int od_pii_guard_change(od_pii_guard *g, od_pii_rel *r, const od_change *ch, od_error *err);

#endif
