/* spool.c — see spool.h. */
#include "core/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "common/segfile.h"
#include "core/log.h"

#define HDR 12 /* the record's own header inside a segment frame (common/segfile.h) */
#define BASE_FILE "base" /* the held position of the last prune (text form) */

typedef struct entry {
  uint64_t seg, off;
  uint32_t size; /* whole frame on disk */
  uint8_t flags;
  od_pos end, base;
} entry;

typedef struct segment {
  uint64_t seq, bytes;
} segment;

struct od_spool {
  od_spool_options opt;
  char dir[1024];
  pthread_mutex_t mu;
  entry *ents;
  size_t nents, cap;
  size_t nsynced; /* ents[0, nsynced) are durable */
  size_t rd;      /* next entry to read */
  segment *segs;
  size_t nsegs, segcap;
  uint64_t bytes;
  od_segfile *sf;          /* the segment files (framing, checksums, sealing); writer side: writer thread */
  od_segfile_reader rdr;   /* reader thread */
  od_pos head_base; /* base of an episode whose first records were pruned */
  uint64_t gen;     /* bumped whenever durable entries or head_base change other than by growing */
  struct {          /* the last od_spool_covered answer, valid while (gen, nsynced, held) are the same */
    bool valid;
    uint64_t gen;
    size_t nsynced;
    od_pos held, out;
  } cov;
  od_sbuf zbuf;
  od_segbuf rbuf;          /* the record being read or indexed (plaintext) */
};

int od_spool_codec_parse(const char *name) {
  if (!strcmp(name, "zstd")) return OD_SPOOL_ZSTD;
  if (!strcmp(name, "lz4")) return OD_SPOOL_LZ4;
  if (!strcmp(name, "none")) return OD_SPOOL_NONE;
  return -1;
}

const char *od_spool_codec_name(int codec) {
  return codec == OD_SPOOL_ZSTD ? "zstd" : codec == OD_SPOOL_LZ4 ? "lz4" : "none";
}

static void seg_path(const od_spool *s, uint64_t seq, char *buf, size_t size) { od_segfile_path(s->sf, seq, buf, size); }

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fsync_dir(od_spool *s, od_error *err) { return od_segfile_sync_dir(s->sf, err); }

static int add_entry(od_spool *s, const entry *e) {
  if (s->nents == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    entry *g = realloc(s->ents, cap * sizeof *g);
    if (!g) return OD_ENOMEM;
    s->ents = g;
    s->cap = cap;
  }
  s->ents[s->nents++] = *e;
  return OD_OK;
}

static int add_segment(od_spool *s, uint64_t seq, uint64_t bytes) {
  if (s->nsegs == s->segcap) {
    size_t cap = s->segcap ? s->segcap * 2 : 16;
    segment *g = realloc(s->segs, cap * sizeof *g);
    if (!g) return OD_ENOMEM;
    s->segs = g;
    s->segcap = cap;
  }
  s->segs[s->nsegs++] = (segment){.seq = seq, .bytes = bytes};
  return OD_OK;
}

/* ---- meta ---------------------------------------------------------------------------------- */

static void meta_put_pos(od_sbuf *b, const od_pos *p) {
  char text[OD_POS_TEXT_MAX];
  od_pos_to_text(p, text, sizeof text);
  size_t n = strlen(text);
  b->data[b->len] = (uint8_t)n;
  b->data[b->len + 1] = (uint8_t)(n >> 8);
  memcpy(b->data + b->len + 2, text, n);
  b->len += 2 + n;
}

static int meta_get_pos(const uint8_t **p, const uint8_t *end, od_pos *out, od_error *err) {
  if (end - *p < 2) return OD_EIO;
  size_t n = (size_t)(*p)[0] | (size_t)(*p)[1] << 8;
  if (n >= OD_POS_TEXT_MAX || (size_t)(end - *p - 2) < n) return OD_EIO;
  char text[OD_POS_TEXT_MAX];
  memcpy(text, *p + 2, n);
  text[n] = '\0';
  *p += 2 + n;
  return od_pos_from_text(text, out, err);
}

