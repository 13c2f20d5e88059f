/* route.c — see route.h. */
#include "core/route.h"

#include <stdlib.h>
#include <string.h>

typedef struct od_route_slot {
  uint64_t key;  /* 0 = empty */
  int value;
} od_route_slot;

int od_router_init(od_router *r, int nwriters) {
  memset(r, 0, sizeof *r);
  r->nwriters = nwriters;
  r->lists = calloc((size_t)nwriters, sizeof *r->lists);
  r->counts = calloc((size_t)nwriters, sizeof *r->counts);
  r->caps = calloc((size_t)nwriters, sizeof *r->caps);
  return (r->lists && r->counts && r->caps) ? OD_OK : OD_ENOMEM;
}

void od_router_free(od_router *r) {
  for (int w = 0; r->lists && w < r->nwriters; w++) free(r->lists[w]);
  free(r->lists);
  free(r->counts);
  free(r->caps);
  free(r->hashes);
  free(r->slots);
  free(r->txn_parent);
  free(r->txn_writer);
  free(r->txn_start);
  free(r->txn_rows);
  free(r->flat);
  memset(r, 0, sizeof *r);
}

static bool grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap : 1024;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * size);
  if (!q) return false;
  *p = q;
  *cap = n;
  return true;
}

/* FNV-1a, never 0 (0 marks an empty slot). */
static uint64_t mix(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

static uint64_t table_hash(const od_relation *rel) {
  uint64_t h = mix(1469598103934665603ULL, "table", 5);
  h = mix(h, &rel->oid, sizeof rel->oid);
  return h ? h : 1;
}

static bool keyed(const od_relation *rel) {
  for (uint16_t i = 0; i < rel->ncolumns; i++)
    if (rel->columns[i].key) return true;
  return false;
}

/* The tuple that carries the row's current key: the old one for deletes, else the new one. */
static const od_tuple *key_tuple(const od_change *c) {
  return c->op == OD_OP_DELETE ? &c->oldtup : &c->newtup;
}

static uint64_t key_hash(const od_change *c) {
  const od_tuple *t = key_tuple(c);
  uint64_t h = mix(1469598103934665603ULL, &c->rel->oid, sizeof c->rel->oid);
  for (uint16_t i = 0; i < c->rel->ncolumns && i < t->ncolumns; i++) {
    if (!c->rel->columns[i].key) continue;
    const od_value *v = &t->values[i];
    h = mix(h, &v->kind, 1);
    h = mix(h, &v->len, sizeof v->len);
    if (v->data) h = mix(h, v->data, v->len);
  }
  return h ? h : 1;
}

static bool values_equal(const od_value *a, const od_value *b) {
  return a->kind == b->kind && a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/* Does this change make its table serial for the batch? */
static bool needs_serial(const od_change *c) {
  if (c->op == OD_OP_TRUNCATE) return true;
  if (!keyed(c->rel)) return true;
  if (c->op != OD_OP_UPDATE) return false;
  if (c->old_kind == 'K') return true;
  if (c->old_kind == 'O') {
    for (uint16_t i = 0; i < c->rel->ncolumns; i++)
      if (c->rel->columns[i].key && !values_equal(&c->oldtup.values[i], &c->newtup.values[i])) return true;
  }
  return false;
}

/* ---- hash table: uint64 key -> int ---- */

static int slots_reset(od_router *r, size_t items) {
  size_t want = 64;
  while (want < items * 2) want *= 2;
  if (want > r->nslots) {
    free(r->slots);
    r->slots = malloc(want * sizeof *r->slots);
    if (!r->slots) {
      r->nslots = 0;
      return OD_ENOMEM;
    }
    r->nslots = want;
  }
  memset(r->slots, 0, r->nslots * sizeof *r->slots);
  return OD_OK;
}

/* Returns the slot for key (existing or empty, with key set on insert). */
static od_route_slot *slot_get(od_router *r, uint64_t key, bool *found) {
  size_t mask = r->nslots - 1, i = (size_t)(key * 0x9E3779B97F4A7C15ULL) & mask;
  while (r->slots[i].key && r->slots[i].key != key) i = (i + 1) & mask;
  *found = r->slots[i].key == key;
  r->slots[i].key = key;
  return &r->slots[i];
}

static int find(int *parent, int x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

static int push(od_router *r, int w, const od_change *c) {
  if (!grow((void **)&r->lists[w], &r->caps[w], r->counts[w] + 1, sizeof(od_change))) return OD_ENOMEM;
  r->lists[w][r->counts[w]++] = *c;
  return OD_OK;
}

void od_route_span(od_chunk *const *chunks, size_t nchunks, size_t j, uint32_t first_from, uint32_t last_to,
                   uint32_t *from, uint32_t *to) {
  uint32_t n = chunks[j]->nchanges;
  *to = (j + 1 == nchunks && last_to < n) ? last_to : n;
  *from = j > 0 ? 0 : (first_from < *to ? first_from : *to);
}

int od_route_batch(od_router *r, int mode, od_chunk *const *chunks, size_t nchunks, uint32_t first_from,
                   uint32_t last_to, bool (*keep)(void *ctx, const od_change *ch), void *ctx, od_error *err) {
  for (int w = 0; w < r->nwriters; w++) r->counts[w] = 0;
  size_t n = 0, ntx = 0;
  for (size_t j = 0; j < nchunks; j++) n += chunks[j]->nchanges;
  if (!grow((void **)&r->flat, &r->flat_cap, n, sizeof *r->flat) ||
      !grow((void **)&r->hashes, &r->nhashes_cap, n, sizeof *r->hashes) || slots_reset(r, 2 * n + 16))
    return OD_FAIL(err, OD_ENOMEM, "out of memory routing a batch of %zu changes", n);
  size_t k = 0;
  for (size_t j = 0; j < nchunks; j++) {
    const od_chunk *c = chunks[j];
    uint32_t from, to;
    od_route_span(chunks, nchunks, j, first_from, last_to, &from, &to);
    for (uint32_t i = from; i < to; i++) {
      if (keep && !keep(ctx, &c->changes[i])) continue;
      r->flat[k++] = &c->changes[i];
      if (c->changes[i].index == 0) ntx++;
    }
  }
  n = k;
  if (mode == OD_ROUTE_CARRIER) {
    for (size_t i = 0; i < n; i++)
      if (push(r, 0, r->flat[i])) return OD_FAIL(err, OD_ENOMEM, "out of memory routing a batch");
    return OD_OK;
  }
  /* Pass 1: which tables are serial in this batch. Table hashes are marked in the slot table
   * with value -1. A table whose changes come under more than one relation version (its shape
   * changed inside the batch) is serial too: the sink alters it between the versions, so no
   * other writer may apply the older version's changes after that (or the newer before). */
  bool found;
  for (size_t i = 0; i < n; i++) {
    const od_change *c = r->flat[i];
    if (!c->rel) continue; /* logical message: ignored by sinks, sent with the carrier */
    uint64_t th = table_hash(c->rel);
    bool serial = needs_serial(c);
    if (!serial) {
      od_route_slot *v = slot_get(r, mix(th, "version", 7) | 1, &found);
      uint64_t tag = (uint64_t)(uintptr_t)c->rel; /* the version's identity */
      int t = (int)((tag ^ (tag >> 31)) & 0x3fffffff);
      if (!found) v->value = t;
      else serial = v->value != t;
    }
    if (serial) slot_get(r, th, &found)->value = -1;
  }
  for (size_t i = 0; i < n; i++) {
    const od_change *c = r->flat[i];
    if (!c->rel) {
      r->hashes[i] = 0;
      continue;
    }
    uint64_t th = table_hash(c->rel);
    od_route_slot *s = slot_get(r, th, &found);
    if (!found) s->key = 0; /* lookup only: undo the insert */
    r->hashes[i] = (found && s->value == -1) ? 0 : key_hash(c); /* 0: serial (carrier) */
  }
  /* With helpers, keyed work goes to them only: the carrier applies after they committed. */
  int first = r->nwriters > 1 ? 1 : 0;
  uint64_t spread = (uint64_t)(r->nwriters - first);
  if (mode == OD_ROUTE_EVENTUAL) {
    for (size_t i = 0; i < n; i++) {
      int w = r->hashes[i] ? first + (int)(r->hashes[i] % spread) : 0;
      if (push(r, w, r->flat[i])) return OD_FAIL(err, OD_ENOMEM, "out of memory routing a batch");
    }
    return OD_OK;
  }
  /* Causal: transactions sharing a key (or a serial table) form a group. */
  if (!grow((void **)&r->txn_parent, &r->ntxn_cap, ntx + 1, sizeof(int))) goto oom;
  size_t cap = r->ntxn_cap;
  void *p1 = realloc(r->txn_writer, cap * sizeof(int)), *p2 = NULL, *p3 = NULL;
  if (p1) r->txn_writer = p1;
  if (p1 && (p2 = realloc(r->txn_start, cap * sizeof(size_t)))) r->txn_start = p2;
  if (p2 && (p3 = realloc(r->txn_rows, cap * sizeof(size_t)))) r->txn_rows = p3;
  if (!p3 || slots_reset(r, n + 16)) goto oom;
  int t = -1;
  for (size_t i = 0; i < n; i++) {
    const od_change *c = r->flat[i];
    if (c->index == 0 || t < 0) {
      t++;
      r->txn_parent[t] = t;
      r->txn_writer[t] = -1;
      r->txn_start[t] = i;
      r->txn_rows[t] = 0;
    }
    r->txn_rows[t]++;
    uint64_t key = r->hashes[i] ? r->hashes[i] : (c->rel ? table_hash(c->rel) : 1);
    od_route_slot *s = slot_get(r, key, &found);
    if (!found) {
      s->value = t;
    } else {
      int a = find(r->txn_parent, s->value), b = find(r->txn_parent, t);
      if (a != b) r->txn_parent[b > a ? b : a] = b > a ? a : b; /* keep the earliest as root */
    }
  }
  int ntxns = t + 1;
  /* Groups with a serial change go to the carrier; the others to the least loaded writer, in
   * the order their first transaction committed. */
  size_t load[64] = {0};
  int nw = r->nwriters < 64 ? r->nwriters : 64;
  for (int x = 0; x < ntxns; x++) {
    for (size_t i = r->txn_start[x]; i < r->txn_start[x] + r->txn_rows[x]; i++)
      if (!r->hashes[i]) r->txn_writer[find(r->txn_parent, x)] = 0;
  }
  for (int x = 0; x < ntxns; x++) {
    int root = find(r->txn_parent, x);
    if (r->txn_writer[root] < 0) {
      int best = first;
      for (int w = first + 1; w < nw; w++)
        if (load[w] < load[best]) best = w;
      r->txn_writer[root] = best;
    }
    int w = r->txn_writer[root];
    load[w] += r->txn_rows[x];
    for (size_t i = r->txn_start[x]; i < r->txn_start[x] + r->txn_rows[x]; i++)
      if (push(r, w, r->flat[i])) goto oom;
  }
  return OD_OK;
oom:
  return OD_FAIL(err, OD_ENOMEM, "out of memory routing a batch of %zu changes", n);
}
