/* sources/http/http_journal.c — the durable journal of accepted events: what makes "2xx" mean
 * "kept", and the http source's stream.
 *
 * Layout: <state_dir>/http/<pipeline>/<first seq, 20 digits>.seg segment files (common/segfile.h:
 * frames with CRC-32, sealed with AES-256-GCM when `encryption:` keys are configured), and ids.log
 * (http_ids.c). A record is one request's new events: a 24-byte header (u64 first sequence, u32
 * event count, u32 0, i64 acceptance time, little-endian) and the payload, a JSON array of
 * normalized events (http_event.c). Sequences are dense: a record holds
 * [seq, seq + count), the next record starts at seq + count. The position a sink stores is the
 * sequence after what it holds (od_pos_http, a big-endian counter).
 * Group commit: requests queue their record under the lock; one committer thread writes every
 * queued record (framed and sealed there, where its offset is known), fdatasyncs once, and wakes
 * them all (their 2xx follows). A torn tail of the last segment (a crash mid-write) is cut at open;
 * a bad record anywhere else — a checksum or authentication failure — stops with its offset.
 * Pruning: a segment goes once every sink holds the record after it (ack), ids.log synced first.
 * Ownership: owns its files (through an od_segfile), buffers, the committer thread and the id
 * index; borrows the keyring.
 * Never touches: HTTP, the pipeline, od_change.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "common/segfile.h"
#include "core/adapter.h"
#include "sources/http/http_internal.h"

#define HDR 24 /* the record's own header inside its segment frame */
#define MAX_PAYLOAD (256u << 20)

typedef struct seg {
  uint64_t first;     /* first sequence it holds (its name) */
  uint64_t committed; /* bytes durable (and readable) */
} seg;

typedef struct mark {
  uint64_t end, cum; /* a record's end sequence, and the bytes appended through it */
} mark;

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

struct hs_journal {
  hs_journal_opts o;
  char dir[4096];
  pthread_mutex_t mu;
  pthread_cond_t work, done, readable;
  hs_ids *ids;
  seg *segs;
  size_t nsegs, segcap;
  od_segfile *sf;       /* the segment files; its writer side is the committer's */
  uint64_t next_seq;    /* next sequence to assign */
  uint64_t committed;   /* sequence after the last durable record */
  buf pending;          /* records queued for the next group: u32 length | record, each */
  const char **pending_ids;
  size_t npending_ids, pending_ids_cap;
  uint64_t pending_first, pending_end;
  uint64_t gen_done;    /* groups committed (or failed) */
  bool broken;
  char broken_msg[512];
  mark *marks;
  size_t mhead, mlen, mcap;
  uint64_t appended, acked, durable;
  pthread_t committer;
  bool committer_started, stop;
  /* reader */
  od_segfile_reader rdr;
  od_segbuf rbuf;
  uint64_t rseg, roff, rfrom;
};

static int buf_add(buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + n) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void seg_path(const hs_journal *j, uint64_t first, char *out, size_t size) {
  od_segfile_path(j->sf, first, out, size);
}

int hs_mkdirs(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
      *p = '/';
    }
  return mkdir(tmp, 0700) && errno != EEXIST ? -1 : 0;
}

static int push_seg(hs_journal *j, uint64_t first, uint64_t committed) {
  if (j->nsegs == j->segcap) {
    size_t cap = j->segcap ? j->segcap * 2 : 16;
    seg *s = realloc(j->segs, cap * sizeof *s);
    if (!s) return -1;
    j->segs = s;
    j->segcap = cap;
  }
  j->segs[j->nsegs++] = (seg){first, committed};
  return 0;
}

static int push_mark(hs_journal *j, uint64_t end, uint64_t bytes) {
  if (j->mhead + j->mlen == j->mcap) {
    if (j->mhead > j->mcap / 2) {
      memmove(j->marks, j->marks + j->mhead, j->mlen * sizeof *j->marks);
      j->mhead = 0;
    } else {
      size_t cap = j->mcap ? j->mcap * 2 : 1024;
      mark *m = realloc(j->marks, cap * sizeof *m);
      if (!m) return -1;
      j->marks = m;
      j->mcap = cap;
    }
  }
  j->appended += bytes;
  j->marks[j->mhead + j->mlen++] = (mark){end, j->appended};
  return 0;
}

