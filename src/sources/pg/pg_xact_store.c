/* pg_xact_store.c — see pg_xact_store.h. Records: u32 length (little-endian) | u32 xid | message,
 * back to back in one buffer per transaction. A spill file holds the same records in chunks of
 * about CHUNK bytes, one segfile frame per chunk (a frame per record cost two preads, a malloc and
 * a CRC each: 22 s of CPU for a 5M-row transaction). A transaction moves to its file whole (its
 * memory records first, in order) and stays there until it ends; its buffer then holds the chunk
 * being filled (not counted in mem_budget: at most CHUNK plus one record per spilled transaction).
 * Pointer ownership: each xact, its buffer, its od_segfile and its list of aborted subtransaction
 * xids are owned by the store; nothing is borrowed but the keyring and, during open, the options.
 */
#include "sources/pg/pg_xact_store.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/segfile.h"

#define SUFFIX ".xact"
#define CHUNK (1u << 20) /* bytes of records per spill frame (each frame is written at once) */

typedef struct xact {
  struct xact *next;
  uint32_t xid;
  od_segbuf mem;        /* in-memory records while sf == NULL, then the chunk being filled */
  od_segfile *sf;       /* the spill file (segment id = xid), NULL while in memory */
  uint32_t *aborted;    /* aborted subtransactions */
  size_t naborted, cap_aborted;
} xact;

struct od_pg_xact_store {
  char dir[1024];
  size_t mem_budget;
  const od_keyring *kr;
  xact *open;           /* open transactions, newest first */
  uint64_t mem_used;
  uint64_t spilled_txns, spilled_bytes;
  /* the replay in progress */
  xact *rx;
  size_t moff;          /* next record in the memory buffer or in rbuf (the chunk read) */
  uint64_t foff, fsize; /* next frame, file length */
  od_segfile_reader rd;
  od_segbuf rbuf;
};

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void remove_stale(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  size_t sl = strlen(SUFFIX);
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n <= sl || strcmp(e->d_name + n - sl, SUFFIX) != 0) continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    (void)unlink(path);
  }
  closedir(d);
}

int od_pg_xact_store_open(const od_pg_xact_store_opts *o, od_pg_xact_store **out, od_error *err) {
  od_pg_xact_store *st = calloc(1, sizeof *st);
  if (!st) return OD_FAIL(err, OD_ENOMEM, "streamed transactions: out of memory");
  snprintf(st->dir, sizeof st->dir, "%s", o->dir);
  st->mem_budget = o->mem_budget;
  st->kr = o->kr;
  st->rd = (od_segfile_reader)OD_SEGFILE_READER_INIT;
  /* Opening a segfile creates the directory (and says so when it cannot). */
  od_segfile *probe = NULL;
  od_segfile_opts so = {.dir = st->dir, .suffix = SUFFIX, .what = "streamed transactions", .kr = st->kr};
  int rc = od_segfile_open(&so, &probe, err);
  if (rc) {
    free(st);
    return rc;
  }
  od_segfile_close(probe);
  remove_stale(st->dir);
  *out = st;
  return OD_OK;
}

static void xact_free(od_pg_xact_store *st, xact *x) {
  if (!x) return;
  if (x->sf) {
    od_error ignored;
    (void)od_segfile_remove(x->sf, x->xid, &ignored);
    od_segfile_close(x->sf);
  }
  if (!x->sf) st->mem_used -= x->mem.len;
  free(x->mem.p);
  free(x->aborted);
  free(x);
}

void od_pg_xact_store_end_replay(od_pg_xact_store *st) {
  od_segfile_reader_close(&st->rd);
  od_segbuf_release_above(&st->rbuf, 2 * (size_t)CHUNK); /* the last frame may have been a large record */
  xact_free(st, st->rx);
  st->rx = NULL;
}

void od_pg_xact_store_reset(od_pg_xact_store *st) {
  od_pg_xact_store_end_replay(st);
  while (st->open) {
    xact *x = st->open;
    st->open = x->next;
    xact_free(st, x);
  }
}

void od_pg_xact_store_free(od_pg_xact_store *st) {
  if (!st) return;
  od_pg_xact_store_reset(st);
  free(st->rbuf.p);
  free(st);
}

static xact *find(const od_pg_xact_store *st, uint32_t xid, xact ***link) {
  xact *const *l = &st->open;
  for (; *l; l = &(*l)->next)
    if ((*l)->xid == xid) {
      if (link) *link = (xact **)l;
      return *l;
    }
  return NULL;
}

bool od_pg_xact_store_has(const od_pg_xact_store *st, uint32_t xid) { return find(st, xid, NULL) != NULL; }

