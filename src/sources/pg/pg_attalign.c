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

#define NEG (-1000000000)

static int score(const pg_wire_col *w, const pg_att *c) {
  if (c->dropped) return 1; /* plausible: dropped after the message was written */
  bool name = w->name && c->name && strcmp(w->name, c->name) == 0;
  bool type = w->type_oid == c->type_oid;
  if (name && type) return 4;
  if (name) return 2;
  if (type) return 1;
  return 0; /* renamed and retyped since: possible, least likely */
}

int od_pg_align_columns(const pg_wire_col *wire, size_t n, const pg_att *cat, size_t m, int *match) {
  for (size_t i = 0; i < n; i++) match[i] = -1;
  if (n == 0 || n > m) return 0;
  size_t w = m + 1;
  int *best = malloc((n + 1) * w * sizeof *best);
  if (!best) return -1;
  for (size_t j = 0; j <= m; j++) best[j] = 0;
  for (size_t i = 1; i <= n; i++) {
    best[i * w] = NEG;
    for (size_t j = 1; j <= m; j++) {
      int skip = best[i * w + j - 1];
      int prev = best[(i - 1) * w + j - 1];
      int take = prev == NEG ? NEG : prev + score(&wire[i - 1], &cat[j - 1]);
      best[i * w + j] = take > skip ? take : skip;
    }
  }
  if (best[n * w + m] != NEG) {
    /* Walk back: where taking row j-1 gives the cell's value (and is no worse than skipping),
     * take it, so ties go to the later attnum only when skipping is strictly better. */
    size_t i = n, j = m;
    while (i > 0 && j > 0) {
      int prev = best[(i - 1) * w + j - 1];
      int take = prev == NEG ? NEG : prev + score(&wire[i - 1], &cat[j - 1]);
      if (take != NEG && take == best[i * w + j] && take >= best[i * w + j - 1]) {
        match[i - 1] = (int)(j - 1);
        i--;
      }
      j--;
    }
  }
  free(best);
  return 0;
}