/* ---- indexing ------------------------------------------------------------------------------- */

/* A record's own header (inside its segment frame, common/segfile.h), little-endian:
 *   u32 meta_len | u32 raw_len | u8 codec | u8 flags | u16 0 | meta | body (stored, maybe compressed) */
static int parse_meta(const uint8_t *rec, size_t len, entry *e, od_error *err) {
  if (len < HDR || get32(rec) > len - HDR) return OD_FAIL(err, OD_EIO, "the record header is malformed");
  uint64_t meta_len = get32(rec);
  e->flags = rec[9];
  const uint8_t *p = rec + HDR, *end = p + meta_len;
  e->end = od_pos_none();
  e->base = od_pos_none();
  if (meta_get_pos(&p, end, &e->end, err) || meta_get_pos(&p, end, &e->base, err)) return OD_EIO;
  return OD_OK;
}

static int index_one(void *ctx, uint64_t id, uint64_t off, uint32_t frame_size, const uint8_t *payload, size_t len,
                     od_error *err) {
  od_spool *s = ctx;
  entry e = {.seg = id, .off = off, .size = frame_size};
  if (parse_meta(payload, len, &e, err)) {
    char path[1100];
    seg_path(s, id, path, sizeof path);
    od_error_prefix(err, "spool: %s: record at offset %" PRIu64 ": ", path, off);
    return OD_EIO;
  }
  return add_entry(s, &e) ? OD_FAIL(err, OD_ENOMEM, "spool: out of memory") : OD_OK;
}

static int index_segment(od_spool *s, uint64_t seq, bool last, od_error *err) {
  uint64_t size = 0;
  int rc = od_segfile_scan(s->sf, seq, last, index_one, s, &size, err);
  if (rc) return rc;
  s->bytes += size;
  return add_segment(s, seq, size) ? OD_FAIL(err, OD_ENOMEM, "spool: out of memory") : OD_OK;
}

int od_spool_open(const od_spool_options *opt, od_spool **out, od_error *err) {
  od_spool *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "spool: out of memory");
  s->opt = *opt;
  snprintf(s->dir, sizeof s->dir, "%s", opt->dir);
  s->opt.dir = s->dir;
  if (!s->opt.segment_bytes) {
    uint64_t seg = s->opt.max_bytes / 16;
    s->opt.segment_bytes = seg < (1u << 20) ? (1u << 20) : seg > (16u << 20) ? (16u << 20) : seg;
  }
  s->rdr = (od_segfile_reader)OD_SEGFILE_READER_INIT;
  pthread_mutex_init(&s->mu, NULL);
  od_segfile_opts so = {.dir = s->dir, .suffix = ".spool", .what = "spool", .kr = opt->kr};
  int rc = od_segfile_open(&so, &s->sf, err);
  if (rc) {
    od_spool_close(s);
    return rc;
  }
  uint64_t *seqs = NULL;
  size_t n = 0;
  if ((rc = od_segfile_list(s->sf, &seqs, &n, err))) {
    od_spool_close(s);
    return rc;
  }
  for (size_t i = 0; i < n && !rc; i++) rc = index_segment(s, seqs[i], i + 1 == n, err);
  free(seqs);
  char path[1100];
  snprintf(path, sizeof path, "%s/" BASE_FILE, s->dir);
  FILE *f = fopen(path, "r");
  if (f) {
    char text[OD_POS_TEXT_MAX] = "";
    if (fgets(text, sizeof text, f)) {
      text[strcspn(text, "\n")] = '\0';
      od_error ignored;
      if (od_pos_from_text(text, &s->head_base, &ignored)) s->head_base = od_pos_none();
    }
    fclose(f);
  }
  if (rc) {
    od_spool_close(s);
    return rc;
  }
  s->nsynced = s->nents;
  *out = s;
  return OD_OK;
}