int od_pg_xact_store_begin(od_pg_xact_store *st, uint32_t xid, od_error *err) {
  if (find(st, xid, NULL))
    return OD_FAIL(err, OD_EPROTOCOL, "streamed transactions: xid %u started a second time while open", xid);
  xact *x = calloc(1, sizeof *x);
  if (!x) return OD_FAIL(err, OD_ENOMEM, "streamed transactions: out of memory for xid %u", xid);
  x->xid = xid;
  x->next = st->open;
  st->open = x;
  return OD_OK;
}

/* Writes `len` bytes of records as one frame of x's spill file. */
static int write_chunk(od_pg_xact_store *st, xact *x, const uint8_t *p, size_t len, od_error *err) {
  if (!len) return OD_OK;
  uint64_t off;
  uint32_t fs;
  int rc = od_segfile_append(x->sf, p, len, &off, &fs, err);
  if (!rc) rc = od_segfile_flush(x->sf, false, err);
  if (rc) return od_error_prefix(err, "spilling streamed transaction %u: ", x->xid);
  st->spilled_bytes += fs;
  return OD_OK;
}

/* Moves x's memory records to its new spill file, in chunks cut at record boundaries. */
static int spill(od_pg_xact_store *st, xact *x, od_error *err) {
  od_segfile_opts so = {.dir = st->dir, .suffix = SUFFIX, .what = "streamed transactions", .kr = st->kr};
  int rc = od_segfile_open(&so, &x->sf, err);
  if (rc) return rc;
  if ((rc = od_segfile_roll(x->sf, x->xid, err))) {
    od_segfile_close(x->sf);
    x->sf = NULL;
    return od_error_prefix(err, "spilling streamed transaction %u: ", x->xid);
  }
  st->spilled_txns++;
  st->mem_used -= x->mem.len;
  size_t from = 0, at = 0;
  while (at < x->mem.len) {
    at += 8 + (size_t)get32(x->mem.p + at);
    if (at - from >= CHUNK || at == x->mem.len) {
      if ((rc = write_chunk(st, x, x->mem.p + from, at - from, err))) break;
      from = at;
    }
  }
  free(x->mem.p);
  x->mem = (od_segbuf){0};
  return rc;
}

/* A record of at least this many bytes goes to a spilled transaction's file as a frame of its own,
 * straight from the caller's pieces: copied into the chunk first, a large value would be held twice
 * more (the chunk, the file's write buffer) for as long as the transaction stays open. */
#define LARGE_RECORD (CHUNK / 2)

int od_pg_xact_store_append2(od_pg_xact_store *st, uint32_t top, uint32_t xid, const void *head, size_t hlen,
                             const void *body, size_t blen, od_error *err) {
  xact *x = find(st, top, NULL);
  if (!x)
    return OD_FAIL(err, OD_EPROTOCOL, "streamed transactions: a change of xid %u arrived for top-level xid %u, "
                   "which is not open (no Stream Start for it)", xid, top);
  size_t len = hlen + blen;
  if (len > OD_SEGFILE_MAX_PAYLOAD - 8)
    return OD_FAIL(err, OD_EUNSUPPORTED, "streamed transactions: a message of %zu bytes in xid %u is larger than "
                   "a spill record (%u MiB)", len, top, OD_SEGFILE_MAX_PAYLOAD >> 20);
  if (!x->sf && st->mem_used + 8 + len > st->mem_budget) {
    int rc = spill(st, x, err);
    if (rc) return rc;
  }
  uint8_t rh[8];
  put32(rh, (uint32_t)len);
  put32(rh + 4, xid);
  if (x->sf && 8 + len >= LARGE_RECORD) {
    int rc = write_chunk(st, x, x->mem.p, x->mem.len, err); /* what is pending goes first, in order */
    x->mem.len = 0;
    if (rc) return rc;
    od_segpart parts[3] = {{rh, 8}, {head, hlen}, {body, blen}};
    uint64_t off;
    uint32_t fs;
    rc = od_segfile_append_parts(x->sf, parts, blen ? 3 : 2, &off, &fs, err);
    if (!rc) rc = od_segfile_flush(x->sf, false, err);
    if (rc) return od_error_prefix(err, "spilling streamed transaction %u: ", x->xid);
    st->spilled_bytes += fs;
    return OD_OK;
  }
  if (od_segbuf_reserve(&x->mem, 8 + len))
    return OD_FAIL(err, OD_ENOMEM, "streamed transactions: out of memory (%zu bytes) for xid %u", x->mem.len + 8 + len,
                   top);
  uint8_t *p = x->mem.p + x->mem.len;
  memcpy(p, rh, 8);
  if (hlen) memcpy(p + 8, head, hlen);
  if (blen) memcpy(p + 8 + hlen, body, blen);
  x->mem.len += 8 + len;
  if (!x->sf) {
    st->mem_used += 8 + len;
    return OD_OK;
  }
  if (x->mem.len < CHUNK) return OD_OK;
  int rc = write_chunk(st, x, x->mem.p, x->mem.len, err);
  x->mem.len = 0;
  return rc;
}

