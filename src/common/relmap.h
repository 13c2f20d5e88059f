/* relmap.h — a chained hash of per-relation sink state, keyed by pointer (a relation version).
 *
 * Intrusive: a sink's state struct puts an od_relmap_node as its FIRST member, so a node pointer
 * is also a pointer to the state. The map owns only its bucket array; the nodes (the sinks'
 * states) are owned and freed by the sink. Never touches what the states hold.
 */
#ifndef ODSYNC_RELMAP_H
#define ODSYNC_RELMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct od_relmap_node {
  struct od_relmap_node *next;
  const void *key;
  uint64_t born; /* the sink transaction that created the state (its DDL ran there) */
} od_relmap_node;

typedef struct od_relmap {
  od_relmap_node **buckets;
  size_t nbuckets, count;
} od_relmap;

/* Add n under key (grows the table); false on out-of-memory (n is then not in the map). */
bool od_relmap_insert(od_relmap *m, od_relmap_node *n, const void *key);
od_relmap_node *od_relmap_find(const od_relmap *m, const void *key);
/* Unlink every node for which take(node, ctx) returns true; take must free it. */
void od_relmap_remove_if(od_relmap *m, bool (*take)(od_relmap_node *n, void *ctx), void *ctx);
/* Free the bucket array (the map must be empty of nodes the caller still needs). */
void od_relmap_free(od_relmap *m);
/* Drop states with free_node: after a rollback only those born in transaction `txn` (their DDL
 * is gone), else (all = true) every state and the bucket array. */
void od_relmap_drop(od_relmap *m, bool all, uint64_t txn, void (*free_node)(od_relmap_node *n));

/* Visit every node: OD_RELMAP_FOREACH(&map, n) { State *s = (State *)n; ... } */
#define OD_RELMAP_FOREACH(m, n)                                    \
  for (size_t od_relmap_i_ = 0; od_relmap_i_ < (m)->nbuckets; od_relmap_i_++) \
    for (od_relmap_node *n = (m)->buckets[od_relmap_i_]; n; n = n->next)

#endif
