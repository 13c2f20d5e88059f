/* common/segfile.c — see segfile.h. Framing, CRC, sealing, torn tails, segment files. */
#include "common/segfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/seal.h"
#include "core/log.h"

#define MAGIC "ODF2"
#define F_SEALED 1
#define HDR OD_SEGFILE_FRAME
#define WBUF_KEEP (4u << 20) /* a write buffer larger than this after a flush is freed */

struct od_segfile {
  od_segfile_opts o;
  char dir[1024];
  char suffix[32];
  char what[64];
  char base[256];   /* the directory's last component: part of each sealed record's place */
  int wfd;        /* active segment (-1: none) */
  uint64_t wid;
  uint64_t wsize; /* bytes on disk in the active segment */
  bool new_seg;   /* created since the last synced flush: fsync the directory */
  od_segbuf wbuf; /* framed records not written yet */
};

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int od_segbuf_reserve(od_segbuf *b, size_t need) {
  if (b->len + need <= b->cap) return OD_OK;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + need) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) return OD_ENOMEM;
  b->p = p;
  b->cap = cap;
  return OD_OK;
}

void od_segbuf_release_above(od_segbuf *b, size_t keep) {
  if (b->cap <= keep) return;
  free(b->p);
  *b = (od_segbuf){0};
}

/* The pieces one after another at dst. */
static void copy_parts(uint8_t *dst, const od_segpart *parts, size_t nparts) {
  for (size_t i = 0; i < nparts; i++) {
    if (parts[i].len) memcpy(dst, parts[i].p, parts[i].len);
    dst += parts[i].len;
  }
}

void od_segfile_reader_close(od_segfile_reader *r) {
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
}

static int mkdirs(const char *dir) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0700) && errno != EEXIST ? -1 : 0;
}

int od_segfile_open(const od_segfile_opts *o, od_segfile **out, od_error *err) {
  od_segfile *sf = calloc(1, sizeof *sf);
  if (!sf) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", o->what);
  snprintf(sf->dir, sizeof sf->dir, "%s", o->dir);
  size_t l = strlen(sf->dir);
  while (l > 1 && sf->dir[l - 1] == '/') sf->dir[--l] = '\0';
  snprintf(sf->suffix, sizeof sf->suffix, "%s", o->suffix);
  snprintf(sf->what, sizeof sf->what, "%s", o->what);
  const char *b = strrchr(sf->dir, '/');
  snprintf(sf->base, sizeof sf->base, "%.255s", b ? b + 1 : sf->dir);
  sf->o = *o;
  sf->o.dir = sf->dir;
  sf->o.suffix = sf->suffix;
  sf->o.what = sf->what;
  sf->wfd = -1;
  if (mkdirs(sf->dir)) {
    int e = errno;
    free(sf);
    return OD_FAIL(err, OD_EIO, "%s: cannot create directory %s: %s", o->what, o->dir, strerror(e));
  }
  *out = sf;
  return OD_OK;
}

void od_segfile_close(od_segfile *sf) {
  if (!sf) return;
  if (sf->wfd >= 0) close(sf->wfd);
  free(sf->wbuf.p);
  free(sf);
}

const char *od_segfile_dir(const od_segfile *sf) { return sf->dir; }

void od_segfile_path(const od_segfile *sf, uint64_t id, char *buf, size_t size) {
  snprintf(buf, size, "%s/%020" PRIu64 "%s", sf->dir, id, sf->suffix);
}

