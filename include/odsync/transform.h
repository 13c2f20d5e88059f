/* odsync/transform.h — the transform interface: a stage between the queue and a sink that may
 * rewrite a relation and its changes (drop or rename columns, change values) or drop changes
 * (row filters). Transforms are listed per pipeline (`transforms:`, for every sink) and per sink
 * (applied after the pipeline's); the core chains them in front of the sink (src/core/transform.c),
 * so the stream, the initial snapshot and incremental snapshots all reach the sink through them
 * and the sink sees only the transformed shape.
 *
 * Ownership: a transform owns the output relations it makes (alive until close(), which comes at
 * the end of a session, after every change that points at them is applied). Output values point
 * into the input change or into memory from the scratch allocator (valid for the apply call).
 * Never touches: sinks, sources, I/O. Transforms are called by one thread at a time per instance.
 */
#ifndef ODSYNC_TRANSFORM_H
#define ODSYNC_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_transform od_transform;

/* Memory for rewritten values, valid until the changes are applied (NULL on out-of-memory). */
typedef struct od_scratch {
  void *(*alloc)(struct od_scratch *s, size_t size);
  /* true when the owner of the scratch (the core's chain) lets a transform rewrite in place a values
   * array that an earlier transform of the chain copied into this scratch for the same change: then
   * a chain of rewriting transforms makes one copy per tuple, not one per transform. The owner clears
   * `owned` before each change; src/transforms/tx_util.c's tx_values_copy fills and reads it. false
   * (a zeroed scratch): every transform copies. */
  bool reuse;
  unsigned nowned;
  const od_value *owned[4];
} od_scratch;

typedef struct od_transform_ops {
  const char *type; /* the `type:` of a transforms entry */
  /* true: output values are input values moved or dropped, never rewritten, so a sink may still take
   * the source's binary value form (snapshot bulk loads). */
  bool keeps_values;
  /* Validate the section and allocate. `where` names the transform for messages. */
  int (*open)(const od_config_section *cfg, od_transform **out, od_error *err);
  /* The relation the next stage sees for `in`: *out = in when this transform leaves the table
   * alone, else a relation the transform owns (its `previous` must be the output for
   * in->previous, which the core passes first). Called once per input relation version. */
  int (*relation)(od_transform *t, const od_relation *in, const od_relation **out, od_error *err);
  /* Rewrite `in` (of a relation for which relation() made a new output `rel`) into *out: out->rel =
   * rel, tuples with rel->ncolumns values (arrays from the scratch). *keep false drops the change
   * (filters). */
  int (*change)(od_transform *t, const od_relation *rel, const od_change *in, od_change *out, od_scratch *scratch,
                bool *keep, od_error *err);
  void (*close)(od_transform *t);
} od_transform_ops;

struct od_transform {
  const od_transform_ops *ops;
};

#endif
