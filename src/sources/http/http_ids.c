/* sources/http/http_ids.c — the correlation-id index: which ids were accepted, at which journal
 * sequence, with which content hash. It answers a repeated POST the way the first was answered.
 *
 * Persistence: <dir>/ids.log, an append-only file of CRC-checked records (written as ids are
 * committed, fdatasync'd before a journal segment is removed: until then the journal itself holds
 * the ids and hs_journal_open puts them back). Compacted (rewritten with the live ids) at open.
 * Retention: ids younger than retention_s, at most max_ids (the oldest go first).
 * Not thread-safe: the journal's lock guards every call.
 * Ownership: owns the table, every id string and the file. Never touches: the journal's files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "core/adapter.h"
#include "sources/http/http_internal.h"

typedef struct entry {
  struct entry *next; /* hash chain */
  uint64_t seq, hash;
  int64_t at;
  int state;
  char id[];
} entry;

struct hs_ids {
  entry **buckets;
  size_t nbuckets, count;
  entry **fifo; /* insertion order, a ring */
  size_t head, len, cap;
  long retention_s, max_ids;
  int fd;
  char path[4200];
};

#define REC_HDR 32

static size_t bucket(const hs_ids *x, const char *id) { return hs_hash64(id, strlen(id)) & (x->nbuckets - 1); }

static entry *find(hs_ids *x, const char *id, entry ***link) {
  entry **l = &x->buckets[bucket(x, id)];
  for (; *l; l = &(*l)->next)
    if (strcmp((*l)->id, id) == 0) {
      if (link) *link = l;
      return *l;
    }
  return NULL;
}

static void unlink_entry(hs_ids *x, entry *e) {
  entry **l;
  if (find(x, e->id, &l) == e) *l = e->next;
  x->count--;
  free(e);
}

static int grow(hs_ids *x) {
  if (x->len < x->cap) return 0;
  size_t cap = x->cap ? x->cap * 2 : 1024;
  entry **f = malloc(cap * sizeof *f);
  if (!f) return -1;
  for (size_t i = 0; i < x->len; i++) f[i] = x->fifo[(x->head + i) % x->cap];
  free(x->fifo);
  x->fifo = f;
  x->head = 0;
  x->cap = cap;
  if (x->count * 2 > x->nbuckets) { /* rehash */
    size_t nb = x->nbuckets * 4;
    entry **b = calloc(nb, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < x->nbuckets; i++)
      for (entry *e = x->buckets[i], *next; e; e = next) {
        next = e->next;
        size_t h = hs_hash64(e->id, strlen(e->id)) & (nb - 1);
        e->next = b[h];
        b[h] = e;
      }
    free(x->buckets);
    x->buckets = b;
    x->nbuckets = nb;
  }
  return 0;
}

static void evict(hs_ids *x) {
  int64_t old = od_now_us() - (int64_t)x->retention_s * 1000000;
  while (x->len) {
    entry *e = x->fifo[x->head];
    if (!e) { /* dropped (failed commit) */
      x->head = (x->head + 1) % x->cap;
      x->len--;
      continue;
    }
    if (e->state != HS_ID_DONE || ((long)x->count <= x->max_ids && e->at >= old)) break;
    x->head = (x->head + 1) % x->cap;
    x->len--;
    unlink_entry(x, e);
  }
}

