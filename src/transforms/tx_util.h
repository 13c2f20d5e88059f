/* tx_util.h — helpers shared by the transforms in this folder: which tables a transform applies to
 * (`tables:`), output relation versions made from input versions (with their `previous` chain), and
 * copying tuples into the scratch.
 *
 * Owns: each tx_outrel and its column array (names and type names borrowed from the input relation
 * or from the transform's config unless the transform replaces them), freed by tx_outrels_free.
 * `data` is the transform's per-version state, freed through the callback it passes.
 * Never touches: sinks, sources, I/O.
 */
#ifndef ODSYNC_TRANSFORMS_TX_UTIL_H
#define ODSYNC_TRANSFORMS_TX_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/transform.h"

typedef struct tx_outrel {
  const od_relation *in;
  od_relation rel; /* a copy of *in with its own column array; rel.previous = output for in->previous */
  void *data;      /* the transform's state for this version */
} tx_outrel;

typedef struct tx_outrels {
  tx_outrel **v;
  size_t n, cap;
  const tx_outrel *last; /* the last one found (changes come in runs of one relation) */
} tx_outrels;

/* `tables:` is empty (every table) or names the table as schema.name or name (any schema). */
bool tx_table_matches(char *const *tables, int n, const od_relation *r);
/* Index of s in list, or -1. */
int tx_list_index(char *const *list, int n, const char *s);
/* A new output version for `in` (columns copied), appended to o. */
int tx_outrel_new(tx_outrels *o, const od_relation *in, tx_outrel **out, od_error *err);
/* The output made for input `in`, or NULL when `in` was left alone. */
const od_relation *tx_output_of(const tx_outrels *o, const od_relation *in);
/* The entry whose output relation is `rel`, or NULL. */
const tx_outrel *tx_outrel_find(tx_outrels *o, const od_relation *rel);
void tx_outrels_free(tx_outrels *o, void (*free_data)(void *));
/* A copy of t's values array in the scratch (NULL when t has no values or on out-of-memory: check
 * t->ncolumns), or t's own array when the scratch allows reuse and an earlier transform of the chain
 * copied it for this change (od_scratch.reuse): the caller may then write into it either way, and
 * must not write into it before it knows its output takes the new values. */
od_value *tx_values_copy(od_scratch *s, const od_tuple *t);

#endif