/* Put the ids of a retained record back into the index (they may be missing from ids.log). */
static int reindex(hs_journal *j, uint64_t seq, int64_t at, const char *payload, size_t len, od_error *err) {
  json_t *arr = json_loadb(payload, len, 0, NULL);
  if (!json_is_array(arr)) {
    json_decref(arr);
    return OD_FAIL(err, OD_EIO, "%s: the record at sequence %" PRIu64 " holds no event array", j->dir, seq);
  }
  size_t i;
  json_t *ev;
  json_array_foreach(arr, i, ev) {
    const char *cid = json_string_value(json_object_get(ev, "c"));
    uint64_t hash = (uint64_t)json_integer_value(json_object_get(ev, "h"));
    if (cid && hs_ids_get(j->ids, cid, NULL, NULL) == HS_ID_ABSENT) hs_ids_put(j->ids, cid, seq + i, hash, at, true);
  }
  json_decref(arr);
  return OD_OK;
}


typedef struct scan_ctx {
  hs_journal *j;
  uint64_t expect; /* the sequence the next record must start at */
} scan_ctx;

static int scan_one(void *ctx, uint64_t id, uint64_t off, uint32_t frame_size, const uint8_t *p, size_t len,
                    od_error *err) {
  scan_ctx *c = ctx;
  hs_journal *j = c->j;
  if (len < HDR || get64(p) != c->expect || get32(p + 8) == 0) {
    char path[4300];
    seg_path(j, id, path, sizeof path);
    return OD_FAIL(err, OD_EIO, "%s: the record at offset %" PRIu64 " does not continue the journal at sequence %"
                   PRIu64 " (damaged); restore the journal directory from a backup", path, off, c->expect);
  }
  int rc = reindex(j, c->expect, (int64_t)get64(p + 16), (const char *)p + HDR, len - HDR, err);
  if (rc) return rc;
  c->expect += get32(p + 8);
  return push_mark(j, c->expect, frame_size) ? OD_FAIL(err, OD_ENOMEM, "out of memory") : OD_OK;
}

