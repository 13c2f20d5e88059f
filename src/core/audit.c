/* audit.c — see audit.h. The writer (records, rotation, fsync grouping, head files) and the
 * verifier share the line format defined here and nowhere else. */
#include "core/audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/clock.h"
#include "core/log.h"

#define HASH_HEX 64
#define PROCESS_LOG "odsync-process" /* not a valid pipeline name (a dash) */
#define MAX_LOGS 64
#define IDLE_RECORD_US 60000000LL    /* an idle checkpoint advance is recorded at most once a minute per sink */
static const char ZERO_HASH[HASH_HEX + 1] = "0000000000000000000000000000000000000000000000000000000000000000";

typedef struct known_pos {
  char sink[64];
  char pos[OD_POS_TEXT_MAX]; /* the last position the log holds for this sink */
  int64_t idle_at;           /* monotonic µs of the last idle record */
} known_pos;

typedef struct alog {
  char name[128];
  int fd;
  uint64_t seq;              /* of the last record written (0: none ever) */
  char last[HASH_HEX + 1];   /* its hash */
  uint64_t seg_first;        /* seq of the current segment's first record (0: empty segment) */
  uint64_t size;             /* bytes of the current segment */
  bool dirty;                /* records written since the last fsync */
  int64_t synced_at;         /* monotonic µs of the last fsync */
  bool failed;               /* a write failed: said once, later records are dropped */
  known_pos known[OD_SINKS_MAX];
  int nknown;
} alog;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool g_on; /* written under g_lock; read without it by the hot-path checks */
static char *g_dir;
static od_audit_config g_cfg;
static char g_config_hash[HASH_HEX + 1];
static alog *g_logs[MAX_LOGS];
static int g_nlogs;

/* ---- small helpers -------------------------------------------------------------------------- */

static void hex(const unsigned char *d, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  out[2 * n] = 0;
}

static int sha256_hex(const void *data, size_t len, char *out) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) return -1;
  hex(md, 32, out);
  return 0;
}

void od_audit_json_str(od_sqlbuf *b, const char *v) {
  if (!v) {
    od_sqlbuf_add(b, "null");
    return;
  }
  od_sqlbuf_add(b, "\"");
  for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
    if (*s == '"' || *s == '\\') {
      char e[3] = {'\\', (char)*s, 0};
      od_sqlbuf_add(b, e);
    } else if (*s < 0x20) {
      od_sqlbuf_addf(b, "\\u%04x", *s);
    } else {
      od_sqlbuf_addn(b, s, 1);
    }
  }
  od_sqlbuf_add(b, "\"");
}

static void iso_now(char *buf, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  if (k && k < n) snprintf(buf + k, n - k, ".%06dZ", (int)(ts.tv_nsec / 1000) % 1000000);
}

static void seg_path(const char *dir, const char *name, uint64_t first, char *out, size_t n) {
  if (first)
    snprintf(out, n, "%s/%s.%012llu.jsonl", dir, name, (unsigned long long)first);
  else
    snprintf(out, n, "%s/%s.jsonl", dir, name);
}

/* The value of a top-level string member "key":"..." of a record line (no escapes in the values
 * read this way: positions, sink names), copied into out; false when absent. */
static bool member(const char *line, size_t len, const char *key, char *out, size_t n) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *p = memmem(line, len, pat, strlen(pat));
  if (!p) return false;
  p += strlen(pat);
  const char *e = memchr(p, '"', len - (size_t)(p - line));
  if (!e || (size_t)(e - p) >= n) return false;
  memcpy(out, p, (size_t)(e - p));
  out[e - p] = 0;
  return true;
}

/* A complete record line (without its newline): its seq, prev and hash fields at their places.
 * The line ends with ,"prev":"<64>","hash":"<64>"} */