/* The sealed record's name: "<dir base>/<file name>". */
static void seal_name(const od_segfile *sf, uint64_t id, char *buf, size_t size) {
  snprintf(buf, size, "%s/%020" PRIu64 "%s", sf->base, id, sf->suffix);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int od_segfile_list(od_segfile *sf, uint64_t **ids, size_t *n, od_error *err) {
  *ids = NULL;
  *n = 0;
  DIR *d = opendir(sf->dir);
  if (!d) return OD_FAIL(err, OD_EIO, "%s: cannot list %s: %s", sf->what, sf->dir, strerror(errno));
  size_t cap = 0, slen = strlen(sf->suffix);
  struct dirent *de;
  int rc = OD_OK;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l != 20 + slen || strcmp(de->d_name + 20, sf->suffix)) continue;
    char *endp;
    unsigned long long v = strtoull(de->d_name, &endp, 10);
    if (endp != de->d_name + 20) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *g = realloc(*ids, cap * sizeof *g);
      if (!g) {
        rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory", sf->what);
        break;
      }
      *ids = g;
    }
    (*ids)[(*n)++] = v;
  }
  closedir(d);
  if (rc) {
    free(*ids);
    *ids = NULL;
    *n = 0;
    return rc;
  }
  if (*n) qsort(*ids, *n, sizeof **ids, cmp_u64);
  return OD_OK;
}

/* ---- one frame -------------------------------------------------------------------------------- */

typedef enum { FR_OK, FR_TORN, FR_BAD } fr_state;

static const char *advice(void) {
  return "nothing is skipped; restore the directory from a backup, or remove it (a spool: the sink is filled "
         "again from the source; a journal: its unsent events are lost)";
}

/* Whether every byte from off to the end is zero (what a crash leaves past the last write). */
static bool all_zero(int fd, uint64_t off, uint64_t end) {
  uint8_t b[4096];
  while (off < end) {
    size_t n = end - off < sizeof b ? (size_t)(end - off) : sizeof b;
    if (pread(fd, b, n, (off_t)off) != (ssize_t)n) return false;
    for (size_t i = 0; i < n; i++)
      if (b[i]) return false;
    off += n;
  }
  return true;
}

/* Read and check the frame at off of a file of file_size bytes; payload gets the plaintext. */
static fr_state read_frame(const od_segfile *sf, int fd, uint64_t id, uint64_t off, uint64_t file_size,
                           od_segbuf *payload, uint32_t *frame_size, od_error *err) {
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  if (file_size - off < HDR) return FR_TORN;
  uint8_t h[HDR];
  if (pread(fd, h, HDR, (off_t)off) != HDR) {
    OD_FAIL(err, OD_EIO, "%s: cannot read %s at offset %" PRIu64 ": %s", sf->what, path, off, strerror(errno));
    return FR_BAD;
  }
  if (memcmp(h, MAGIC, 4) != 0) {
    static const uint8_t zero[4];
    if (!memcmp(h, zero, 4) && all_zero(fd, off, file_size)) return FR_TORN; /* zeros past a crash */
    if (!memcmp(h, "ODS1", 4) || !memcmp(h, "ODJ1", 4))
      OD_FAIL(err, OD_EIO, "%s: %s was written by an older odsync (segment format 1, record at offset %" PRIu64 "); "
              "this odsync reads format 2: drain it with the version that wrote it, or remove the directory %s",
              sf->what, path, off, sf->dir);
    else
      OD_FAIL(err, OD_EIO, "%s: %s: no record header at offset %" PRIu64 " (corrupt or altered segment); %s",
              sf->what, path, off, advice());
    return FR_BAD;
  }
  uint32_t stored = get32(h + 8);
  if (stored > OD_SEGFILE_MAX_PAYLOAD + 1024u) {
    OD_FAIL(err, OD_EIO, "%s: %s: the record at offset %" PRIu64 " claims %" PRIu32 " bytes (corrupt or altered "
            "segment); %s", sf->what, path, off, stored, advice());
    return FR_BAD;
  }
  if (file_size - off - HDR < stored) return FR_TORN;
  /* The previous record goes before this one is allocated: two large records are never held at once. */
  free(payload->p);
  *payload = (od_segbuf){0};
  uint8_t *buf = malloc(stored ? stored : 1);
  if (!buf) {
    OD_FAIL(err, OD_ENOMEM, "%s: out of memory reading %s", sf->what, path);
    return FR_BAD;
  }
  if (pread(fd, buf, stored, (off_t)(off + HDR)) != (ssize_t)stored) {
    OD_FAIL(err, OD_EIO, "%s: cannot read %s at offset %" PRIu64 ": %s", sf->what, path, off, strerror(errno));
    free(buf);
    return FR_BAD;
  }
  uLong crc = crc32(crc32(0L, Z_NULL, 0), h, 12);
  crc = crc32(crc, buf, stored);
  if ((uint32_t)crc != get32(h + 12)) {
    OD_FAIL(err, OD_EIO, "%s: %s: checksum mismatch in the record at offset %" PRIu64 " (%" PRIu32 " bytes): the "
            "segment is corrupt or was altered; %s", sf->what, path, off, HDR + stored, advice());
    free(buf);
    return FR_BAD;
  }
  bool sealed = h[4] & F_SEALED;
  if (sealed && !sf->o.kr) {
    OD_FAIL(err, OD_EIO, "%s: %s: the record at offset %" PRIu64 " is encrypted (key id '%.*s') but no "
            "`encryption:` keys are configured; add the key to read it", sf->what, path, off,
            stored > 4 ? (int)(buf[3] < stored - 4 ? buf[3] : stored - 4) : 0, (const char *)buf + 4);
    free(buf);
    return FR_BAD;
  }
  if (!sealed && sf->o.kr) {
    OD_FAIL(err, OD_EIO, "%s: %s: the record at offset %" PRIu64 " is not encrypted but `encryption:` is "
            "configured: it was written before encryption was turned on, or planted; refusing to read it. Drain "
            "the directory with encryption off first, or remove %s", sf->what, path, off, sf->dir);
    free(buf);
    return FR_BAD;
  }
  if (sealed) {
    char name[320];
    seal_name(sf, id, name, sizeof name);
    unsigned char *pt = NULL;
    size_t ptlen = 0;
    int rc = od_open(sf->o.kr, name, off, buf, stored, &pt, &ptlen, err);
    free(buf);
    if (rc) {
      od_error_prefix(err, "%s: %s at offset %" PRIu64 ": ", sf->what, path, off);
      return FR_BAD;
    }
    payload->p = pt;
    payload->len = ptlen;
    payload->cap = ptlen + 1;
  } else {
    payload->p = buf;
    payload->len = stored;
    payload->cap = stored ? stored : 1;
  }
  *frame_size = HDR + stored;
  return FR_OK;
}