/* Read every segment: check records, cut a torn tail, rebuild marks and ids. */
static int scan(hs_journal *j, od_error *err) {
  uint64_t *firsts = NULL;
  size_t n = 0;
  int rc = od_segfile_list(j->sf, &firsts, &n, err);
  if (rc) return rc;
  scan_ctx c = {.j = j, .expect = n ? firsts[0] : 1};
  for (size_t s = 0; s < n && !rc; s++) {
    char path[4300];
    seg_path(j, firsts[s], path, sizeof path);
    if (firsts[s] != c.expect) {
      rc = OD_FAIL(err, OD_EIO, "%s: starts at sequence %" PRIu64 " but the segment before ends at %" PRIu64
                   " (a segment file is missing); restore the journal directory from a backup", path, firsts[s],
                   c.expect);
      break;
    }
    uint64_t size = 0;
    if ((rc = od_segfile_scan(j->sf, firsts[s], s + 1 == n, scan_one, &c, &size, err))) break;
    if (push_seg(j, firsts[s], size)) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
    if (!rc && s + 1 == n) rc = od_segfile_resume(j->sf, firsts[s], size, err);
  }
  free(firsts);
  if (rc) return rc;
  j->next_seq = j->committed = c.expect;
  if (!n) { /* a new journal: its first segment */
    if ((rc = od_segfile_roll(j->sf, 1, err)) || (rc = od_segfile_flush(j->sf, true, err))) return rc;
    if (push_seg(j, 1, 0)) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  return OD_OK;
}

/* ---- the committer ---- */

static int roll(hs_journal *j, uint64_t first, char *why, size_t wsize) {
  od_error e;
  if (od_segfile_roll(j->sf, first, &e)) {
    snprintf(why, wsize, "%.500s", e.msg);
    return -1;
  }
  pthread_mutex_lock(&j->mu);
  int rc = push_seg(j, first, 0);
  pthread_mutex_unlock(&j->mu);
  if (rc) {
    snprintf(why, wsize, "out of memory");
    return -1;
  }
  return 0;
}

/* Frame (and seal) every queued record of the group, write them and fdatasync once. */
static bool commit_group(hs_journal *j, const buf *group, char *why, size_t wsize) {
  od_error e;
  for (size_t off = 0; off + 4 <= group->len;) {
    uint32_t len = get32((const uint8_t *)group->p + off);
    uint64_t at;
    uint32_t fs;
    if (od_segfile_append(j->sf, group->p + off + 4, len, &at, &fs, &e)) {
      snprintf(why, wsize, "%.500s", e.msg);
      od_segfile_discard(j->sf); /* none of the group is written: its requests are answered 503 */
      return false;
    }
    off += 4 + (size_t)len;
  }
  if (od_segfile_flush(j->sf, true, &e)) {
    snprintf(why, wsize, "%.500s", e.msg);
    return false;
  }
  return true;
}

static void *committer_main(void *arg) {
  hs_journal *j = arg;
  buf group = {0};
  const char **ids = NULL;
  size_t ids_cap = 0;
  pthread_mutex_lock(&j->mu);
  for (;;) {
    while (!j->stop && !j->pending.len) pthread_cond_wait(&j->work, &j->mu);
    if (!j->pending.len) break;
    buf t = group;
    group = j->pending;
    j->pending = t;
    j->pending.len = 0;
    const char **ti = ids;
    size_t tc = ids_cap, nids = j->npending_ids;
    ids = j->pending_ids;
    ids_cap = j->pending_ids_cap;
    j->pending_ids = ti;
    j->pending_ids_cap = tc;
    j->npending_ids = 0;
    uint64_t first = j->pending_first, end = j->pending_end;
    pthread_mutex_unlock(&j->mu);

    char why[512] = "";
    bool ok = true;
    uint64_t active = od_segfile_active_size(j->sf);
    if (active && active + group.len > j->o.segment_bytes) ok = roll(j, first, why, sizeof why) == 0;
    ok = ok && commit_group(j, &group, why, sizeof why);
    pthread_mutex_lock(&j->mu);
    if (ok) {
      j->segs[j->nsegs - 1].committed = od_segfile_active_size(j->sf);
      j->committed = end;
    } else if (!j->broken) {
      j->broken = true;
      snprintf(j->broken_msg, sizeof j->broken_msg, "%s", why);
      od_warn("http source: %s; refusing new events until the pipeline restarts", why);
    }
    hs_ids_settle(j->ids, ids, nids, ok);
    j->gen_done++;
    pthread_cond_broadcast(&j->done);
    pthread_cond_broadcast(&j->readable);
  }
  pthread_mutex_unlock(&j->mu);
  free(group.p);
  free(ids);
  return NULL;
}

int hs_journal_open(const hs_journal_opts *o, hs_journal **out, od_error *err) {
  hs_journal *j = calloc(1, sizeof *j);
  if (!j) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  j->o = *o;
  j->rdr = (od_segfile_reader)OD_SEGFILE_READER_INIT;
  snprintf(j->dir, sizeof j->dir, "%s", o->dir);
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->work, NULL);
  pthread_cond_init(&j->done, NULL);
  pthread_cond_init(&j->readable, NULL);
  int rc = OD_OK;
  if (hs_mkdirs(j->dir)) rc = OD_FAIL(err, OD_EIO, "%s: cannot create the journal directory: %s", j->dir, strerror(errno));
  od_segfile_opts so = {.dir = j->dir, .suffix = ".seg", .what = "http journal", .kr = o->kr};
  if (!rc) rc = od_segfile_open(&so, &j->sf, err);
  if (!rc) rc = hs_ids_open(j->dir, o->id_retention_s, o->id_max, &j->ids, err);
  if (!rc) rc = scan(j, err);
  if (!rc && pthread_create(&j->committer, NULL, committer_main, j))
    rc = OD_FAIL(err, OD_ENOMEM, "%s: cannot start the journal's committer thread", j->dir);
  if (rc) {
    hs_journal_close(j);
    return rc;
  }
  j->committer_started = true;
  *out = j;
  return OD_OK;
}