void od_spool_close(od_spool *s) {
  if (!s) return;
  od_segfile_close(s->sf);
  od_segfile_reader_close(&s->rdr);
  pthread_mutex_destroy(&s->mu);
  free(s->ents);
  free(s->segs);
  od_sbuf_free(&s->zbuf);
  if (s->rbuf.p) memset(s->rbuf.p, 0, s->rbuf.len);
  free(s->rbuf.p);
  free(s);
}

/* ---- writing -------------------------------------------------------------------------------- */

/* After a failed flush (lock held): what was buffered for the active segment is gone (the segment
 * was cut back to its last written frame; a roll wrote the segments before): forget its records. */
static void forget_unwritten(od_spool *s) {
  if (!s->nsegs || !od_segfile_has_active(s->sf)) return;
  segment *seg = &s->segs[s->nsegs - 1]; /* the active one: a failed roll added none */
  if (seg->seq != od_segfile_active_id(s->sf)) return;
  uint64_t kept = od_segfile_active_size(s->sf);
  if (seg->bytes > kept) {
    s->bytes -= seg->bytes - kept;
    seg->bytes = kept;
  }
  while (s->nents > s->nsynced && s->ents[s->nents - 1].seg == seg->seq && s->ents[s->nents - 1].off >= kept)
    s->nents--;
}

/* The segment to append to: the last one while under segment_bytes, else a new one (rolling
 * writes and fsyncs the one before; its records count as durable at the next od_spool_sync). */
static int open_writer(od_spool *s, od_error *err) {
  bool fresh = !s->nsegs || s->segs[s->nsegs - 1].bytes >= s->opt.segment_bytes;
  if (!fresh && od_segfile_has_active(s->sf) && od_segfile_active_id(s->sf) == s->segs[s->nsegs - 1].seq)
    return OD_OK;
  if (!fresh) return od_segfile_resume(s->sf, s->segs[s->nsegs - 1].seq, s->segs[s->nsegs - 1].bytes, err);
  uint64_t seq = (s->nsegs ? s->segs[s->nsegs - 1].seq : 0) + 1;
  int rc = od_segfile_roll(s->sf, seq, err);
  if (rc) {
    pthread_mutex_lock(&s->mu);
    forget_unwritten(s); /* the roll's flush of the segment before failed */
    pthread_mutex_unlock(&s->mu);
    return rc;
  }
  pthread_mutex_lock(&s->mu);
  rc = add_segment(s, seq, 0);
  pthread_mutex_unlock(&s->mu);
  return rc ? OD_FAIL(err, rc, "spool: out of memory") : OD_OK;
}

static int compress_body(od_spool *s, const uint8_t *body, size_t len, const uint8_t **out, size_t *outlen,
                         uint8_t *codec) {
  *codec = (uint8_t)s->opt.compression;
  if (*codec == OD_SPOOL_NONE || len < 64) {
    *codec = OD_SPOOL_NONE;
    *out = body;
    *outlen = len;
    return OD_OK;
  }
  size_t bound = *codec == OD_SPOOL_ZSTD ? ZSTD_compressBound(len) : (size_t)LZ4_compressBound((int)len);
  s->zbuf.len = 0;
  if (od_sbuf_reserve(&s->zbuf, bound)) return OD_ENOMEM;
  size_t n;
  if (*codec == OD_SPOOL_ZSTD) {
    n = ZSTD_compress(s->zbuf.data, bound, body, len, 1);
    if (ZSTD_isError(n)) n = 0;
  } else {
    int r = LZ4_compress_default((const char *)body, (char *)s->zbuf.data, (int)len, (int)bound);
    n = r > 0 ? (size_t)r : 0;
  }
  if (!n || n >= len) { /* incompressible: store it */
    *codec = OD_SPOOL_NONE;
    *out = body;
    *outlen = len;
    return OD_OK;
  }
  *out = s->zbuf.data;
  *outlen = n;
  return OD_OK;
}