#define TAIL_LEN (9 + HASH_HEX + 10 + HASH_HEX + 2)
static bool parse_line(const char *line, size_t len, uint64_t *seq, char *prev, char *hash) {
  if (len < TAIL_LEN + 10 || strncmp(line, "{\"seq\":", 7) != 0) return false;
  const char *t = line + len - TAIL_LEN;
  if (strncmp(t, ",\"prev\":\"", 9) != 0 || strncmp(t + 9 + HASH_HEX, "\",\"hash\":\"", 10) != 0 ||
      strncmp(line + len - 2, "\"}", 2) != 0)
    return false;
  memcpy(prev, t + 9, HASH_HEX);
  prev[HASH_HEX] = 0;
  memcpy(hash, t + 9 + HASH_HEX + 10, HASH_HEX);
  hash[HASH_HEX] = 0;
  char *end;
  *seq = strtoull(line + 7, &end, 10);
  return end != line + 7 && *end == ',';
}

/* The bytes the hash covers: everything before ,"hash": */
static size_t hashed_len(size_t len) { return len - (10 + HASH_HEX + 2) + 1; }

static known_pos *known_of(alog *l, const char *sink) {
  for (int i = 0; i < l->nknown; i++)
    if (!strcmp(l->known[i].sink, sink)) return &l->known[i];
  if (l->nknown == OD_SINKS_MAX) return NULL;
  known_pos *k = &l->known[l->nknown++];
  memset(k, 0, sizeof *k);
  snprintf(k->sink, sizeof k->sink, "%s", sink);
  return k;
}

/* What a line tells about a sink's position. */
static void learn(alog *l, const char *line, size_t len) {
  char sink[64], pos[OD_POS_TEXT_MAX];
  if (!member(line, len, "sink", sink, sizeof sink)) return;
  if (!member(line, len, "to", pos, sizeof pos) && !member(line, len, "position", pos, sizeof pos)) return;
  known_pos *k = known_of(l, sink);
  if (k) snprintf(k->pos, sizeof k->pos, "%s", pos);
}

/* Read a segment: the chain state at its end and the sinks' positions. *complete_end: the offset
 * after the last complete line (a crash may leave a partial line after it). */
static int scan_segment(alog *l, const char *path, off_t *complete_end, bool *any) {
  FILE *f = fopen(path, "r");
  *complete_end = 0;
  *any = false;
  if (!f) return errno == ENOENT ? 0 : -1;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  off_t off = 0;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (line[n - 1] != '\n') break; /* partial: cut by the caller */
    uint64_t seq;
    char prev[HASH_HEX + 1], hash[HASH_HEX + 1];
    off += n;
    *complete_end = off;
    if (!parse_line(line, (size_t)n - 1, &seq, prev, hash)) continue;
    if (!*any) l->seg_first = seq;
    *any = true;
    l->seq = seq;
    memcpy(l->last, hash, sizeof l->last);
    learn(l, line, (size_t)n - 1);
  }
  free(line);
  fclose(f);
  return 0;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The head file: "<seq> <hash>\n" of the last record known to be on disk, replaced atomically. */
static void write_head(alog *l) {
  char path[4096], tmp[4200], text[128];
  snprintf(path, sizeof path, "%s/%s.head", g_dir, l->name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int len = snprintf(text, sizeof text, "%llu %s\n", (unsigned long long)l->seq, l->last);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = write_all(fd, text, (size_t)len) == 0 && fsync(fd) == 0;
  close(fd);
  if (ok) rename(tmp, path);
}

static void sync_log(alog *l) {
  if (!l->dirty || l->fd < 0) return;
  if (fdatasync(l->fd) == 0) write_head(l);
  l->dirty = false;
  l->synced_at = od_mono_us();
}

static alog *log_open(const char *name) {
  for (int i = 0; i < g_nlogs; i++)
    if (!strcmp(g_logs[i]->name, name)) return g_logs[i];
  if (g_nlogs == MAX_LOGS) return NULL;
  alog *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  snprintf(l->name, sizeof l->name, "%s", name);
  memcpy(l->last, ZERO_HASH, sizeof l->last);
  l->fd = -1;
  /* The chain goes on from the newest rotated segment, then the current one. */
  DIR *d = opendir(g_dir);
  uint64_t newest = 0;
  size_t nl = strlen(name);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      unsigned long long first;
      char tail[16];
      if (strncmp(e->d_name, name, nl) || e->d_name[nl] != '.') continue;
      if (sscanf(e->d_name + nl + 1, "%12llu.%7s", &first, tail) == 2 && !strcmp(tail, "jsonl") && first > newest)
        newest = first;
    }
    closedir(d);
  }
  char path[4096];
  off_t end;
  bool any;
  if (newest) {
    seg_path(g_dir, name, newest, path, sizeof path);
    scan_segment(l, path, &end, &any);
  }
  seg_path(g_dir, name, 0, path, sizeof path);
  l->seg_first = 0;
  if (scan_segment(l, path, &end, &any) != 0) od_warn("audit: cannot read %s: %s", path, strerror(errno));
  if (!any) l->seg_first = 0;
  l->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (l->fd < 0) {
    od_warn("audit: cannot open %s: %s; the audit log of %s is not written", path, strerror(errno), name);
    free(l);
    return NULL;
  }
  struct stat st;
  if (fstat(l->fd, &st) == 0 && st.st_size > end) {
    /* A record cut by a crash in the middle of its write: it never counted (not fsynced). */
    od_warn("audit: %s ends with a partial record (%lld bytes, a crash while writing it); cut", path,
            (long long)(st.st_size - end));
    if (ftruncate(l->fd, end) != 0) od_warn("audit: cannot cut %s: %s", path, strerror(errno));
  }
  l->size = (uint64_t)end;
  l->synced_at = od_mono_us();
  g_logs[g_nlogs++] = l;
  return l;
}

