/* core/poison.h — poison rows: a change the sink rejects every time (a constraint, a value out of
 * range, a trigger that raises) must not stop the pipeline forever nor be lost silently.
 *
 * The rule (docs/DEAD_LETTERS.md): when a sink's apply fails with a row-level rejection
 * (core/error_class.h), the apply notes the last source transaction it had taken and fails; the
 * supervisor restarts the session at once, and the new session applies every transaction up to
 * that one change by change, each under a savepoint (a batch that went through the parallel or
 * the set-based paths is re-run on this serial path). A change rejected again is tried until it
 * was tried poison_attempts times (the failed batch counts as one), then either becomes a dead
 * letter written into the sink's own transaction — so the rest of that source transaction is
 * applied exactly once and the dead letter commits atomically with it and the checkpoint — or,
 * under on_poison: stop, stops the pipeline with an error naming the table, the key and the
 * position. Only sinks with OD_SINK_DEAD_LETTERS (savepoints) take part; for the others a row
 * rejection is fatal, as before.
 * Owns: the isolation state of one sink of a pipeline (lives as long as the pipeline, so it
 * survives the restart). Borrows the sink for the calls. Never touches: the queue, the source,
 * the checkpoint.
 */
#ifndef ODSYNC_CORE_POISON_H
#define ODSYNC_CORE_POISON_H

#include <stdatomic.h>
#include <stdbool.h>

#include "odsync/config.h"
#include "odsync/sink.h"

typedef struct od_poison {
  int policy;             /* enum od_poison_policy (odsync/config.h) */
  int attempts;           /* poison_attempts */
  char name[128];         /* the checkpoint name: "<pipeline>" or "<pipeline>.<sink>" */
  char pipeline[64], sink[64]; /* for the audit log */
  char first_pos[OD_POS_TEXT_MAX + 16]; /* position of the first dead letter of the open transaction */
  od_pos isolate_until;   /* transactions starting at or before it go change by change */
  od_pos last_seen;       /* start of the last transaction the apply took in this session */
  bool restart;           /* the last session ended on a row rejection it could isolate */
  bool in_batch;          /* the open sink transaction holds isolated work: commit it on its own */
  uint64_t pending;       /* dead letters written in the open sink transaction */
  _Atomic uint64_t *dead_letters_total; /* counters to bump (od_sink_stats), may be NULL */
  _Atomic int64_t *dead_letters;
  const struct od_keyring *kr; /* borrowed, may be NULL: dead letters' row and error are sealed with it (core/dl_seal.h) */
} od_poison;

void od_poison_init(od_poison *p, const od_pipeline_config *cfg, const char *sink, const char *name);
/* Whether ch is to be applied change by change. */
bool od_poison_isolating(const od_poison *p, const od_change *ch);
/* Apply ch[0, n) inside the open sink transaction: the isolated changes one by one under a
 * savepoint (poison rows become dead letters or stop the pipeline), the rest in one call.
 * *dead counts the changes turned into dead letters. */
int od_poison_apply(od_poison *p, od_sink *s, const od_change *ch, size_t n, size_t *dead, od_error *err);
/* The apply failed with err after taking transactions up to p->last_seen: true when it is a row
 * rejection a new session can isolate (isolate_until moves forward; the caller restarts at once).
 * A rejection met while isolating already cannot be narrowed further: false (it stops). */
bool od_poison_on_failure(od_poison *p, od_error *err);
/* The open sink transaction committed (its dead letters count, and an audit record "dead_letters"
 * names how many and the first one's position) or was rolled back (they do not). */
void od_poison_committed(od_poison *p);
void od_poison_discarded(od_poison *p);

#endif