int od_spool_append(od_spool *s, const od_spool_meta *meta, const uint8_t *body, size_t len, bool force,
                    od_error *err) {
  if (len > UINT32_MAX / 2) return OD_FAIL(err, OD_EINVAL, "spool %s: record of %zu bytes is too large", s->dir, len);
  const uint8_t *stored;
  size_t stored_len;
  uint8_t codec;
  if (compress_body(s, body, len, &stored, &stored_len, &codec))
    return OD_FAIL(err, OD_ENOMEM, "spool %s: out of memory", s->dir);
  od_sbuf rec = {0};
  if (od_sbuf_reserve(&rec, HDR + 2 * (OD_POS_TEXT_MAX + 2) + stored_len))
    return OD_FAIL(err, OD_ENOMEM, "spool %s: out of memory", s->dir);
  rec.len = HDR;
  meta_put_pos(&rec, meta->flags & OD_SPOOL_END ? &meta->end : &(od_pos){0});
  meta_put_pos(&rec, meta->flags & OD_SPOOL_BASE ? &meta->base : &(od_pos){0});
  uint32_t meta_len = (uint32_t)(rec.len - HDR);
  memcpy(rec.data + rec.len, stored, stored_len);
  rec.len += stored_len;
  put32(rec.data, meta_len);
  put32(rec.data + 4, (uint32_t)len);
  rec.data[8] = codec;
  rec.data[9] = meta->flags;
  rec.data[10] = rec.data[11] = 0;
  size_t frame = od_segfile_frame_size(s->sf, rec.len);

  pthread_mutex_lock(&s->mu);
  bool full = !force && s->nents > 0 && s->bytes + frame > s->opt.max_bytes;
  pthread_mutex_unlock(&s->mu);
  if (full) {
    od_sbuf_free(&rec);
    return OD_AGAIN;
  }
  int rc = open_writer(s, err);
  if (rc) {
    od_sbuf_free(&rec);
    return rc;
  }
  segment *seg = &s->segs[s->nsegs - 1];
  entry e = {.seg = seg->seq, .flags = meta->flags,
             .end = meta->flags & OD_SPOOL_END ? meta->end : od_pos_none(),
             .base = meta->flags & OD_SPOOL_BASE ? meta->base : od_pos_none()};
  rc = od_segfile_append(s->sf, rec.data, rec.len, &e.off, &e.size, err);
  od_sbuf_free(&rec);
  if (rc) return rc;
  pthread_mutex_lock(&s->mu);
  seg->bytes += e.size;
  s->bytes += e.size;
  rc = add_entry(s, &e);
  pthread_mutex_unlock(&s->mu);
  return rc ? OD_FAIL(err, rc, "spool: out of memory") : OD_OK;
}

