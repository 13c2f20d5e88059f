/* relmap.c — see relmap.h. */
#include "common/relmap.h"

#include <stdint.h>
#include <stdlib.h>

static size_t slot(const void *key, size_t nbuckets) {
  uint64_t x = (uint64_t)(uintptr_t)key;
  x ^= x >> 29;
  x *= 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 32) & (nbuckets - 1);
}

bool od_relmap_insert(od_relmap *m, od_relmap_node *n, const void *key) {
  if (m->count + 1 > m->nbuckets) {
    size_t size = m->nbuckets ? m->nbuckets * 2 : 64;
    od_relmap_node **nb = calloc(size, sizeof *nb);
    if (!nb) return false;
    for (size_t i = 0; i < m->nbuckets; i++) {
      for (od_relmap_node *e = m->buckets[i], *next; e; e = next) {
        next = e->next;
        size_t h = slot(e->key, size);
        e->next = nb[h];
        nb[h] = e;
      }
    }
    free(m->buckets);
    m->buckets = nb;
    m->nbuckets = size;
  }
  n->key = key;
  size_t h = slot(key, m->nbuckets);
  n->next = m->buckets[h];
  m->buckets[h] = n;
  m->count++;
  return true;
}

od_relmap_node *od_relmap_find(const od_relmap *m, const void *key) {
  if (!m->nbuckets) return NULL;
  for (od_relmap_node *n = m->buckets[slot(key, m->nbuckets)]; n; n = n->next)
    if (n->key == key) return n;
  return NULL;
}

void od_relmap_remove_if(od_relmap *m, bool (*take)(od_relmap_node *n, void *ctx), void *ctx) {
  for (size_t i = 0; i < m->nbuckets; i++) {
    od_relmap_node **pp = &m->buckets[i];
    while (*pp) {
      od_relmap_node *n = *pp;
      od_relmap_node *next = n->next;
      if (take(n, ctx)) {
        *pp = next;
        m->count--;
      } else {
        pp = &n->next;
      }
    }
  }
}

typedef struct drop_ctx {
  bool all;
  uint64_t txn;
  void (*free_node)(od_relmap_node *n);
} drop_ctx;

static bool drop_one(od_relmap_node *n, void *ctx) {
  const drop_ctx *d = ctx;
  if (!d->all && n->born != d->txn) return false;
  d->free_node(n);
  return true;
}

void od_relmap_drop(od_relmap *m, bool all, uint64_t txn, void (*free_node)(od_relmap_node *n)) {
  drop_ctx d = {all, txn, free_node};
  od_relmap_remove_if(m, drop_one, &d);
  if (all) od_relmap_free(m);
}

void od_relmap_free(od_relmap *m) {
  free(m->buckets);
  m->buckets = NULL;
  m->nbuckets = m->count = 0;
}