void hs_journal_close(hs_journal *j) {
  if (!j) return;
  pthread_mutex_lock(&j->mu);
  j->stop = true;
  pthread_cond_broadcast(&j->work);
  pthread_mutex_unlock(&j->mu);
  if (j->committer_started) pthread_join(j->committer, NULL);
  od_segfile_close(j->sf);
  od_segfile_reader_close(&j->rdr);
  if (j->rbuf.p) memset(j->rbuf.p, 0, j->rbuf.len);
  free(j->rbuf.p);
  hs_ids_close(j->ids);
  free(j->segs);
  free(j->marks);
  free(j->pending.p);
  free(j->pending_ids);
  pthread_mutex_destroy(&j->mu);
  pthread_cond_destroy(&j->work);
  pthread_cond_destroy(&j->done);
  pthread_cond_destroy(&j->readable);
  free(j);
}

/* ---- appending ---- */

int hs_journal_append(hs_journal *j, hs_batch *b, hs_append_result *r) {
  memset(r, 0, sizeof *r);
  r->seqs = calloc(b->n, sizeof *r->seqs);
  char **texts = calloc(b->n, sizeof *texts);
  bool *fresh = calloc(b->n, sizeof *fresh);
  int rc = OD_OK;
  if (!r->seqs || !texts || !fresh) rc = OD_ENOMEM;
  for (size_t i = 0; !rc && i < b->n; i++)
    if (!(texts[i] = json_dumps(json_array_get((json_t *)b->items, i), JSON_COMPACT))) rc = OD_ENOMEM;
  if (rc) {
    r->status = 503;
    r->retry_after = 1;
    snprintf(r->msg, sizeof r->msg, "out of memory");
    goto out;
  }
  pthread_mutex_lock(&j->mu);
  for (;;) {
    if (j->broken) {
      r->status = 503;
      r->retry_after = 5;
      snprintf(r->msg, sizeof r->msg, "the journal cannot be written (%.400s); retry later", j->broken_msg);
      break;
    }
    bool wait = false;
    size_t nfresh = 0;
    for (size_t i = 0; i < b->n && !r->status; i++) {
      uint64_t seq, hash;
      int st = hs_ids_get(j->ids, b->ids[i], &seq, &hash);
      fresh[i] = st == HS_ID_ABSENT;
      nfresh += fresh[i];
      if (st == HS_ID_PENDING) wait = true;
      if (st != HS_ID_ABSENT && hash != b->hashes[i]) {
        r->status = 409;
        char at[40];
        if (b->single) snprintf(at, sizeof at, "$");
        else snprintf(at, sizeof at, "$[%zu]", i);
        snprintf(r->msg, sizeof r->msg, "%s.correlation_id: '%.140s' was accepted before (sequence %" PRIu64
                 ") with different content; a correlation id names one event (use a new id for a new event)",
                 at, b->ids[i], seq);
      }
      r->seqs[i] = seq;
    }
    if (r->status) break;
    if (wait) { /* the same id is being committed by another request: answer as it will be answered */
      pthread_cond_wait(&j->done, &j->mu);
      continue;
    }
    r->duplicates = b->n - nfresh;
    if (!nfresh) {
      r->status = 200;
      break;
    }
    if (j->appended - j->acked > j->o.max_unacked) {
      r->status = 503;
      r->retry_after = 1;
      snprintf(r->msg, sizeof r->msg, "backpressure: %" PRIu64 " bytes of accepted events are not yet in every sink "
               "(limit max_unacked_bytes %" PRIu64 "); retry later", j->appended - j->acked, j->o.max_unacked);
      break;
    }
    /* The record: header, then "[e1,e2,...]" of the fresh events. */
    uint64_t first = j->next_seq;
    int64_t now = od_now_us();
    size_t start = j->pending.len;
    uint8_t h[4 + HDR] = {0};
    bool oom = buf_add(&j->pending, h, 4 + HDR) || buf_add(&j->pending, "[", 1);
    size_t k = 0;
    for (size_t i = 0; i < b->n && !oom; i++) {
      if (!fresh[i]) continue;
      r->seqs[i] = first + k;
      oom = (k && buf_add(&j->pending, ",", 1)) || buf_add(&j->pending, texts[i], strlen(texts[i]));
      k++;
    }
    oom = oom || buf_add(&j->pending, "]", 1);
    if (!oom && j->npending_ids + nfresh > j->pending_ids_cap) {
      size_t cap = (j->npending_ids + nfresh) * 2;
      const char **p = realloc(j->pending_ids, cap * sizeof *p);
      if (p) {
        j->pending_ids = p;
        j->pending_ids_cap = cap;
      } else {
        oom = true;
      }
    }
    size_t len = j->pending.len - start - 4 - HDR;
    if (oom || len > MAX_PAYLOAD) {
      j->pending.len = start;
      r->status = oom ? 503 : 413;
      r->retry_after = 1;
      snprintf(r->msg, sizeof r->msg, oom ? "out of memory" : "$: the batch is too large for one journal record");
      break;
    }
    uint8_t *hp = (uint8_t *)j->pending.p + start;
    put32(hp, (uint32_t)(HDR + len));
    put64(hp + 4, first);
    put32(hp + 12, (uint32_t)nfresh);
    put32(hp + 16, 0);
    put64(hp + 20, (uint64_t)now);
    for (size_t i = 0; i < b->n; i++)
      if (fresh[i]) {
        hs_ids_put(j->ids, b->ids[i], r->seqs[i], b->hashes[i], now, false);
        j->pending_ids[j->npending_ids++] = b->ids[i];
      }
    if (start == 0) j->pending_first = first;
    j->next_seq = first + nfresh;
    j->pending_end = j->next_seq;
    push_mark(j, j->next_seq, od_segfile_frame_size(j->sf, HDR + len));
    pthread_cond_signal(&j->work);
    uint64_t mine = j->next_seq;
    while (j->committed < mine && !j->broken) pthread_cond_wait(&j->done, &j->mu);
    if (j->committed >= mine) {
      r->status = 200;
    } else {
      r->status = 503;
      r->retry_after = 5;
      snprintf(r->msg, sizeof r->msg, "the journal cannot be written (%.400s); retry later", j->broken_msg);
    }
    break;
  }
  pthread_mutex_unlock(&j->mu);
out:
  for (size_t i = 0; texts && i < b->n; i++) free(texts[i]);
  free(texts);
  free(fresh);
  return OD_OK;
}

