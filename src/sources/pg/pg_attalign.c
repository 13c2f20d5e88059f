/* pg_attalign.c — see pg_attalign.h. Owns nothing past a call (one scratch table per call);
 * never touches libpq, the decoder or the schema history.
 *
 * Dynamic programming over (wire column i, catalog row j): best[i][j] is the best score of
 * aligning the first i wire columns with catalog rows among the first j, every wire column
 * matched; a wire column may skip catalog rows (columns dropped before the message, generated
 * columns, columns a publication's column list leaves out, columns added later). */
#include "sources/pg/pg_attalign.h"

#include <stdlib.h>
#include <string.h>

#define NEG INT64_MIN
#define EXACT (INT64_C(1) << 32)

/* A column still with the message's name and type is surely the same column (an exact match
 * dominates every other choice); any other candidate is a column renamed, retyped or dropped
 * since, and among those the lowest attnum wins (columns added after the message have higher
 * attnums than every column it had). */
static int64_t score(const pg_wire_col *w, const pg_att *c, size_t j) {
  bool exact = !c->dropped && w->name && c->name && strcmp(w->name, c->name) == 0 && w->type_oid == c->type_oid;
  return (exact ? EXACT : 0) - (int64_t)j;
}

int od_pg_align_columns(const pg_wire_col *wire, size_t n, const pg_att *cat, size_t m, int *match) {
  for (size_t i = 0; i < n; i++) match[i] = -1;
  if (n == 0 || n > m) return 0;
  size_t w = m + 1;
  int64_t *best = malloc((n + 1) * w * sizeof *best);
  if (!best) return -1;
  for (size_t j = 0; j <= m; j++) best[j] = 0;
  for (size_t i = 1; i <= n; i++) {
    best[i * w] = NEG;
    for (size_t j = 1; j <= m; j++) {
      int64_t skip = best[i * w + j - 1];
      int64_t prev = best[(i - 1) * w + j - 1];
      int64_t take = prev == NEG ? NEG : prev + score(&wire[i - 1], &cat[j - 1], j - 1);
      best[i * w + j] = take > skip ? take : skip;
    }
  }
  if (best[n * w + m] != NEG) {
    /* Walk back: take row j-1 where taking it gives the cell's value and skipping would not. */
    size_t i = n, j = m;
    while (i > 0 && j > 0) {
      int64_t prev = best[(i - 1) * w + j - 1];
      int64_t take = prev == NEG ? NEG : prev + score(&wire[i - 1], &cat[j - 1], j - 1);
      if (take != NEG && take == best[i * w + j] && take > best[i * w + j - 1]) {
        match[i - 1] = (int)(j - 1);
        i--;
      }
      j--;
    }
  }
  free(best);
  return 0;
}