static int rotate(alog *l) {
  sync_log(l);
  char from[4096], to[4096];
  seg_path(g_dir, l->name, 0, from, sizeof from);
  /* named by its first record's seq (a segment without a readable record: by the next one) */
  seg_path(g_dir, l->name, l->seg_first ? l->seg_first : l->seq + 1, to, sizeof to);
  close(l->fd);
  l->fd = -1;
  if (rename(from, to) != 0) od_warn("audit: cannot rotate %s to %s: %s", from, to, strerror(errno));
  l->fd = open(from, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  l->size = 0;
  l->seg_first = 0;
  return l->fd < 0 ? -1 : 0;
}

/* Append one record (lock held). */
static int append(alog *l, const char *kind, const char *fields) {
  if (l->failed) return OD_EIO;
  od_sqlbuf b = {0};
  char when[48];
  iso_now(when, sizeof when);
  od_sqlbuf_addf(&b, "{\"seq\":%llu,\"time\":\"%s\",\"pipeline\":", (unsigned long long)(l->seq + 1), when);
  od_audit_json_str(&b, strcmp(l->name, PROCESS_LOG) ? l->name : NULL);
  od_sqlbuf_add(&b, ",\"kind\":");
  od_audit_json_str(&b, kind);
  if (fields && *fields) {
    size_t at = b.len + 1;
    od_sqlbuf_add(&b, ",");
    od_sqlbuf_add(&b, fields);
    for (size_t i = at; i < b.len && !b.oom; i++)
      if (b.p[i] == '\n' || b.p[i] == '\r') b.p[i] = ' ';
  }
  od_sqlbuf_addf(&b, ",\"prev\":\"%s\"", l->last);
  char hash[HASH_HEX + 1];
  if (b.oom || sha256_hex(b.p, b.len, hash) != 0) {
    od_sqlbuf_free(&b);
    return OD_ENOMEM;
  }
  od_sqlbuf_addf(&b, ",\"hash\":\"%s\"}\n", hash);
  if (b.oom) {
    od_sqlbuf_free(&b);
    return OD_ENOMEM;
  }
  if (l->size && l->size + b.len > g_cfg.max_bytes && rotate(l) != 0) {
    l->failed = true;
    od_error_log("audit: cannot open a new segment of %s's log: %s; audit records are no longer written", l->name,
                 strerror(errno));
    od_sqlbuf_free(&b);
    return OD_EIO;
  }
  if (write_all(l->fd, b.p, b.len) != 0) {
    l->failed = true;
    od_error_log("audit: cannot write %s's log in %s: %s; audit records are no longer written", l->name, g_dir,
                 strerror(errno));
    od_sqlbuf_free(&b);
    return OD_EIO;
  }
  l->seq++;
  memcpy(l->last, hash, sizeof l->last);
  if (!l->seg_first) l->seg_first = l->seq;
  l->size += b.len;
  l->dirty = true;
  od_sqlbuf_free(&b);
  if (g_cfg.fsync_ms == 0 || od_mono_us() - l->synced_at >= (int64_t)g_cfg.fsync_ms * 1000) sync_log(l);
  return OD_OK;
}

/* ---- public: lifecycle ---------------------------------------------------------------------- */

int od_audit_init(const od_config *root, od_error *err) {
  pthread_mutex_lock(&g_lock);
  g_cfg = root->audit;
  if (!g_cfg.enabled) {
    pthread_mutex_unlock(&g_lock);
    return OD_OK;
  }
  if (!g_cfg.max_bytes) g_cfg.max_bytes = 64u << 20;
  size_t n = strlen(root->state_dir) + 8;
  free(g_dir);
  g_dir = malloc(n);
  if (!g_dir) {
    pthread_mutex_unlock(&g_lock);
    return OD_FAIL(err, OD_ENOMEM, "audit: out of memory");
  }
  snprintf(g_dir, n, "%s/audit", root->state_dir);
  mkdir(root->state_dir, 0700);
  if (mkdir(g_dir, 0700) != 0 && errno != EEXIST) {
    int e = errno;
    pthread_mutex_unlock(&g_lock);
    return OD_FAIL(err, OD_EIO, "audit: cannot create %s: %s (set state_dir to a writable directory, or "
                   "audit: { enabled: false })", g_dir, strerror(e));
  }
  /* The config hash: the file's bytes as written (references unresolved, so no secret is hashed). */
  char h[HASH_HEX + 1];
  od_audit_file_hash(root->file, h);
  od_audit_set_config_hash(h);
  g_on = true;
  pthread_mutex_unlock(&g_lock);
  return OD_OK;
}

void od_audit_shutdown(void) {
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_nlogs; i++) {
    sync_log(g_logs[i]);
    if (g_logs[i]->fd >= 0) close(g_logs[i]->fd);
    free(g_logs[i]);
  }
  g_nlogs = 0;
  g_on = false;
  free(g_dir);
  g_dir = NULL;
  pthread_mutex_unlock(&g_lock);
}