int od_spool_sync(od_spool *s, od_error *err) {
  pthread_mutex_lock(&s->mu);
  bool pending = s->nsynced < s->nents;
  pthread_mutex_unlock(&s->mu);
  if (!pending) return OD_OK;
  int rc = od_segfile_flush(s->sf, true, err);
  pthread_mutex_lock(&s->mu);
  if (rc) forget_unwritten(s);
  else s->nsynced = s->nents;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- reading -------------------------------------------------------------------------------- */

static int inflate_body(od_spool *s, const uint8_t *rec, size_t rec_len, od_sbuf *body, const char *path,
                        uint64_t off, od_error *err) {
  if (rec_len < HDR || get32(rec) > rec_len - HDR)
    return OD_FAIL(err, OD_EIO, "spool: %s: the record at offset %" PRIu64 " has a malformed header", path, off);
  uint32_t meta_len = get32(rec), raw = get32(rec + 4);
  uint32_t stored = (uint32_t)(rec_len - HDR - meta_len);
  uint8_t codec = rec[8];
  const uint8_t *src = rec + HDR + meta_len;
  body->len = 0;
  if (od_sbuf_reserve(body, raw ? raw : 1)) return OD_FAIL(err, OD_ENOMEM, "spool: out of memory");
  size_t n = 0;
  if (codec == OD_SPOOL_NONE) {
    if (stored != raw) goto bad;
    memcpy(body->data, src, raw);
    n = raw;
  } else if (codec == OD_SPOOL_ZSTD) {
    n = ZSTD_decompress(body->data, raw, src, stored);
    if (ZSTD_isError(n)) goto bad;
  } else if (codec == OD_SPOOL_LZ4) {
    int r = LZ4_decompress_safe((const char *)src, (char *)body->data, (int)stored, (int)raw);
    if (r < 0) goto bad;
    n = (size_t)r;
  } else {
    return OD_FAIL(err, OD_EIO, "spool: %s: record at offset %" PRIu64 " uses codec %u, which this build does not "
                   "know (written by a newer odsync?)", path, off, codec);
  }
  if (n != raw) goto bad;
  body->len = n;
  (void)s;
  return OD_OK;
bad:
  return OD_FAIL(err, OD_EIO, "spool: %s: record at offset %" PRIu64 " does not decompress (%s): corrupt segment",
                 path, off, od_spool_codec_name(codec));
}

int od_spool_next(od_spool *s, od_spool_meta *meta, od_sbuf *body, od_error *err) {
  pthread_mutex_lock(&s->mu);
  if (s->rd >= s->nsynced) {
    pthread_mutex_unlock(&s->mu);
    return OD_EOF;
  }
  entry e = s->ents[s->rd];
  pthread_mutex_unlock(&s->mu);
  char path[1100];
  seg_path(s, e.seg, path, sizeof path);
  uint32_t fs = 0;
  int rc = od_segfile_read(s->sf, &s->rdr, e.seg, e.off, e.off + e.size, &s->rbuf, &fs, err);
  if (rc) return rc;
  rc = inflate_body(s, s->rbuf.p, s->rbuf.len, body, path, e.off, err);
  if (s->sf && s->opt.kr) memset(s->rbuf.p, 0, s->rbuf.len); /* no plaintext left behind */
  if (rc) return rc;
  meta->flags = e.flags;
  meta->end = e.end;
  meta->base = e.base;
  pthread_mutex_lock(&s->mu);
  s->rd++;
  pthread_mutex_unlock(&s->mu);
  return OD_OK;
}

uint64_t od_spool_rewind(od_spool *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->rd;
  s->rd = 0;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* Remove segment i's file and its entries (lock held; i's entries are at the front). */
static int drop_front_segment(od_spool *s, od_error *err) {
  segment seg = s->segs[0];
  int rc = od_segfile_remove(s->sf, seg.seq, err);
  if (rc) return rc;
  if (s->rdr.fd >= 0 && s->rdr.id == seg.seq) od_segfile_reader_close(&s->rdr);
  size_t k = 0;
  while (k < s->nents && s->ents[k].seg == seg.seq) k++;
  memmove(s->ents, s->ents + k, (s->nents - k) * sizeof *s->ents);
  s->gen++;
  s->nents -= k;
  s->nsynced -= k;
  s->rd -= k;
  s->bytes -= seg.bytes;
  memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof *s->segs);
  s->nsegs--;
  return OD_OK;
}

static int write_pos_file(od_spool *s, const char *name, const od_pos *held, od_error *err) {
  char path[1100], tmp[1100], text[OD_POS_TEXT_MAX];
  snprintf(path, sizeof path, "%s/%s", s->dir, name);
  snprintf(tmp, sizeof tmp, "%s/%s.tmp", s->dir, name);
  od_pos_to_text(held, text, sizeof text);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return OD_FAIL(err, OD_EIO, "spool: cannot write %s: %s", tmp, strerror(errno));
  size_t n = strlen(text);
  bool ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp, path)) return OD_FAIL(err, OD_EIO, "spool: cannot write %s: %s", path, strerror(errno));
  return fsync_dir(s, err);
}

static int write_base(od_spool *s, const od_pos *held, od_error *err) { return write_pos_file(s, BASE_FILE, held, err); }

int od_spool_write_held(od_spool *s, const od_pos *held, od_error *err) { return write_pos_file(s, "held", held, err); }

