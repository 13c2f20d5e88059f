/* writers.h — helper sink writers of a parallel apply (causal and eventual consistency).
 *
 * Owns: n threads, each with its own sink instance (opened here through the open function the
 * apply thread passes, closed by od_writers_stop). A job is a list of changes; the writer begins a
 * sink transaction, applies them and commits WITHOUT the checkpoint (commit_data): the
 * carrier (the apply thread's own sink) commits last, with the checkpoint, once every helper has
 * committed. Borrows the change lists until od_writers_wait() returns.
 * Never touches: the queue, the source, the checkpoint.
 */
#ifndef ODSYNC_WRITERS_H
#define ODSYNC_WRITERS_H

#include <stddef.h>

#include "odsync/config.h"
#include "odsync/sink.h"

typedef struct od_writers od_writers;

int od_writers_start(od_writers **out, int (*open)(void *ctx, od_sink **out, od_error *err), void *open_ctx,
                     const od_pipeline_config *cfg, int n, od_error *err);
/* Hand job i (lists[i], counts[i]) to helper i; returns at once. Empty jobs do nothing. */
void od_writers_run(od_writers *w, od_change *const *lists, const size_t *counts);
/* Wait for every job; OD_OK, or the first helper's error (copied into err). */
int od_writers_wait(od_writers *w, od_error *err);
void od_writers_stop(od_writers *w);

#endif