bool od_audit_enabled(void) {
  pthread_mutex_lock(&g_lock);
  bool on = g_on;
  pthread_mutex_unlock(&g_lock);
  return on;
}

const char *od_audit_config_hash(void) { return g_on ? g_config_hash : ""; }

void od_audit_file_hash(const char *path, char out[65]) {
  snprintf(out, 65, "unknown");
  FILE *f = path ? fopen(path, "rb") : NULL;
  if (!f) return;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char buf[8192], dg[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  size_t r;
  if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(md, buf, r);
    if (EVP_DigestFinal_ex(md, dg, &outlen) && outlen == 32) hex(dg, 32, out);
  }
  EVP_MD_CTX_free(md);
  fclose(f);
}

/* g_config_hash may be replaced by a config reload: written and read under g_hash_lock (its own:
 * callers may hold g_lock). */
static pthread_mutex_t g_hash_lock = PTHREAD_MUTEX_INITIALIZER;

void od_audit_set_config_hash(const char *hash) {
  pthread_mutex_lock(&g_hash_lock);
  snprintf(g_config_hash, sizeof g_config_hash, "%s", hash);
  pthread_mutex_unlock(&g_hash_lock);
}

static void config_hash_copy(char out[HASH_HEX + 1]) {
  pthread_mutex_lock(&g_hash_lock);
  memcpy(out, g_config_hash, HASH_HEX + 1);
  pthread_mutex_unlock(&g_hash_lock);
}

int od_audit_record(const char *pipeline, const char *kind, const char *json_fields) {
  pthread_mutex_lock(&g_lock);
  int rc = OD_OK;
  if (g_on) {
    alog *l = log_open(pipeline ? pipeline : PROCESS_LOG);
    rc = l ? append(l, kind, json_fields) : OD_EIO;
  }
  pthread_mutex_unlock(&g_lock);
  return rc;
}

/* ---- public: what the pipeline records ------------------------------------------------------ */