int od_segfile_scan(od_segfile *sf, uint64_t id, bool last, od_segfile_visit visit, void *ctx, uint64_t *size,
                    od_error *err) {
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return OD_FAIL(err, OD_EIO, "%s: cannot open %s: %s", sf->what, path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st)) {
    close(fd);
    return OD_FAIL(err, OD_EIO, "%s: cannot stat %s: %s", sf->what, path, strerror(errno));
  }
  uint64_t fsize = (uint64_t)st.st_size, off = 0;
  od_segbuf pl = {0};
  int rc = OD_OK;
  while (off < fsize) {
    uint32_t fs = 0;
    fr_state r = read_frame(sf, fd, id, off, fsize, &pl, &fs, err);
    if (r == FR_BAD) {
      rc = OD_EIO;
      break;
    }
    if (r == FR_TORN) {
      if (!last) {
        rc = OD_FAIL(err, OD_EIO, "%s: %s: the record at offset %" PRIu64 " is cut short but later segments exist "
                     "(corrupt segment); %s", sf->what, path, off, advice());
        break;
      }
      od_warn("%s: %s: cutting %" PRIu64 " bytes of an unfinished record at offset %" PRIu64 " (a write "
              "interrupted by a crash, never synced nor acknowledged)", sf->what, path, fsize - off, off);
      if (ftruncate(fd, (off_t)off) || fsync(fd))
        rc = OD_FAIL(err, OD_EIO, "%s: cannot cut %s: %s", sf->what, path, strerror(errno));
      fsize = off;
      break;
    }
    if (visit && (rc = visit(ctx, id, off, fs, pl.p, pl.len, err))) break;
    off += fs;
  }
  if (pl.p) memset(pl.p, 0, pl.len); /* plaintext of a sealed record: do not leave it in the heap */
  free(pl.p);
  close(fd);
  *size = off;
  return rc;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static int open_active(od_segfile *sf, uint64_t id, od_error *err) {
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot open %s: %s", sf->what, path, strerror(errno));
  if (sf->wfd >= 0) close(sf->wfd);
  sf->wfd = fd;
  sf->wid = id;
  return OD_OK;
}