/* ---- reading ---- */

static const seg *seg_of(hs_journal *j, uint64_t first) {
  for (size_t i = 0; i < j->nsegs; i++)
    if (j->segs[i].first == first) return &j->segs[i];
  return NULL;
}

int hs_journal_seek(hs_journal *j, uint64_t from, od_error *err) {
  pthread_mutex_lock(&j->mu);
  uint64_t oldest = j->segs[0].first, next = j->next_seq;
  bool empty_sink = from == 0;
  if (empty_sink) from = oldest;
  size_t s = 0;
  while (s + 1 < j->nsegs && j->segs[s + 1].first <= from) s++;
  uint64_t first = j->segs[s].first;
  pthread_mutex_unlock(&j->mu);
  if (empty_sink && oldest > 1)
    return OD_FAIL(err, OD_EGAP, "http source: a sink holds no checkpoint but the journal in %s starts at sequence %"
                   PRIu64 " (the events before it were pruned once the other sinks held them): the new or emptied "
                   "sink would miss them. Fill it from its producers again, or, to start everything over, stop odsync "
                   "and remove %s together with every sink's data", j->dir, oldest, j->dir);
  if (from < oldest)
    return OD_FAIL(err, OD_EGAP, "http source: the sink needs events from sequence %" PRIu64 " but the journal in %s "
                   "starts at %" PRIu64 " (pruned once every sink held them): this sink was emptied or is new; "
                   "fill it from its producers again, or point the pipeline at the sink it had", from, j->dir, oldest);
  if (from > next)
    return OD_FAIL(err, OD_EGAP, "http source: the sink holds events up to sequence %" PRIu64 " but the journal in %s "
                   "ends at %" PRIu64 ": the journal directory was removed or replaced; restore it, or start the sink afresh",
                   from, j->dir, next);
  od_segfile_reader_close(&j->rdr);
  j->rseg = first;
  j->roff = 0;
  j->rfrom = from;
  return OD_OK;
}