void od_audit_tally_add(od_audit_tally *t, const od_change *ch, size_t n) {
  const od_relation *last = NULL;
  int at = -1;
  for (size_t i = 0; i < n; i++) {
    const od_relation *rel = ch[i].rel;
    if (!rel) continue;
    if (rel != last) {
      last = rel;
      at = -1;
      for (int k = 0; k < t->n; k++)
        if (t->rel[k] == rel || (!strcmp(t->rel[k]->name, rel->name) && !strcmp(t->rel[k]->schema, rel->schema))) {
          at = k;
          break;
        }
      if (at < 0 && t->n < OD_AUDIT_TALLY_MAX) {
        at = t->n++;
        t->rel[at] = rel;
        t->rows[at] = 0;
      }
    }
    if (at >= 0)
      t->rows[at]++;
    else
      t->other++;
    if (ch[i].correlation_id) {
      if (t->listed < OD_AUDIT_CIDS_MAX) {
        if (t->listed) od_sqlbuf_add(&t->cids, ",");
        od_audit_json_str(&t->cids, ch[i].correlation_id);
        t->listed++;
      }
      t->ncids++;
    }
  }
}

void od_audit_tally_reset(od_audit_tally *t) {
  t->n = 0;
  t->other = 0;
  t->ncids = t->listed = 0;
  od_sqlbuf_reset(&t->cids);
}

void od_audit_tally_free(od_audit_tally *t) {
  od_sqlbuf_free(&t->cids);
  t->ncids = t->listed = 0;
}

void od_audit_batch(const char *pipeline, const char *sink, const char *transforms_id, const od_pos *from,
                    const od_pos *to, uint64_t rows, uint64_t txns, od_audit_tally *tally) {
  if (!g_on) { /* unlocked read: a stale answer costs one record around init/shutdown */
    od_audit_tally_reset(tally);
    return;
  }
  od_sqlbuf b = {0};
  char pf[OD_POS_TEXT_MAX], pt[OD_POS_TEXT_MAX];
  od_sqlbuf_add(&b, "\"sink\":");
  od_audit_json_str(&b, sink);
  od_sqlbuf_add(&b, ",\"from\":");
  od_audit_json_str(&b, od_pos_is_none(from) ? "" : od_pos_to_text(from, pf, sizeof pf));
  od_sqlbuf_add(&b, ",\"to\":");
  od_audit_json_str(&b, od_pos_to_text(to, pt, sizeof pt));
  od_sqlbuf_addf(&b, ",\"rows\":%llu,\"txns\":%llu,\"tables\":{", (unsigned long long)rows, (unsigned long long)txns);
  for (int i = 0; i < tally->n; i++) {
    char name[300];
    snprintf(name, sizeof name, "%s.%s", tally->rel[i]->schema, tally->rel[i]->name);
    if (i) od_sqlbuf_add(&b, ",");
    od_audit_json_str(&b, name);
    od_sqlbuf_addf(&b, ":%llu", (unsigned long long)tally->rows[i]);
  }
  od_sqlbuf_add(&b, "}");
  if (tally->other) od_sqlbuf_addf(&b, ",\"rows_other_tables\":%llu", (unsigned long long)tally->other);
  od_sqlbuf_add(&b, ",\"transforms\":");
  od_audit_json_str(&b, transforms_id);
  char chash[HASH_HEX + 1];
  config_hash_copy(chash);
  od_sqlbuf_addf(&b, ",\"config\":\"%s\"", chash);
  if (tally->ncids) { /* the events' own ids: `odsync audit find ID` answers where one went */
    if (tally->cids.oom) tally->listed = 0; /* the record still goes out, with the count only */
    od_sqlbuf_add(&b, ",\"correlation_ids\":[");
    if (tally->listed) od_sqlbuf_addn(&b, tally->cids.p, tally->cids.len);
    od_sqlbuf_add(&b, "]");
    if (tally->ncids > tally->listed)
      od_sqlbuf_addf(&b, ",\"correlation_ids_total\":%llu", (unsigned long long)tally->ncids);
  }
  if (!b.oom) {
    pthread_mutex_lock(&g_lock);
    alog *l = g_on ? log_open(pipeline) : NULL;
    known_pos *k = l ? known_of(l, sink) : NULL;
    /* The positions chain: a batch starts where the sink's last record left it. Idle advances are
     * recorded at most once a minute, so one not recorded yet is recorded now, before the batch. */
    if (k && !od_pos_is_none(from) && strcmp(k->pos, pf) != 0) {
      od_sqlbuf idle = {0};
      od_sqlbuf_add(&idle, "\"sink\":");
      od_audit_json_str(&idle, sink);
      od_sqlbuf_add(&idle, ",\"position\":");
      od_audit_json_str(&idle, pf);
      if (!idle.oom) append(l, "idle", idle.p);
      od_sqlbuf_free(&idle);
    }
    if (l) append(l, "batch", b.p);
    if (k) snprintf(k->pos, sizeof k->pos, "%s", pt);
    pthread_mutex_unlock(&g_lock);
  }
  od_sqlbuf_free(&b);
  od_audit_tally_reset(tally);
}