int od_segfile_resume(od_segfile *sf, uint64_t id, uint64_t size, od_error *err) {
  int rc = od_segfile_flush(sf, false, err);
  if (!rc) rc = open_active(sf, id, err);
  if (rc) return rc;
  sf->wsize = size;
  if (size == 0) sf->new_seg = true; /* it may have just been created: sync the directory too */
  return OD_OK;
}

int od_segfile_roll(od_segfile *sf, uint64_t id, od_error *err) {
  int rc = od_segfile_flush(sf, sf->wfd >= 0, err);
  if (rc) return rc;
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  struct stat st;
  if (stat(path, &st) == 0 && st.st_size > 0)
    return OD_FAIL(err, OD_EIO, "%s: cannot start segment %s: it exists and is not empty", sf->what, path);
  if ((rc = open_active(sf, id, err))) return rc;
  if (ftruncate(sf->wfd, 0)) { /* empty already: nothing to do */ }
  sf->wsize = 0;
  sf->new_seg = true;
  return OD_OK;
}

void od_segfile_close_active(od_segfile *sf) {
  if (sf->wfd >= 0) close(sf->wfd);
  sf->wfd = -1;
  sf->wbuf.len = 0;
}

bool od_segfile_has_active(const od_segfile *sf) { return sf->wfd >= 0; }
uint64_t od_segfile_active_id(const od_segfile *sf) { return sf->wid; }
uint64_t od_segfile_active_size(const od_segfile *sf) { return sf->wsize + sf->wbuf.len; }

void od_segfile_discard(od_segfile *sf) { sf->wbuf.len = 0; }

size_t od_segfile_frame_size(const od_segfile *sf, size_t len) {
  return HDR + len + (sf->o.kr ? od_seal_overhead(sf->o.kr) : 0);
}

int od_segfile_append_parts(od_segfile *sf, const od_segpart *parts, size_t nparts, uint64_t *off,
                            uint32_t *frame_size, od_error *err) {
  if (sf->wfd < 0) return OD_FAIL(err, OD_EINVAL, "%s: no active segment in %s", sf->what, sf->dir);
  size_t len = 0;
  for (size_t i = 0; i < nparts; i++) len += parts[i].len;
  if (len > OD_SEGFILE_MAX_PAYLOAD)
    return OD_FAIL(err, OD_EINVAL, "%s: a record of %zu bytes is larger than %u MiB", sf->what, len,
                   OD_SEGFILE_MAX_PAYLOAD >> 20);
  uint64_t at = sf->wsize + sf->wbuf.len;
  size_t slen = len;
  unsigned char *blob = NULL;
  if (sf->o.kr) { /* sealing needs the plaintext in one piece */
    unsigned char *plain = NULL;
    const void *pt = nparts == 1 ? parts[0].p : NULL;
    if (nparts != 1) {
      if (!(plain = malloc(len ? len : 1))) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", sf->what);
      copy_parts(plain, parts, nparts);
      pt = plain;
    }
    char name[320];
    seal_name(sf, sf->wid, name, sizeof name);
    int rc = od_seal(sf->o.kr, name, at, pt, len, &blob, &slen, err);
    free(plain);
    if (rc) return rc;
  }
  if (od_segbuf_reserve(&sf->wbuf, HDR + slen)) {
    free(blob);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", sf->what);
  }
  uint8_t *h = sf->wbuf.p + sf->wbuf.len;
  memcpy(h, MAGIC, 4);
  h[4] = sf->o.kr ? F_SEALED : 0;
  h[5] = h[6] = h[7] = 0;
  put32(h + 8, (uint32_t)slen);
  if (blob) memcpy(h + HDR, blob, slen);
  else copy_parts(h + HDR, parts, nparts);
  uLong crc = crc32(crc32(0L, Z_NULL, 0), h, 12);
  crc = crc32(crc, h + HDR, (uInt)slen);
  put32(h + 12, (uint32_t)crc);
  sf->wbuf.len += HDR + slen;
  free(blob);
  *off = at;
  *frame_size = (uint32_t)(HDR + slen);
  return OD_OK;
}