bool od_spool_read_held(od_spool *s, od_pos *out) {
  char path[1100], text[OD_POS_TEXT_MAX] = "";
  snprintf(path, sizeof path, "%s/held", s->dir);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  bool ok = fgets(text, sizeof text, f) != NULL;
  fclose(f);
  text[strcspn(text, "\n")] = '\0';
  od_error ignored;
  return ok && od_pos_from_text(text, out, &ignored) == OD_OK;
}

int od_spool_clear_held(od_spool *s, od_error *err) {
  char path[1100];
  snprintf(path, sizeof path, "%s/held", s->dir);
  if (unlink(path) && errno != ENOENT) return OD_FAIL(err, OD_EIO, "spool: cannot delete %s: %s", path, strerror(errno));
  return fsync_dir(s, err);
}

int od_spool_prune(od_spool *s, const od_pos *held, od_error *err) {
  int rc = OD_OK;
  bool based = false;
  pthread_mutex_lock(&s->mu);
  /* Segment 0 may go when it was read whole, is not the one being written, every transaction with
   * a change in it has ended by `held`: its ends and the first end after it are <= held. */
  while (s->nsegs > 1) {
    uint64_t seq = s->segs[0].seq;
    size_t k = 0;
    bool ok = true;
    while (k < s->nents && s->ents[k].seg == seq) {
      if ((s->ents[k].flags & OD_SPOOL_END) && od_pos_lt(held, &s->ents[k].end)) ok = false;
      k++;
    }
    if (!ok || s->rd < k) break;
    size_t j = k;
    while (j < s->nents && !(s->ents[j].flags & OD_SPOOL_END)) j++;
    if (j == s->nents || od_pos_lt(held, &s->ents[j].end)) break;
    if (!based) { /* the remaining records continue the sink from `held` */
      if ((rc = write_base(s, held, err))) break;
      s->head_base = *held;
      s->gen++;
      based = true;
    }
    if ((rc = drop_front_segment(s, err))) break;
  }
  /* Drained: everything read and held, the last segment too (the writer starts a new one). */
  if (!rc && s->nsegs == 1 && s->rd == s->nents && s->nsynced == s->nents && s->nents) {
    bool held_all = true;
    for (size_t k = 0; k < s->nents && held_all; k++)
      if ((s->ents[k].flags & OD_SPOOL_END) && od_pos_lt(held, &s->ents[k].end)) held_all = false;
    if (held_all && !(rc = write_base(s, held, err))) {
      s->head_base = *held;
      s->gen++;
      od_segfile_close_active(s->sf);
      uint64_t last = s->segs[0].seq;
      rc = drop_front_segment(s, err);
      if (!rc) rc = add_segment(s, last + 1, 0) ? OD_FAIL(err, OD_ENOMEM, "spool: out of memory") : OD_OK;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* The episode containing entry i: its first entry (or 0 when it was pruned) and its base / end. */
static void episode_of(const od_spool *s, size_t first, size_t last, od_pos *base, bool *based, od_pos *end) {
  *based = false;
  *end = od_pos_none();
  for (size_t k = first; k < last; k++) {
    const entry *e = &s->ents[k];
    if ((e->flags & OD_SPOOL_BASE) && !*based) {
      *base = e->base;
      *based = true;
    }
    if (e->flags & OD_SPOOL_END) *end = e->end;
  }
  if (!*based && first == 0 && !(s->ents[0].flags & OD_SPOOL_EPISODE) && !od_pos_is_none(&s->head_base)) {
    *base = s->head_base;
    *based = true;
  }
}

/* Walk the episodes among entries [0, last) from a sink holding `cur`: an episode whose base the
 * chain reaches continues it up to its end (episodes spilled back to back chain: each one's base is
 * the end before it). Returns the covered position; *gap is the first entry of the first episode
 * that would leave a gap (last when none). The acknowledgement (od_spool_covered) and the restart
 * (od_spool_recover) use this one rule, so the source is never told more than a restart keeps. */
static od_pos chain_episodes(const od_spool *s, size_t last, od_pos cur, size_t *gap) {
  size_t i = 0;
  *gap = last;
  while (i < last) {
    size_t j = i + 1;
    while (j < last && !(s->ents[j].flags & OD_SPOOL_EPISODE)) j++;
    od_pos base, end;
    bool based;
    episode_of(s, i, j, &base, &based, &end);
    if (based && od_pos_le(&base, &cur)) {
      if (od_pos_lt(&cur, &end)) cur = end;
    } else if (!od_pos_is_none(&end) && od_pos_lt(&cur, &end)) {
      *gap = i;
      break;
    }
    i = j;
  }
  return cur;
}

od_pos od_spool_covered(od_spool *s, const od_pos *held) {
  pthread_mutex_lock(&s->mu);
  /* Called on every turn of the reader's loop: walk the index only when something changed. */
  if (!s->cov.valid || s->cov.gen != s->gen || s->cov.nsynced != s->nsynced || !od_pos_eq(&s->cov.held, held)) {
    size_t gap;
    s->cov.out = chain_episodes(s, s->nsynced, *held, &gap);
    s->cov.held = *held;
    s->cov.nsynced = s->nsynced;
    s->cov.gen = s->gen;
    s->cov.valid = true;
  }
  od_pos out = s->cov.out;
  pthread_mutex_unlock(&s->mu);
  return out;
}

/* Cut the spool before entry i (lock held). */
static int cut_at(od_spool *s, size_t i, od_error *err) {
  entry e = s->ents[i];
  od_segfile_close_active(s->sf);
  od_segfile_reader_close(&s->rdr);
  int rc;
  while (s->nsegs && s->segs[s->nsegs - 1].seq > e.seg) {
    if ((rc = od_segfile_remove(s->sf, s->segs[s->nsegs - 1].seq, err))) return rc;
    s->bytes -= s->segs[s->nsegs - 1].bytes;
    s->nsegs--;
  }
  if ((rc = od_segfile_truncate(s->sf, e.seg, e.off, err))) return rc;
  segment *seg = &s->segs[s->nsegs - 1];
  s->bytes -= seg->bytes - e.off;
  seg->bytes = e.off;
  s->nents = s->nsynced = i;
  s->gen++;
  if (s->rd > i) s->rd = i;
  return fsync_dir(s, err);
}

int od_spool_recover(od_spool *s, const od_pos *checkpoint, od_pos *resume, uint64_t *kept, od_error *err) {
  pthread_mutex_lock(&s->mu);
  size_t gap;
  od_pos cur = chain_episodes(s, s->nents, *checkpoint, &gap);
  int rc = OD_OK;
  if (gap < s->nents) {
    /* A gap between what the sink holds and this episode: its chunks come again from the source. */
    char at[OD_POS_TEXT_MAX];
    od_info("spool %s: %zu records from %s on do not continue the sink's checkpoint; dropping them (the "
            "source sends them again)", s->dir, s->nents - gap, od_pos_display(&cur, at, sizeof at));
    rc = cut_at(s, gap, err);
  }
  s->rd = 0;
  *resume = cur;
  *kept = s->nents;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

uint64_t od_spool_bytes(od_spool *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t v = s->bytes;
  pthread_mutex_unlock(&s->mu);
  return v;
}

uint64_t od_spool_room(od_spool *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t v = s->bytes < s->opt.max_bytes ? s->opt.max_bytes - s->bytes : 0;
  pthread_mutex_unlock(&s->mu);
  return v;
}

uint64_t od_spool_records(od_spool *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t v = s->nents;
  pthread_mutex_unlock(&s->mu);
  return v;
}

uint64_t od_spool_unread(od_spool *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t v = s->nsynced - s->rd;
  pthread_mutex_unlock(&s->mu);
  return v;
}

bool od_spool_empty(od_spool *s) { return od_spool_records(s) == 0; }

const char *od_spool_dir(const od_spool *s) { return s->dir; }