void od_audit_session(const char *pipeline, const char *sink, const od_pos *checkpoint, const char *transforms_id,
                      const char *transforms_json) {
  pthread_mutex_lock(&g_lock);
  alog *l = g_on ? log_open(pipeline) : NULL;
  if (!l) {
    pthread_mutex_unlock(&g_lock);
    return;
  }
  char cp[OD_POS_TEXT_MAX] = "";
  if (!od_pos_is_none(checkpoint)) od_pos_to_text(checkpoint, cp, sizeof cp);
  known_pos *k = known_of(l, sink);
  od_sqlbuf b = {0};
  if (k && strcmp(k->pos, cp) != 0 && (k->pos[0] || cp[0])) {
    /* The sink holds a position the log has no record of: records written after the last fsync
     * were lost in a crash, or the last idle checkpoint advances were not recorded (at most one a
     * minute is), or the log was enabled on a pipeline that already ran. */
    od_sqlbuf_add(&b, "\"sink\":");
    od_audit_json_str(&b, sink);
    od_sqlbuf_add(&b, ",\"audited_to\":");
    od_audit_json_str(&b, k->pos);
    od_sqlbuf_add(&b, ",\"checkpoint\":");
    od_audit_json_str(&b, cp);
    if (!b.oom) append(l, "gap", b.p);
    od_warn("audit: pipeline %s sink %s: the sink's checkpoint %s is not the last position in the audit log (%s): "
            "batches in between have no audit record (lost in a crash before their fsync, or idle advances); "
            "recorded as a gap", pipeline, sink, cp[0] ? cp : "(none)", k->pos[0] ? k->pos : "(none)");
    od_sqlbuf_reset(&b);
  }
  od_sqlbuf_add(&b, "\"sink\":");
  od_audit_json_str(&b, sink);
  od_sqlbuf_add(&b, ",\"checkpoint\":");
  od_audit_json_str(&b, cp);
  od_sqlbuf_add(&b, ",\"transforms\":");
  od_audit_json_str(&b, transforms_id);
  od_sqlbuf_add(&b, ",\"transform_set\":");
  od_sqlbuf_add(&b, transforms_json && *transforms_json ? transforms_json : "[]");
  char chash[HASH_HEX + 1];
  config_hash_copy(chash);
  od_sqlbuf_addf(&b, ",\"config\":\"%s\"", chash);
  if (!b.oom) append(l, "session", b.p);
  if (k) snprintf(k->pos, sizeof k->pos, "%s", cp);
  od_sqlbuf_free(&b);
  pthread_mutex_unlock(&g_lock);
}