static int add(hs_ids *x, const char *id, uint64_t seq, uint64_t hash, int64_t at, int state) {
  size_t n = strlen(id);
  entry *e = malloc(sizeof *e + n + 1);
  if (!e || grow(x)) {
    free(e);
    return OD_ENOMEM;
  }
  memcpy(e->id, id, n + 1);
  e->seq = seq;
  e->hash = hash;
  e->at = at;
  e->state = state;
  size_t b = bucket(x, id);
  e->next = x->buckets[b];
  x->buckets[b] = e;
  x->count++;
  x->fifo[(x->head + x->len++) % x->cap] = e;
  return OD_OK;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static int write_rec(int fd, const entry *e) {
  size_t n = strlen(e->id);
  uint8_t buf[REC_HDR + 256];
  uint32_t len = (uint32_t)n;
  memcpy(buf, &len, 4);
  put64(buf + 8, e->seq);
  put64(buf + 16, e->hash);
  put64(buf + 24, (uint64_t)e->at);
  memcpy(buf + REC_HDR, e->id, n);
  uint32_t crc = (uint32_t)crc32(0, buf + 8, (uInt)(REC_HDR - 8 + n));
  memcpy(buf + 4, &crc, 4);
  return write(fd, buf, REC_HDR + n) == (ssize_t)(REC_HDR + n) ? 0 : -1;
}

static int load(hs_ids *x, od_error *err) {
  int fd = open(x->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? OD_OK : OD_FAIL(err, OD_EIO, "%s: cannot open: %s", x->path, strerror(errno));
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  uint8_t buf[REC_HDR + 256];
  int64_t old = od_now_us() - (int64_t)x->retention_s * 1000000;
  while (fread(buf, 1, REC_HDR, f) == REC_HDR) {
    uint32_t len, crc;
    memcpy(&len, buf, 4);
    memcpy(&crc, buf + 4, 4);
    if (len == 0 || len > 255 || fread(buf + REC_HDR, 1, len, f) != len) break;
    if ((uint32_t)crc32(0, buf + 8, (uInt)(REC_HDR - 8 + len)) != crc) break; /* torn tail */
    buf[REC_HDR + len] = '\0';
    int64_t at = (int64_t)get64(buf + 24);
    const char *id = (const char *)buf + REC_HDR;
    if (at < old) continue;
    entry *e = find(x, id, NULL);
    if (e) continue;
    if (add(x, id, get64(buf + 8), get64(buf + 16), at, HS_ID_DONE)) {
      fclose(f);
      return OD_FAIL(err, OD_ENOMEM, "out of memory loading %s", x->path);
    }
    evict(x);
  }
  fclose(f);
  return OD_OK;
}

/* Rewrite the file with the live ids (tmp, fsync, rename) and reopen it for appending. */
static int compact(hs_ids *x, od_error *err) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", x->path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return OD_FAIL(err, OD_EIO, "%s: cannot create: %s", tmp, strerror(errno));
  for (size_t i = 0; i < x->len; i++) {
    entry *e = x->fifo[(x->head + i) % x->cap];
    if (e && e->state == HS_ID_DONE && write_rec(fd, e)) {
      close(fd);
      return OD_FAIL(err, OD_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    }
  }
  if (fdatasync(fd) || close(fd) || rename(tmp, x->path))
    return OD_FAIL(err, OD_EIO, "%s: cannot replace: %s", x->path, strerror(errno));
  if (x->fd >= 0) close(x->fd);
  x->fd = open(x->path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (x->fd < 0) return OD_FAIL(err, OD_EIO, "%s: cannot open: %s", x->path, strerror(errno));
  return OD_OK;
}

int hs_ids_open(const char *dir, long retention_s, long max_ids, hs_ids **out, od_error *err) {
  hs_ids *x = calloc(1, sizeof *x);
  if (!x || !(x->buckets = calloc(x->nbuckets = 4096, sizeof *x->buckets))) {
    free(x);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  x->fd = -1;
  x->retention_s = retention_s;
  x->max_ids = max_ids;
  snprintf(x->path, sizeof x->path, "%s/ids.log", dir);
  int rc = load(x, err);
  if (!rc) rc = compact(x, err);
  if (rc) {
    hs_ids_close(x);
    return rc;
  }
  *out = x;
  return OD_OK;
}

void hs_ids_close(hs_ids *x) {
  if (!x) return;
  for (size_t i = 0; i < x->nbuckets; i++)
    for (entry *e = x->buckets[i], *next; e; e = next) {
      next = e->next;
      free(e);
    }
  free(x->buckets);
  free(x->fifo);
  if (x->fd >= 0) close(x->fd);
  free(x);
}

int hs_ids_get(hs_ids *x, const char *id, uint64_t *seq, uint64_t *hash) {
  entry *e = find(x, id, NULL);
  if (!e) return HS_ID_ABSENT;
  if (seq) *seq = e->seq;
  if (hash) *hash = e->hash;
  return e->state;
}

int hs_ids_put(hs_ids *x, const char *id, uint64_t seq, uint64_t hash, int64_t at_us, bool done) {
  int rc = add(x, id, seq, hash, at_us, done ? HS_ID_DONE : HS_ID_PENDING);
  /* An id put back from the journal (done at once: its request was accepted, perhaps never
   * answered) goes to the file as well: once its segment is pruned the file is all that holds it,
   * and a repeat after the next restart must still be answered as the first. */
  if (!rc && done && x->fd >= 0) {
    entry *e = find(x, id, NULL);
    if (e && write_rec(x->fd, e)) od_warn("http source: cannot append to %s: %s", x->path, strerror(errno));
  }
  return rc;
}

void hs_ids_settle(hs_ids *x, const char *const *ids, size_t n, bool ok) {
  for (size_t i = 0; i < n; i++) {
    entry **l, *e = find(x, ids[i], &l);
    if (!e || e->state != HS_ID_PENDING) continue;
    if (ok) {
      e->state = HS_ID_DONE;
      if (x->fd >= 0 && write_rec(x->fd, e)) od_warn("http source: cannot append to %s: %s", x->path, strerror(errno));
    } else {
      for (size_t j = 0; j < x->len; j++)
        if (x->fifo[(x->head + j) % x->cap] == e) x->fifo[(x->head + j) % x->cap] = NULL;
      *l = e->next;
      x->count--;
      free(e);
    }
  }
  evict(x);
}

int hs_ids_sync(hs_ids *x, od_error *err) {
  if (x->fd >= 0 && fdatasync(x->fd)) return OD_FAIL_RETRY(err, OD_EIO, "%s: fdatasync: %s", x->path, strerror(errno));
  evict(x);
  /* Compact when the file holds far more records than live ids. */
  off_t size = x->fd >= 0 ? lseek(x->fd, 0, SEEK_END) : 0;
  if (size > (off_t)(x->count + 1024) * 4 * (REC_HDR + 40)) return compact(x, err);
  return OD_OK;
}

size_t hs_ids_count(hs_ids *x) { return x->count; }
