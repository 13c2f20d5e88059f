/* pg_readahead.c — the read-ahead buffer of catch-up's batch calls: the rows of call k are copied
 * here so that call k+1 can be sent before they are decoded (pg_catchup.c), and the rule that sizes
 * the next call while the slot's restart_lsn lags (each call decodes from it again).
 * Owns: the buffer's memory. Never touches: connections, the decoder, the pipeline. */
#include "sources/pg/pg_readahead.h"

#include <stdlib.h>
#include <string.h>

static od_lsn be64(const char *p) {
  od_lsn v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | (unsigned char)p[i];
  return v;
}

bool pg_readahead_push(pg_readahead *b, const char *row, size_t n, size_t limit) {
  if (n > UINT32_MAX || b->len + 4 + n > limit) return false;
  size_t need = b->len + 4 + n;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : (size_t)1 << 20;
    if (cap > limit) cap = limit;
    if (cap < need) cap = need;
    char *d = realloc(b->data, cap);
    if (!d) return false;
    b->data = d;
    b->cap = cap;
  }
  uint32_t len = (uint32_t)n;
  memcpy(b->data + b->len, &len, 4);
  if (n) memcpy(b->data + b->len + 4, row, n);
  b->len = need;
  /* pgoutput Commit: 'C', flags (1), commit LSN (8), end LSN (8), timestamp (8) */
  if (n >= 26 && row[0] == 'C') b->last_end = be64(row + 10);
  /* Stream Commit (protocol 2): 'c', xid (4), flags (1), commit LSN (8), end LSN (8), timestamp (8) */
  if (n >= 30 && row[0] == 'c') b->last_end = be64(row + 14);
  b->last_type = n ? row[0] : 0;
  return true;
}

bool pg_readahead_next(const pg_readahead *b, size_t *off, const char **row, size_t *n) {
  if (*off + 4 > b->len) return false;
  uint32_t len;
  memcpy(&len, b->data + *off, 4);
  *row = b->data + *off + 4;
  *n = len;
  *off += 4 + (size_t)len;
  return true;
}

void pg_readahead_reset(pg_readahead *b) {
  b->len = 0;
  b->last_end = 0;
  b->last_type = 0;
}

void pg_readahead_free(pg_readahead *b) {
  free(b->data);
  *b = (pg_readahead){0};
}

long pg_readahead_next_limit(long current, long configured, long most, int64_t span, int64_t redecode) {
  if (most < configured) most = configured;
  long next = current;
  if (span > 0 && redecode > 2 * span)
    next = current > most / 2 ? most : current * 2;
  else if (redecode <= span)
    next = configured;
  return next > most ? most : next < configured ? configured : next;
}
