/* progress.h — the live one-line progress display of `odsync run`.
 * Owns: the rate computation between two samples. Reads pipeline stats; never changes them. */
#ifndef ODSYNC_PROGRESS_H
#define ODSYNC_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/pipeline.h"

typedef struct od_progress {
  bool tty;          /* rewrite one line with \r; otherwise print a line per interval */
  int npipelines;
  od_pipeline **pipelines;
  uint64_t *last_changes; /* per pipeline, at the previous sample (owned) */
  int64_t last_at;
} od_progress;

int od_progress_init(od_progress *p, od_pipeline **pipelines, int n, bool tty);
/* Print one sample to stderr. */
void od_progress_tick(od_progress *p);
/* Finish the line (newline after the last \r line). */
void od_progress_done(od_progress *p);
void od_progress_free(od_progress *p);

#endif