void od_audit_position(const char *pipeline, const char *sink, const char *kind, const od_pos *pos) {
  if (od_pos_is_none(pos)) return;
  pthread_mutex_lock(&g_lock);
  alog *l = g_on ? log_open(pipeline) : NULL;
  known_pos *k = l ? known_of(l, sink) : NULL;
  char p[OD_POS_TEXT_MAX];
  od_pos_to_text(pos, p, sizeof p);
  bool idle = !strcmp(kind, "idle");
  int64_t now = od_mono_us();
  /* idle: a chance to fsync what the last batches wrote, so the head file follows within about
   * fsync_ms even when no record comes after them */
  if (l && idle && l->dirty && now - l->synced_at >= (int64_t)g_cfg.fsync_ms * 1000) sync_log(l);
  if (k && strcmp(k->pos, p) != 0 && (!idle || now - k->idle_at >= IDLE_RECORD_US)) {
    od_sqlbuf b = {0};
    od_sqlbuf_add(&b, "\"sink\":");
    od_audit_json_str(&b, sink);
    od_sqlbuf_add(&b, ",\"position\":");
    od_audit_json_str(&b, p);
    if (!b.oom) append(l, kind, b.p);
    od_sqlbuf_free(&b);
    snprintf(k->pos, sizeof k->pos, "%s", p);
    if (idle) k->idle_at = now;
  }
  pthread_mutex_unlock(&g_lock);
}

/* ---- verify --------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The segments of log `name` in dir, oldest first, the current one (0) last; -1 if dir is unreadable. */
static int list_segments(const char *dir, const char *name, uint64_t segs[4096]) {
  size_t nl = strlen(name);
  int nsegs = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    unsigned long long first;
    char tail[16];
    if (strncmp(e->d_name, name, nl) || e->d_name[nl] != '.') continue;
    if (sscanf(e->d_name + nl + 1, "%12llu.%7s", &first, tail) == 2 && !strcmp(tail, "jsonl") && nsegs < 4095)
      segs[nsegs++] = first;
  }
  closedir(d);
  qsort(segs, (size_t)nsegs, sizeof *segs, cmp_u64);
  segs[nsegs++] = 0;
  return nsegs;
}

int od_audit_find(const char *state_dir, const char *pipeline, const char *correlation_id, FILE *out, od_error *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/audit", state_dir);
  uint64_t segs[4096];
  int nsegs = list_segments(dir, pipeline, segs);
  if (nsegs < 0) {
    OD_FAIL(err, OD_EIO, "audit find: cannot open %s: %s (is state_dir right?)", dir, strerror(errno));
    return -1;
  }
  od_sqlbuf needle = {0}; /* the id as it stands in a record: a JSON string */
  od_audit_json_str(&needle, correlation_id);
  if (needle.oom) {
    od_sqlbuf_free(&needle);
    OD_FAIL(err, OD_ENOMEM, "audit find: out of memory");
    return -1;
  }
  int found = 0;
  for (int k = 0; k < nsegs; k++) {
    char path[4200];
    seg_path(dir, pipeline, segs[k], path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) continue; /* no current segment yet, or pruned meanwhile */
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
      const char *ids = strstr(line, ",\"correlation_ids\":[");
      if (!ids || !strstr(line, "\"kind\":\"batch\"")) continue;
      /* An element of the array: an unescaped quote only ever opens or closes a string, and only an
       * element's opening quote follows '[' or ',' and is closed before ',' or ']'. */
      ids += strlen(",\"correlation_ids\":");
      for (const char *p = ids + 1; (p = strstr(p, needle.p)) != NULL; p++) {
        char before = p[-1], after = p[needle.len];
        if ((before == '[' || before == ',') && (after == ',' || after == ']')) {
          fputs(line, out);
          found++;
          break;
        }
      }
    }
    free(line);
    fclose(f);
  }
  od_sqlbuf_free(&needle);
  return found;
}

