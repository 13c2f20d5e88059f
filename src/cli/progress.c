/* progress.c — see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static bool line_open;

static void clear_line(void) {
  if (line_open) {
    fputs("\r\033[K", stderr);
    line_open = false;
  }
}

int od_progress_init(od_progress *p, od_pipeline **pipelines, int n, bool tty) {
  memset(p, 0, sizeof *p);
  p->tty = tty;
  p->npipelines = n;
  p->pipelines = pipelines;
  p->last_changes = calloc((size_t)n, sizeof *p->last_changes);
  if (!p->last_changes) return -1;
  p->last_at = od_mono_us();
  if (tty) od_log_set_line_clearer(clear_line);
  return 0;
}

static const char *state_name(int state) {
  switch (state) {
    case OD_PIPELINE_STARTING: return "starting";
    case OD_PIPELINE_STREAMING: return "streaming";
    case OD_PIPELINE_RETRYING: return "retrying";
    case OD_PIPELINE_STOPPED: return "stopped";
    default: return "failed";
  }
}

/* 1234567 -> "1,234,567" */
static const char *grouped(uint64_t v, char *buf, size_t size) {
  char raw[32];
  int n = snprintf(raw, sizeof raw, "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n && o + 2 < size; i++) {
    if (i && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = raw[i];
  }
  buf[o] = '\0';
  return buf;
}

void od_progress_tick(od_progress *p) {
  int64_t now = od_mono_us();
  double secs = (now - p->last_at) / 1e6;
  if (secs <= 0) secs = 1e-6;
  char line[1024];
  size_t o = 0;
  for (int i = 0; i < p->npipelines; i++) {
    od_pipeline_stats *st = od_pipeline_get_stats(p->pipelines[i]);
    uint64_t changes = atomic_load(&st->changes_applied);
    double rate = (double)(changes - p->last_changes[i]) / secs;
    p->last_changes[i] = changes;
    uint64_t queued = atomic_load(&st->queued_rows);
    int64_t lag_ms = atomic_load(&st->last_lag_us) / 1000;
    /* Caught up and quiet: the lag of the last batch is history, not current lag. */
    if (queued == 0 && rate == 0) lag_ms = 0;
    char total[32], txns[32];
    uint64_t lsn = atomic_load(&st->durable_lsn);
    o += (size_t)snprintf(line + o, sizeof line - o,
                          "%s%s [%s] %.0f changes/s | lag %lld ms | %s changes in %s txns | at " OD_LSN_FMT,
                          i ? "  ||  " : "", od_pipeline_name(p->pipelines[i]),
                          state_name(atomic_load(&st->state)), rate, (long long)lag_ms,
                          grouped(changes, total, sizeof total),
                          grouped(atomic_load(&st->txns_applied), txns, sizeof txns), OD_LSN_ARGS(lsn));
    if (o >= sizeof line) break;
  }
  p->last_at = now;
  if (p->tty) {
    fprintf(stderr, "\r\033[K%s", line);
    line_open = true;
  } else {
    fprintf(stderr, "progress: %s\n", line);
  }
  fflush(stderr);
}

void od_progress_done(od_progress *p) {
  if (p->tty && line_open) {
    fputc('\n', stderr);
    line_open = false;
  }
}

void od_progress_free(od_progress *p) {
  od_log_set_line_clearer(NULL);
  free(p->last_changes);
  p->last_changes = NULL;
}
