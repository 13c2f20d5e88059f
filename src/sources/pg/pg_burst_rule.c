/* pg_burst_rule.c — see pg_burst_rule.h. */
#include "sources/pg/pg_burst_rule.h"

bool pg_burst_window_read(pg_burst_window *w, int64_t behind, uint64_t commits, int64_t threshold) {
  if (behind < threshold) {
    w->reads = 0;
    return false;
  }
  if (w->reads++ == 0) {
    w->first_behind = behind;
    w->first_commits = commits;
  }
  if (w->reads < PG_BURST_MIN_READS) return false;
  if (behind > w->first_behind && commits - w->first_commits >= PG_BURST_MIN_COMMITS) {
    w->reads = 0;
    return true;
  }
  /* not growing, or one large transaction (so far): the window goes on, up to its last read */
  if (w->reads >= PG_BURST_MAX_READS) w->reads = 0;
  return false;
}