int od_audit_verify(const char *state_dir, const char *pipeline, FILE *out, od_error *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/audit", state_dir);
  const char *name = pipeline ? pipeline : PROCESS_LOG;
  uint64_t segs[4096];
  int nsegs = list_segments(dir, name, segs);
  if (nsegs < 0) return OD_FAIL(err, OD_EIO, "audit verify: cannot open %s: %s (is state_dir right?)", dir, strerror(errno));
  int problems = 0, files = 0;
  uint64_t records = 0, seq_prev = 0, first_seq = 0;
  char prev_hash[HASH_HEX + 1] = "";
  bool started = false;
  /* the head: the last record known to be fsynced */
  char hpath[4200];
  snprintf(hpath, sizeof hpath, "%s/%s.head", dir, name);
  unsigned long long head_seq = 0;
  char head_hash[HASH_HEX + 1] = "";
  bool head_seen = false, head_ok = false;
  FILE *hf = fopen(hpath, "r");
  if (hf) {
    head_seen = fscanf(hf, "%llu %64s", &head_seq, head_hash) == 2;
    fclose(hf);
  }
  for (int s = 0; s < nsegs; s++) {
    char path[4200];
    seg_path(dir, name, segs[s], path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) {
      if (segs[s] == 0 && errno == ENOENT) continue;
      fprintf(out, "problem: cannot read %s: %s\n", path, strerror(errno));
      problems++;
      continue;
    }
    files++;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
      lineno++;
      if (line[n - 1] != '\n') {
        fprintf(out, "note: %s:%ld: a partial last record (%zd bytes, a crash while writing it; the next start cuts it)\n",
                path, lineno, n);
        break;
      }
      size_t len = (size_t)n - 1;
      uint64_t seq;
      char prev[HASH_HEX + 1], hash[HASH_HEX + 1], calc[HASH_HEX + 1];
      if (!parse_line(line, len, &seq, prev, hash)) {
        fprintf(out, "problem: %s:%ld: not an audit record (its seq, prev or hash field is missing or moved)\n", path,
                lineno);
        problems++;
        continue;
      }
      records++;
      if (sha256_hex(line, hashed_len(len), calc) != 0 || strcmp(calc, hash) != 0) {
        fprintf(out, "problem: %s:%ld: record seq %llu was edited: its hash does not match its content\n", path,
                lineno, (unsigned long long)seq);
        problems++;
      }
      if (!started) {
        first_seq = seq;
        if (seq == 1 && strcmp(prev, ZERO_HASH) != 0) {
          fprintf(out, "problem: %s:%ld: the first record (seq 1) does not start the chain\n", path, lineno);
          problems++;
        } else if (seq != 1) {
          fprintf(out, "note: the log starts at seq %llu: older segments were removed; the chain is checked from "
                  "there\n", (unsigned long long)seq);
        }
        started = true;
      } else {
        if (strcmp(prev, prev_hash) != 0) {
          fprintf(out, "problem: %s:%ld: record seq %llu does not follow the record before it (seq %llu): a record "
                  "was deleted, inserted or moved here\n", path, lineno, (unsigned long long)seq,
                  (unsigned long long)seq_prev);
          problems++;
        } else if (seq != seq_prev + 1) {
          fprintf(out, "problem: %s:%ld: record seq %llu follows seq %llu\n", path, lineno, (unsigned long long)seq,
                  (unsigned long long)seq_prev);
          problems++;
        }
      }
      if (head_seen && seq == head_seq) head_ok = !strcmp(hash, head_hash);
      seq_prev = seq;
      memcpy(prev_hash, hash, sizeof prev_hash);
    }
    free(line);
    fclose(f);
  }
  if (!files) return OD_FAIL(err, OD_EIO, "audit verify: no audit log of %s in %s", pipeline ? pipeline : "the process", dir);
  if (head_seen && !head_ok) {
    if (seq_prev < head_seq)
      fprintf(out, "problem: the log ends at seq %llu but seq %llu was written and fsynced (%s): records were cut "
              "from its end\n", (unsigned long long)seq_prev, head_seq, hpath);
    else
      fprintf(out, "problem: record seq %llu is not the one fsynced (%s says hash %.16s...): it was replaced\n",
              head_seq, hpath, head_hash);
    problems++;
  }
  fprintf(out, "audit %s: %llu records in %d segment%s, seq %llu..%llu; %s; last hash %s\n", name,
          (unsigned long long)records, files, files == 1 ? "" : "s", (unsigned long long)first_seq,
          (unsigned long long)seq_prev, problems ? "CHAIN BROKEN" : "chain intact",
          prev_hash[0] ? prev_hash : "(none)");
  if (head_seen && head_ok)
    fprintf(out, "head: seq %llu fsynced and present (records after it were written after the last fsync)\n",
            head_seq);
  else if (!head_seen)
    fprintf(out, "note: no head file (%s): a cut at the end of the log cannot be detected\n", hpath);
  return problems;
}