int hs_journal_next(hs_journal *j, int timeout_ms, uint64_t *seq_first, uint32_t *count, int64_t *at_us, char **payload,
                    size_t *len, od_error *err) {
  for (;;) {
    pthread_mutex_lock(&j->mu);
    if (j->broken) {
      pthread_mutex_unlock(&j->mu);
      return OD_FAIL_RETRY(err, OD_EIO, "http source: %s", j->broken_msg);
    }
    const seg *s = seg_of(j, j->rseg);
    if (!s) {
      pthread_mutex_unlock(&j->mu);
      return OD_FAIL_RETRY(err, OD_EIO, "http source: journal segment %" PRIu64 " vanished while read", j->rseg);
    }
    bool last = s == &j->segs[j->nsegs - 1];
    uint64_t limit = s->committed, next_first = last ? 0 : s[1].first;
    if (j->roff >= limit && last) {
      if (timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&j->readable, &j->mu, &ts);
        timeout_ms = 0;
        pthread_mutex_unlock(&j->mu);
        continue;
      }
      *seq_first = j->committed;
      pthread_mutex_unlock(&j->mu);
      return OD_AGAIN;
    }
    pthread_mutex_unlock(&j->mu);
    if (j->roff >= limit) { /* rolled and read through: the next segment */
      od_segfile_reader_close(&j->rdr);
      j->rseg = next_first;
      j->roff = 0;
      continue;
    }
    uint32_t fs = 0;
    int rc = od_segfile_read(j->sf, &j->rdr, j->rseg, j->roff, limit, &j->rbuf, &fs, err);
    if (rc) return rc;
    const uint8_t *h = j->rbuf.p;
    if (j->rbuf.len < HDR)
      return OD_FAIL(err, OD_EIO, "http source: journal segment %" PRIu64 " in %s: malformed record at offset %"
                     PRIu64, j->rseg, j->dir, j->roff);
    size_t n = j->rbuf.len - HDR;
    j->roff += fs;
    uint64_t first = get64(h);
    uint32_t cnt = get32(h + 8);
    if (first + cnt <= j->rfrom) continue; /* the sinks hold it */
    char *p = malloc(n + 1);
    if (!p) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    memcpy(p, h + HDR, n);
    p[n] = '\0';
    memset(j->rbuf.p, 0, j->rbuf.len);
    *seq_first = first;
    *count = cnt;
    *at_us = (int64_t)get64(h + 16);
    *payload = p;
    *len = n;
    return OD_OK;
  }
}

uint64_t hs_journal_next_seq(hs_journal *j) {
  pthread_mutex_lock(&j->mu);
  uint64_t v = j->committed;
  pthread_mutex_unlock(&j->mu);
  return v;
}

uint64_t hs_journal_groups(hs_journal *j) {
  pthread_mutex_lock(&j->mu);
  uint64_t v = j->gen_done;
  pthread_mutex_unlock(&j->mu);
  return v;
}

uint64_t hs_journal_unacked(hs_journal *j) {
  pthread_mutex_lock(&j->mu);
  uint64_t v = j->appended - j->acked;
  pthread_mutex_unlock(&j->mu);
  return v;
}

int hs_journal_ack(hs_journal *j, uint64_t durable, od_error *err) {
  pthread_mutex_lock(&j->mu);
  if (durable <= j->durable) {
    pthread_mutex_unlock(&j->mu);
    return OD_OK;
  }
  j->durable = durable;
  while (j->mlen && j->marks[j->mhead].end <= durable) {
    j->acked = j->marks[j->mhead].cum;
    j->mhead++;
    j->mlen--;
  }
  /* Segments wholly below `durable` (the next one starts at or before it), never the active one. */
  size_t drop = 0;
  while (drop + 1 < j->nsegs && j->segs[drop + 1].first <= durable && j->segs[drop].first != j->rseg) drop++;
  uint64_t firsts[64];
  size_t nd = drop < 64 ? drop : 64;
  for (size_t i = 0; i < nd; i++) firsts[i] = j->segs[i].first;
  int rc = OD_OK;
  if (nd && !(rc = hs_ids_sync(j->ids, err))) {
    memmove(j->segs, j->segs + nd, (j->nsegs - nd) * sizeof *j->segs);
    j->nsegs -= nd;
  }
  pthread_mutex_unlock(&j->mu);
  if (rc || !nd) return rc;
  for (size_t i = 0; i < nd; i++) {
    char path[4300];
    seg_path(j, firsts[i], path, sizeof path);
    if (unlink(path) && errno != ENOENT) od_warn("http source: cannot remove %s: %s", path, strerror(errno));
    else od_debug("http source: removed %s (every sink holds its events)", path);
  }
  od_error ignored;
  od_segfile_sync_dir(j->sf, &ignored);
  return OD_OK;
}
