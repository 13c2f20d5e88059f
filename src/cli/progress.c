/* progress.c — see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pipeline_metrics.h"

static bool line_open;
static int extra_lines; /* snapshot bar lines drawn above the pipeline line */

static void clear_line(void) {
  if (line_open) {
    fputs("\r\033[K", stderr);
    for (; extra_lines > 0; extra_lines--) fputs("\033[A\033[K", stderr);
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
    case OD_PIPELINE_SNAPSHOT: return "snapshot";
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

/* 410000 -> "410k" */
static const char *short_rate(double v, char *buf, size_t size) {
  if (v >= 1e6)
    snprintf(buf, size, "%.1fM", v / 1e6);
  else if (v >= 1e3)
    snprintf(buf, size, "%.0fk", v / 1e3);
  else
    snprintf(buf, size, "%.0f", v);
  return buf;
}

/* One bar line per table of a running snapshot:
 * "  public.orders [#####.....] 1,234,000/3,000,000 rows 410k rows/s ETA 4s" */
static int snapshot_lines(od_pipeline_stats *st, int64_t now, char *out, size_t cap) {
  od_snapshot_stats *ss = &st->snapshot;
  if (!atomic_load(&ss->active)) return 0;
  int n = atomic_load(&ss->ntables), lines = 0;
  size_t o = 0;
  for (int i = 0; i < n && o < cap; i++) {
    od_snapshot_table_stats *t = &ss->tables[i];
    uint64_t done = atomic_load(&t->rows_done), est = atomic_load(&t->rows_estimated);
    int64_t started = atomic_load(&t->started_us), finished = atomic_load(&t->finished_us);
    uint32_t total = atomic_load(&t->chunks_total);
    uint32_t cdone = atomic_load(&t->chunks_done) + atomic_load(&t->chunks_skipped);
    double frac = finished ? 1.0 : total ? (double)cdone / total : 0;
    if (!finished && est && (double)done / est < 1.0 && (double)done / est > frac) frac = (double)done / est;
    char bar[11];
    for (int b = 0; b < 10; b++) bar[b] = b < (int)(frac * 10 + 1e-9) ? '#' : '.';
    bar[10] = '\0';
    double secs = started ? ((finished ? finished : now) - started) / 1e6 : 0;
    double rate = secs > 0 ? done / secs : 0;
    char d[32], e[32], r[32], eta[32] = "";
    if (finished)
      snprintf(eta, sizeof eta, "done");
    else if (rate > 0 && est > done)
      snprintf(eta, sizeof eta, "ETA %.0fs", (est - done) / rate);
    o += (size_t)snprintf(out + o, cap - o, "  %s [%s] %s/%s rows %s rows/s %s\n", t->name, bar,
                          grouped(done, d, sizeof d), grouped(est > done ? est : done, e, sizeof e),
                          short_rate(rate, r, sizeof r), eta);
    lines++;
  }
  return o < cap ? lines : 0;
}

void od_progress_tick(od_progress *p) {
  int64_t now = od_mono_us();
  double secs = (now - p->last_at) / 1e6;
  if (secs <= 0) secs = 1e-6;
  char line[1024];
  size_t o = 0;
  for (int i = 0; i < p->npipelines; i++) {
    od_pipeline_stats *st = od_pipeline_get_stats(p->pipelines[i]);
    od_pipeline_metrics *pm = st->metrics; /* the metrics registry's view, as /status shows it */
    uint64_t changes = pm ? od_pm_min_changes(pm) : od_stats_changes_applied(st);
    double rate = (double)(changes - p->last_changes[i]) / secs;
    p->last_changes[i] = changes;
    uint64_t queued = atomic_load(&st->queued_rows);
    int64_t lag_ms = pm ? (int64_t)(od_pm_max_lag_seconds(pm) * 1000) : od_stats_last_lag_us(st) / 1000;
    /* Caught up and quiet: the lag of the last batch is history, not current lag. */
    if (!pm && queued == 0 && rate == 0) lag_ms = 0;
    char total[32], txns[32];
    od_pos durable = od_pos_cell_get(&st->durable);
    char at[OD_POS_TEXT_MAX];
    o += (size_t)snprintf(line + o, sizeof line - o,
                          "%s%s [%s] %.0f changes/s | lag %lld ms | %s changes in %s txns | at %s",
                          i ? "  ||  " : "", od_pipeline_name(p->pipelines[i]),
                          state_name(atomic_load(&st->state)), rate, (long long)lag_ms,
                          grouped(changes, total, sizeof total),
                          grouped(od_stats_txns_applied(st), txns, sizeof txns),
                          od_pos_display(&durable, at, sizeof at));
    if (o < sizeof line && atomic_load(&st->isnap_active)) {
      char rows[32];
      o += (size_t)snprintf(line + o, sizeof line - o, " | re-copying: %s rows in %llu chunks",
                            grouped(atomic_load(&st->isnap_rows), rows, sizeof rows),
                            (unsigned long long)atomic_load(&st->isnap_chunks));
    }
    if (o >= sizeof line) break;
  }
  p->last_at = now;
  if (p->tty) {
    char bars[8192];
    size_t o = 0;
    int nbars = 0;
    for (int i = 0; i < p->npipelines && o < sizeof bars; i++) {
      int n = snapshot_lines(od_pipeline_get_stats(p->pipelines[i]), now, bars + o, sizeof bars - o);
      nbars += n;
      o += strlen(bars + o);
    }
    bars[o < sizeof bars ? o : sizeof bars - 1] = '\0';
    clear_line();
    fprintf(stderr, "\r\033[K%s%s", bars, line);
    extra_lines = nbars;
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