int od_pg_xact_store_append(od_pg_xact_store *st, uint32_t top, uint32_t xid, const void *msg, size_t len,
                            od_error *err) {
  return od_pg_xact_store_append2(st, top, xid, msg, len, NULL, 0, err);
}

static bool is_aborted(const xact *x, uint32_t xid) {
  if (xid == OD_PG_XACT_KEEP) return false;
  for (size_t i = 0; i < x->naborted; i++)
    if (x->aborted[i] == xid) return true;
  return false;
}

int od_pg_xact_store_abort(od_pg_xact_store *st, uint32_t top, uint32_t sub, od_error *err) {
  xact **link = NULL;
  xact *x = find(st, top, &link);
  if (!x) return OD_OK;
  if (sub == top) {
    *link = x->next;
    xact_free(st, x);
    return OD_OK;
  }
  if (is_aborted(x, sub)) return OD_OK;
  if (x->naborted == x->cap_aborted) {
    size_t ncap = x->cap_aborted ? x->cap_aborted * 2 : 8;
    uint32_t *na = realloc(x->aborted, ncap * sizeof *na);
    if (!na) return OD_FAIL(err, OD_ENOMEM, "streamed transactions: out of memory for an abort in xid %u", top);
    x->aborted = na;
    x->cap_aborted = ncap;
  }
  x->aborted[x->naborted++] = sub;
  return OD_OK;
}

int od_pg_xact_store_replay(od_pg_xact_store *st, uint32_t xid, od_error *err) {
  if (st->rx)
    return OD_FAIL(err, OD_EPROTOCOL, "streamed transactions: commit of xid %u while xid %u is still being replayed",
                   xid, st->rx->xid);
  xact **link = NULL;
  xact *x = find(st, xid, &link);
  if (!x)
    return OD_FAIL(err, OD_EPROTOCOL, "streamed transactions: Stream Commit of xid %u, which is not open (no Stream "
                   "Start for it since the stream started)", xid);
  if (x->sf) {
    int rc = write_chunk(st, x, x->mem.p, x->mem.len, err);
    if (rc) return rc;
    x->mem.len = 0;
  }
  *link = x->next;
  st->rx = x;
  st->moff = 0;
  st->rbuf.len = 0; /* the last replay's chunk */
  st->foff = 0;
  st->fsize = x->sf ? od_segfile_active_size(x->sf) : 0;
  return OD_OK;
}

bool od_pg_xact_store_replaying(const od_pg_xact_store *st) { return st->rx != NULL; }

int od_pg_xact_store_next(od_pg_xact_store *st, char **msg, size_t *len, od_error *err) {
  xact *x = st->rx;
  if (!x) return OD_FAIL(err, OD_EINVAL, "streamed transactions: next() without a replay");
  for (;;) {
    const od_segbuf *b = x->sf ? &st->rbuf : &x->mem;
    if (st->moff >= b->len) {
      if (!x->sf || st->foff >= st->fsize) return 0;
      uint32_t fs = 0;
      int rc = od_segfile_read(x->sf, &st->rd, x->xid, st->foff, st->fsize, &st->rbuf, &fs, err);
      if (rc) return od_error_prefix(err, "replaying streamed transaction %u: ", x->xid);
      st->foff += fs;
      st->moff = 0;
      continue;
    }
    uint8_t *p = b->p + st->moff;
    uint32_t n = b->len - st->moff >= 8 ? get32(p) : UINT32_MAX;
    if (n == UINT32_MAX || n > b->len - st->moff - 8)
      return OD_FAIL(err, OD_EIO, "streamed transactions: xid %u: a record cut short at byte %zu of a %zu-byte chunk "
                     "(spill file frame before offset %llu; corrupt)", x->xid, st->moff, b->len,
                     (unsigned long long)st->foff);
    uint32_t xid = get32(p + 4);
    st->moff += 8 + (size_t)n;
    *msg = (char *)p + 8;
    *len = n;
    if (!is_aborted(x, xid)) return 1;
  }
}

void od_pg_xact_store_stats(const od_pg_xact_store *st, od_pg_xact_stats *out) {
  uint32_t n = 0;
  for (const xact *x = st->open; x; x = x->next) n++;
  *out = (od_pg_xact_stats){.open = n, .mem_bytes = st->mem_used, .spilled_txns = st->spilled_txns,
                            .spilled_bytes = st->spilled_bytes};
}