int od_segfile_append(od_segfile *sf, const void *payload, size_t len, uint64_t *off, uint32_t *frame_size,
                      od_error *err) {
  od_segpart part = {payload, len};
  return od_segfile_append_parts(sf, &part, 1, off, frame_size, err);
}

int od_segfile_flush(od_segfile *sf, bool sync, od_error *err) {
  char path[1200];
  if (sf->wbuf.len) {
    if (sf->wfd < 0) return OD_FAIL(err, OD_EINVAL, "%s: no active segment in %s", sf->what, sf->dir);
    size_t done = 0;
    while (done < sf->wbuf.len) {
      ssize_t w = pwrite(sf->wfd, sf->wbuf.p + done, sf->wbuf.len - done, (off_t)(sf->wsize + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        int e = w < 0 ? errno : ENOSPC;
        od_segfile_path(sf, sf->wid, path, sizeof path);
        if (ftruncate(sf->wfd, (off_t)sf->wsize)) { /* reported below; a scan would cut it */ }
        sf->wbuf.len = 0;
        return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot write %s: %s (disk full?)", sf->what, path, strerror(e));
      }
      done += (size_t)w;
    }
    sf->wsize += sf->wbuf.len;
    sf->wbuf.len = 0;
    od_segbuf_release_above(&sf->wbuf, WBUF_KEEP);
  }
  if (!sync) return OD_OK;
  if (sf->wfd >= 0 && fdatasync(sf->wfd)) {
    od_segfile_path(sf, sf->wid, path, sizeof path);
    return OD_FAIL_RETRY(err, OD_EIO, "%s: fdatasync of %s failed: %s", sf->what, path, strerror(errno));
  }
  if (sf->new_seg) {
    int rc = od_segfile_sync_dir(sf, err);
    if (rc) return rc;
    sf->new_seg = false;
  }
  return OD_OK;
}

/* ---- reading ---------------------------------------------------------------------------------- */

int od_segfile_read(const od_segfile *sf, od_segfile_reader *r, uint64_t id, uint64_t off, uint64_t limit,
                    od_segbuf *payload, uint32_t *frame_size, od_error *err) {
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  if (r->fd < 0 || r->id != id) {
    od_segfile_reader_close(r);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot open %s: %s", sf->what, path, strerror(errno));
    r->id = id;
  }
  fr_state st = read_frame(sf, r->fd, id, off, limit, payload, frame_size, err);
  if (st == FR_TORN)
    return OD_FAIL(err, OD_EIO, "%s: %s: the record at offset %" PRIu64 " is cut short (corrupt or altered "
                   "segment); %s", sf->what, path, off, advice());
  return st == FR_OK ? OD_OK : OD_EIO;
}

/* ---- removing --------------------------------------------------------------------------------- */

int od_segfile_remove(od_segfile *sf, uint64_t id, od_error *err) {
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  if (sf->wfd >= 0 && sf->wid == id) od_segfile_close_active(sf);
  if (unlink(path) && errno != ENOENT)
    return OD_FAIL(err, OD_EIO, "%s: cannot delete %s: %s", sf->what, path, strerror(errno));
  return OD_OK;
}

int od_segfile_truncate(od_segfile *sf, uint64_t id, uint64_t off, od_error *err) {
  char path[1200];
  od_segfile_path(sf, id, path, sizeof path);
  if (truncate(path, (off_t)off))
    return OD_FAIL(err, OD_EIO, "%s: cannot truncate %s: %s", sf->what, path, strerror(errno));
  if (sf->wfd >= 0 && sf->wid == id) {
    sf->wbuf.len = 0;
    sf->wsize = off;
  }
  return OD_OK;
}

int od_segfile_sync_dir(od_segfile *sf, od_error *err) {
  int fd = open(sf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd)) {
    int e = errno;
    if (fd >= 0) close(fd);
    return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot fsync directory %s: %s", sf->what, sf->dir, strerror(e));
  }
  close(fd);
  return OD_OK;
}
