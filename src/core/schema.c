/* core/schema.c — see schema.h. The history file's JSON is written and read here (a reader for
 * exactly what this file writes, tolerant of unknown keys); comparing two versions is
 * od_schema_describe_diff; the ignore policy's column maps are kept per source relation pointer.
 * Owns: the history file descriptor, every recorded version (sch_version, with its od_relation
 * and strings) and every registration (sch_src). Never touches: sinks, sources, other files.
 */
#include "core/schema.h"
#include "core/governance.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/seal.h"
#include "core/log.h"
#include "core/schema_json.h"

typedef struct sch_version {
  od_relation rel; /* owned copy; rel.previous = the version recorded before it */
  bool applied;    /* recorded while changes were carried to the sink (first sight, apply) */
  char *recreated_at; /* first version of a table re-created at the source: the text of the
                         position of the transaction that first used it, else NULL */
} sch_version;

typedef struct sch_table {
  char *qname; /* "schema.name" */
  sch_version **v;
  size_t n, cap;
} sch_table;

typedef struct sch_src { /* one registered source relation version */
  const od_relation *src;
  size_t table;
  const od_relation *pinned; /* ignore: the version the sink keeps */
  int *map;                  /* pinned->ncolumns entries: column of src, or -1 */
  bool identity;             /* map is 0..n-1 over the same number of columns */
} sch_src;

struct od_schema {
  char *path;
  char *pipeline;
  int fd;
  int policy;
  off_t size; /* bytes of complete lines in the file */
  sch_table *tables;
  size_t ntables, tcap;
  sch_src **slots; /* open addressing by src pointer */
  size_t nslots, nsrcs;
  uint64_t changes; /* versions after the first recorded since open (metrics) */
  const od_keyring *kr; /* borrowed; non-NULL: every line is sealed (encryption at rest) */
  uint64_t nrecords;    /* non-blank lines in the file: the next line's seal index */
};

static const char *file_name(const od_schema *s) {
  const char *b = strrchr(s->path, '/');
  return b ? b + 1 : s->path;
}

static const char *const POLICY_NAMES[] = {"apply", "ignore", "stop"};

static const char *policy_name(int p) { return p >= 0 && p <= 2 ? POLICY_NAMES[p] : "?"; }

/* ---- relation copies ------------------------------------------------------------------------ */

static void rel_free_copy(od_relation *r) {
  for (uint16_t i = 0; r->columns && i < r->ncolumns; i++) free(r->columns[i].name);
  free(r->columns);
  free(r->schema);
  free(r->name);
}

static void version_free(sch_version *v) {
  if (!v) return;
  rel_free_copy(&v->rel);
  free(v->recreated_at);
  free(v);
}

/* Deep copy without missing values (a recorded version never adds columns to anything). */
static sch_version *version_copy(const od_relation *src) {
  sch_version *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  od_relation *r = &v->rel;
  r->oid = src->oid;
  r->replica_identity = src->replica_identity;
  r->version = src->version;
  r->has_primary_key = src->has_primary_key;
  r->match_full_row = src->match_full_row;
  r->schema = strdup(src->schema ? src->schema : "");
  r->name = strdup(src->name ? src->name : "");
  r->columns = calloc(src->ncolumns ? src->ncolumns : 1, sizeof *r->columns);
  if (!r->schema || !r->name || !r->columns) goto oom;
  for (uint16_t i = 0; i < src->ncolumns; i++) {
    od_column *c = &r->columns[i];
    *c = src->columns[i];
    c->missing_value = NULL;
    if (!(c->name = strdup(src->columns[i].name ? src->columns[i].name : ""))) goto oom;
    r->ncolumns = (uint16_t)(i + 1);
  }
  return v;
oom:
  version_free(v);
  return NULL;
}

/* ---- comparing versions --------------------------------------------------------------------- */

/* match[i] = column of `to` matching column i of `from`, or -1. By attnum when both are known,
 * else by name; each column of `to` matches at most once. */
static void match_columns(const od_relation *from, const od_relation *to, int *match) {
  bool used[to->ncolumns ? to->ncolumns : 1];
  memset(used, 0, sizeof used);
  for (uint16_t i = 0; i < from->ncolumns; i++) {
    const od_column *f = &from->columns[i];
    match[i] = -1;
    for (uint16_t j = 0; f->attnum && j < to->ncolumns && match[i] < 0; j++)
      if (!used[j] && to->columns[j].attnum == f->attnum) match[i] = j;
    for (uint16_t j = 0; j < to->ncolumns && match[i] < 0; j++) {
      const od_column *t = &to->columns[j];
      if (!used[j] && (!t->attnum || !f->attnum) && strcmp(t->name, f->name) == 0) match[i] = j;
    }
    if (match[i] >= 0) used[match[i]] = true;
  }
}

static void type_text(const od_column *c, char *buf, size_t size) {
  if (c->type_name[0]) snprintf(buf, size, "%s", c->type_name);
  else if (c->typmod >= 0) snprintf(buf, size, "type oid %u (typmod %d)", c->type_oid, c->typmod);
  else snprintf(buf, size, "type oid %u", c->type_oid);
}

typedef struct dbuf {
  char *p;
  size_t size, len;
  int count;
} dbuf;

__attribute__((format(printf, 2, 3))) static void dadd(dbuf *b, const char *fmt, ...) {
  if (!b->size) return;
  size_t room = b->len < b->size ? b->size - b->len : 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->p + b->len, room, fmt, ap);
  va_end(ap);
  if (n > 0) b->len += (size_t)n < room ? (size_t)n : (room ? room - 1 : 0);
}

static void keys_text(dbuf *b, const od_relation *r) {
  int n = 0;
  dadd(b, "(");
  for (uint16_t i = 0; i < r->ncolumns; i++)
    if (r->columns[i].key) dadd(b, "%s%s", n++ ? ", " : "", r->columns[i].name);
  dadd(b, ")");
}

static void diff_item(dbuf *b) {
  if (b->count++) dadd(b, "; ");
}

int od_schema_describe_diff(const od_relation *from, const od_relation *to, char *buf, size_t size) {
  dbuf b = {.p = buf, .size = size};
  if (size) buf[0] = '\0';
  int match[from->ncolumns ? from->ncolumns : 1];
  match_columns(from, to, match);
  bool to_used[to->ncolumns ? to->ncolumns : 1];
  memset(to_used, 0, sizeof to_used);
  bool key_changed = false;
  for (uint16_t i = 0; i < from->ncolumns; i++) {
    const od_column *f = &from->columns[i];
    if (match[i] < 0) {
      diff_item(&b);
      dadd(&b, "column %s dropped", f->name);
      key_changed = key_changed || f->key;
      continue;
    }
    const od_column *t = &to->columns[match[i]];
    to_used[match[i]] = true;
    if (strcmp(f->name, t->name) != 0) {
      diff_item(&b);
      dadd(&b, "column %s renamed to %s", f->name, t->name);
    }
    if (f->type_oid != t->type_oid || f->typmod != t->typmod) {
      char ft[160], tt[160];
      type_text(f, ft, sizeof ft);
      type_text(t, tt, sizeof tt);
      diff_item(&b);
      dadd(&b, "column %s changed from %s to %s", t->name, ft, tt);
    }
    key_changed = key_changed || f->key != t->key;
  }
  for (uint16_t j = 0; j < to->ncolumns; j++) {
    if (to_used[j]) continue;
    char tt[160];
    type_text(&to->columns[j], tt, sizeof tt);
    diff_item(&b);
    dadd(&b, "column %s %s added", to->columns[j].name, tt);
    key_changed = key_changed || to->columns[j].key;
  }
  if (key_changed) {
    diff_item(&b);
    dadd(&b, "key changed from ");
    keys_text(&b, from);
    dadd(&b, " to ");
    keys_text(&b, to);
  }
  return b.count;
}

/* ---- the history file ----------------------------------------------------------------------- */

static sch_table *table_find(od_schema *s, const char *qname) {
  for (size_t i = 0; i < s->ntables; i++)
    if (strcmp(s->tables[i].qname, qname) == 0) return &s->tables[i];
  return NULL;
}

static sch_table *table_add(od_schema *s, const char *qname) {
  if (s->ntables == s->tcap) {
    size_t cap = s->tcap ? s->tcap * 2 : 16;
    sch_table *t = realloc(s->tables, cap * sizeof *t);
    if (!t) return NULL;
    s->tables = t;
    s->tcap = cap;
  }
  sch_table *t = &s->tables[s->ntables];
  memset(t, 0, sizeof *t);
  if (!(t->qname = strdup(qname))) return NULL;
  s->ntables++;
  return t;
}

static int table_push(sch_table *t, sch_version *v) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 4;
    sch_version **p = realloc(t->v, cap * sizeof *p);
    if (!p) return OD_ENOMEM;
    t->v = p;
    t->cap = cap;
  }
  v->rel.previous = t->n ? &t->v[t->n - 1]->rel : NULL;
  t->v[t->n++] = v;
  return OD_OK;
}

static void qualified(const od_relation *rel, char *buf, size_t size) {
  snprintf(buf, size, "%s.%s", rel->schema ? rel->schema : "", rel->name ? rel->name : "");
}

/* Append one line (already ending in '\n') and fsync; on failure the file is cut back. */
static int append_line(od_schema *s, const char *line, size_t len, od_error *err) {
  char *sealed = NULL;
  if (s->kr) { /* the JSON without its newline, sealed as record nrecords of this file */
    int rc = od_seal_line(s->kr, file_name(s), s->nrecords, line, len - 1, &sealed, &len, err);
    if (rc) return rc;
    line = sealed;
  }
  int rc = OD_OK;
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(s->fd, line + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      if (ftruncate(s->fd, s->size) != 0) { /* keep the file made of whole lines */ }
      /* Retriable at the origin (ENOSPC/EDQUOT included): the pipeline pauses and retries. */
      rc = OD_FAIL_RETRY(err, OD_EIO, "schema history %s: cannot append: %s%s", s->path, strerror(e),
                         e == ENOSPC || e == EDQUOT ? " (the state_dir's file system is full: free space "
                                                      "there; odsync retries until it can write)" : "");
      break;
    }
    done += (size_t)n;
  }
  if (!rc && fsync(s->fd) != 0) {
    int e = errno;
    if (ftruncate(s->fd, s->size) != 0) { /* as above */ }
    rc = OD_FAIL_RETRY(err, OD_EIO, "schema history %s: fsync failed: %s", s->path, strerror(e));
  }
  free(sealed);
  if (rc) return rc;
  s->size += (off_t)len;
  s->nrecords++;
  return OD_OK;
}

/* Rewrite a plain history sealed (encryption was just configured): temp file, fsync, rename. */
static int seal_existing(od_schema *s, char *text, size_t complete, od_error *err) {
  size_t plen = strlen(s->path);
  char *tmp = malloc(plen + 8);
  if (!tmp) return OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
  snprintf(tmp, plen + 8, "%s.tmp", s->path);
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = fd < 0 ? OD_FAIL(err, OD_EIO, "schema history %s: cannot create %s: %s", s->path, tmp, strerror(errno))
                  : OD_OK;
  uint64_t idx = 0;
  off_t size = 0;
  for (size_t pos = 0; !rc && pos < complete;) {
    char *nl = memchr(text + pos, '\0', complete - pos); /* load() ended every line with a NUL */
    size_t len = (size_t)(nl - (text + pos));
    const char *line = text + pos;
    pos += len + 1;
    if (!line[strspn(line, " \t\r")]) continue;
    char *sl = NULL;
    size_t sll = 0;
    rc = od_seal_line(s->kr, file_name(s), idx++, line, len, &sl, &sll, err);
    if (!rc && write(fd, sl, sll) != (ssize_t)sll)
      rc = OD_FAIL(err, OD_EIO, "schema history %s: cannot write %s: %s", s->path, tmp, strerror(errno));
    size += (off_t)sll;
    free(sl);
  }
  if (!rc && fsync(fd) != 0) rc = OD_FAIL(err, OD_EIO, "schema history %s: fsync failed: %s", tmp, strerror(errno));
  if (!rc && rename(tmp, s->path) != 0)
    rc = OD_FAIL(err, OD_EIO, "schema history %s: cannot replace it: %s", s->path, strerror(errno));
  if (rc) {
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return rc;
  }
  free(tmp);
  close(s->fd);
  close(fd);
  s->fd = open(s->path, O_RDWR | O_APPEND | O_CLOEXEC);
  if (s->fd < 0) return OD_FAIL(err, OD_EIO, "schema history %s: cannot reopen: %s", s->path, strerror(errno));
  s->size = size;
  s->nrecords = idx;
  od_info("schema history %s: encrypted with key %s (it was plain text; encryption is configured)", s->path,
          od_keyring_current(s->kr));
  return OD_OK;
}

static int record(od_schema *s, sch_table *t, const od_relation *rel, uint32_t version, bool applied,
                  const char *change, const char *recreated_at, od_error *err) {
  sch_version *v = version_copy(rel);
  if (!v || (recreated_at && !(v->recreated_at = strdup(recreated_at)))) {
    version_free(v);
    return OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
  }
  v->rel.version = version;
  v->applied = applied;
  char when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  char *line = NULL;
  size_t len = 0;
  int rc = od_schema_json_line(t->qname, &v->rel, when, policy_name(s->policy), applied, change, recreated_at, &line,
                               &len);
  if (rc == OD_OK) rc = append_line(s, line, len, err);
  else OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
  free(line);
  if (rc == OD_OK) od_gov_schema_change(s->pipeline, &v->rel, change); /* the audit log (core/governance.h) */
  if (rc == OD_OK && table_push(t, v) != OD_OK)
    rc = OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
  if (rc) version_free(v);
  return rc;
}

/* Read every complete line; cut off a truncated last line. */
static int load(od_schema *s, od_error *err) {
  struct stat st;
  if (fstat(s->fd, &st) != 0)
    return OD_FAIL(err, OD_EIO, "schema history %s: %s", s->path, strerror(errno));
  size_t size = (size_t)st.st_size;
  char *text = malloc(size + 1);
  if (!text) return OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory (%zu bytes)", s->path, size);
  size_t got = 0;
  while (got < size) {
    ssize_t n = pread(s->fd, text + got, size - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      free(text);
      return OD_FAIL(err, OD_EIO, "schema history %s: read failed: %s", s->path, n ? strerror(errno) : "short read");
    }
    got += (size_t)n;
  }
  text[size] = '\0';
  size_t complete = size;
  while (complete > 0 && text[complete - 1] != '\n') complete--;
  if (complete < size) {
    od_warn("schema history %s: dropping an incomplete last line (%zu bytes; odsync stopped while writing it)",
            s->path, size - complete);
    if (ftruncate(s->fd, (off_t)complete) != 0) {
      free(text);
      return OD_FAIL(err, OD_EIO, "schema history %s: cannot cut the incomplete last line: %s", s->path,
                     strerror(errno));
    }
  }
  s->size = (off_t)complete;
  int rc = OD_OK;
  int lineno = 0;
  /* Encrypted or plain: all lines one way. A mix means lines were put in by hand (or removed). */
  size_t nsealed = 0, nplain = 0;
  for (size_t pos = 0; pos < complete;) {
    const char *line = text + pos, *nl = memchr(line, '\n', complete - pos);
    pos = (size_t)(nl - text) + 1;
    if (line[strspn(line, " \t\r")] == '\n') continue;
    if (od_seal_is_line(line)) nsealed++;
    else nplain++;
  }
  if (nsealed && (nplain || !s->kr)) {
    free(text);
    return OD_FAIL(err, OD_ESCHEMA, "schema history %s: %s; refusing to read it (restore the file from a backup, or "
                   "remove it to start a new history)", s->path,
                   nplain ? "encrypted and plain-text lines are mixed: the file was altered"
                          : "the file is encrypted but encryption.keys is not configured (add the keys it was "
                            "written with)");
  }
  bool migrate = s->kr && nplain > 0;
  char *plain = NULL;
  for (size_t pos = 0; pos < complete && rc == OD_OK;) {
    char *nl = memchr(text + pos, '\n', complete - pos);
    *nl = '\0';
    lineno++;
    const char *line = text + pos;
    pos = (size_t)(nl - text) + 1;
    if (!line[strspn(line, " \t\r")]) continue;
    free(plain);
    plain = NULL;
    if (nsealed) {
      size_t plen = 0;
      if ((rc = od_open_line(s->kr, file_name(s), s->nrecords, line, &plain, &plen, err))) {
        od_error_prefix(err, "schema history %s:%d: ", s->path, lineno);
        break;
      }
      line = plain;
    }
    s->nrecords++;
    od_schema_json_rec r;
    char why[160];
    if (od_schema_json_parse(line, &r, why, sizeof why) != OD_OK) {
      rc = OD_FAIL(err, OD_ESCHEMA, "schema history %s:%d: %s; the file is written by odsync: restore it or "
                   "remove the line", s->path, lineno, why);
      break;
    }
    sch_version *v = calloc(1, sizeof *v);
    if (!v) {
      od_schema_json_rec_free(&r);
      rc = OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
      break;
    }
    v->rel = r.rel;
    v->applied = r.applied;
    v->recreated_at = r.recreated_at;
    sch_table *t = table_find(s, r.table);
    if (!t && !(t = table_add(s, r.table))) rc = OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
    else if (t->n && t->v[t->n - 1]->rel.version >= v->rel.version)
      rc = OD_FAIL(err, OD_ESCHEMA, "schema history %s:%d: table %s version %u is not above the previous "
                   "version %u; the file is written by odsync: restore it or remove the line",
                   s->path, lineno, r.table, v->rel.version, t->v[t->n - 1]->rel.version);
    else if (table_push(t, v) != OD_OK)
      rc = OD_FAIL(err, OD_ENOMEM, "schema history %s: out of memory", s->path);
    free(r.table);
    if (rc) version_free(v);
  }
  free(plain);
  if (!rc && migrate) rc = seal_existing(s, text, complete, err);
  free(text);
  return rc;
}

int od_schema_open(const char *state_dir, const char *pipeline, int policy, od_schema **out,
                   od_error *err) {
  return od_schema_open_sealed(state_dir, pipeline, policy, NULL, out, err);
}

int od_schema_open_sealed(const char *state_dir, const char *pipeline, int policy, const od_keyring *kr,
                          od_schema **out, od_error *err) {
  if (policy < OD_SCHEMA_APPLY || policy > OD_SCHEMA_STOP)
    return OD_FAIL(err, OD_EINVAL, "pipeline %s: unknown schema_changes policy %d", pipeline, policy);
  if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
    return OD_FAIL(err, OD_EIO, "cannot create state_dir %s: %s", state_dir, strerror(errno));
  od_schema *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", pipeline);
  s->fd = -1;
  s->policy = policy;
  s->kr = kr;
  size_t n = strlen(state_dir) + strlen(pipeline) + 32;
  s->path = malloc(n);
  s->pipeline = strdup(pipeline);
  if (!s->path || !s->pipeline) {
    od_schema_close(s);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", pipeline);
  }
  snprintf(s->path, n, "%s/%s.schema.jsonl", state_dir, pipeline);
  bool created = false;
  s->fd = open(s->path, O_RDWR | O_APPEND | O_CLOEXEC);
  if (s->fd < 0 && errno == ENOENT) {
    s->fd = open(s->path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    created = s->fd >= 0;
  }
  if (s->fd < 0) {
    int e = errno;
    od_schema_close(s);
    return OD_FAIL(err, OD_EIO, "pipeline %s: cannot open schema history %s/%s.schema.jsonl: %s", pipeline,
                   state_dir, pipeline, strerror(e));
  }
  if (created) { /* the new name must survive a crash too */
    int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      if (fsync(dfd) != 0) od_warn("schema history %s: fsync of %s failed: %s", s->path, state_dir, strerror(errno));
      close(dfd);
    }
  }
  int rc = load(s, err);
  if (rc) {
    od_schema_close(s);
    return rc;
  }
  *out = s;
  return OD_OK;
}

/* ---- registrations (ignore policy) ------------------------------------------------------------ */

static size_t slot_of(const od_schema *s, const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 31;
  x *= 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 29) & (s->nslots - 1);
}

static sch_src *src_find(const od_schema *s, const od_relation *rel) {
  if (!s->nslots) return NULL;
  for (size_t i = slot_of(s, rel);; i = (i + 1) & (s->nslots - 1)) {
    if (!s->slots[i]) return NULL;
    if (s->slots[i]->src == rel) return s->slots[i];
  }
}

static bool src_insert(od_schema *s, sch_src *e) {
  if (2 * (s->nsrcs + 1) > s->nslots) {
    size_t n = s->nslots ? s->nslots * 2 : 64;
    sch_src **slots = calloc(n, sizeof *slots);
    if (!slots) return false;
    sch_src **old = s->slots;
    size_t oldn = s->nslots;
    s->slots = slots;
    s->nslots = n;
    for (size_t i = 0; i < oldn; i++) {
      if (!old[i]) continue;
      size_t j = slot_of(s, old[i]->src);
      while (slots[j]) j = (j + 1) & (n - 1);
      slots[j] = old[i];
    }
    free(old);
  }
  size_t j = slot_of(s, e->src);
  while (s->slots[j]) j = (j + 1) & (s->nslots - 1);
  s->slots[j] = e;
  s->nsrcs++;
  return true;
}

static const sch_version *pinned_of(const sch_table *t) {
  for (size_t i = t->n; i > 0; i--)
    if (t->v[i - 1]->applied) return t->v[i - 1];
  return t->n ? t->v[0] : NULL;
}

/* (Re)register `rel` of table `ti`: the column map from the pinned version onto it. */
static int src_register(od_schema *s, size_t ti, const od_relation *rel, sch_src **out, od_error *err) {
  const sch_version *pv = pinned_of(&s->tables[ti]);
  const od_relation *pinned = &pv->rel;
  sch_src *e = src_find(s, rel);
  bool fresh = !e;
  if (fresh && !(e = calloc(1, sizeof *e))) return OD_FAIL(err, OD_ENOMEM, "schema: out of memory");
  int *map = realloc(e->map, (pinned->ncolumns ? pinned->ncolumns : 1) * sizeof *map);
  if (!map) {
    if (fresh) free(e);
    return OD_FAIL(err, OD_ENOMEM, "schema: out of memory");
  }
  e->map = map;
  e->src = rel;
  e->table = ti;
  e->pinned = pinned;
  match_columns(pinned, rel, map);
  e->identity = pinned->ncolumns == rel->ncolumns;
  for (uint16_t i = 0; i < pinned->ncolumns; i++) e->identity = e->identity && map[i] == i;
  if (fresh && !src_insert(s, e)) {
    free(e->map);
    free(e);
    return OD_FAIL(err, OD_ENOMEM, "schema: out of memory");
  }
  for (uint16_t i = 0; i < pinned->ncolumns; i++)
    if (pinned->columns[i].key && map[i] < 0)
      return OD_FAIL(err, OD_ESCHEMA,
                     "pipeline %s: table %s: key column %s of the shape the sink keeps (version %u) is gone "
                     "from the source (version %u); schema_changes is 'ignore', which cannot match rows "
                     "without it: use schema_changes: apply, or re-create the sink table",
                     s->pipeline, s->tables[ti].qname, pinned->columns[i].name, pinned->version, rel->version);
  if (out) *out = e;
  return OD_OK;
}

/* ---- the public calls ------------------------------------------------------------------------ */

/* The same table, not one dropped and re-created under its name: same relation OID (0: unknown,
 * e.g. a history written before OIDs were recorded). */
static bool same_incarnation(const od_relation *a, const od_relation *b) {
  return !a->oid || !b->oid || a->oid == b->oid;
}

/* The same columns in the same order, by what the source sends (names, type OIDs, typmods, key
 * flags), whatever the attnums say: attnums of a replayed old shape come from today's catalog
 * and can point at a column that took the name later; a recorded version is the truth for it. */
static bool same_wire_shape(const od_relation *a, const od_relation *b) {
  if (a->ncolumns != b->ncolumns || a->replica_identity != b->replica_identity) return false;
  for (uint16_t i = 0; i < a->ncolumns; i++) {
    const od_column *x = &a->columns[i], *y = &b->columns[i];
    if (strcmp(x->name, y->name) || x->type_oid != y->type_oid || x->typmod != y->typmod || x->key != y->key)
      return false;
  }
  return true;
}

/* A table seen for the first time under this name whose relation OID another table of the
 * history had: the source renamed it (RENAME TO, SET SCHEMA). Said at run time, once. */
static void warn_renamed(const od_schema *s, const od_relation *rel, const char *qname) {
  if (!rel->oid) return;
  for (size_t i = 0; i < s->ntables; i++) {
    const sch_table *o = &s->tables[i];
    if (!o->n || strcmp(o->qname, qname) == 0 || o->v[o->n - 1]->rel.oid != rel->oid) continue;
    od_warn("pipeline %s: table %s is now named %s at the source (ALTER TABLE ... RENAME TO or SET SCHEMA; "
            "relation oid %u): the sink keeps %s as it was, and %s receives only the rows written from now on. "
            "To copy the rows it already holds: odsync snapshot -p %s -t %s",
            s->pipeline, o->qname, qname, rel->oid, o->qname, qname, s->pipeline, qname);
    return;
  }
}

int od_schema_relation(od_schema *s, od_relation *rel, od_error *err) {
  return od_schema_relation_at(s, rel, NULL, NULL, err);
}

int od_schema_relation_at(od_schema *s, od_relation *rel, const char *at, bool *starts_over, od_error *err) {
  if (starts_over) *starts_over = false;
  char qname[300];
  qualified(rel, qname, sizeof qname);
  sch_table *t = table_find(s, qname);
  if (!t && !(t = table_add(s, qname))) return OD_FAIL(err, OD_ENOMEM, "schema: out of memory");
  size_t ti = (size_t)(t - s->tables);
  int rc;
  if (t->n == 0) {
    warn_renamed(s, rel, qname);
    if ((rc = record(s, t, rel, 1, true, "first seen", NULL, err))) return rc;
    rel->version = 1;
    od_debug("pipeline %s: table %s: schema version 1 recorded", s->pipeline, qname);
    return s->policy == OD_SCHEMA_IGNORE ? src_register(s, ti, rel, NULL, err) : OD_OK;
  }
  char diff[OD_ERROR_MSG_MAX];
  const sch_version *found = NULL, *last = NULL;
  for (size_t i = t->n; i > 0 && !found; i--) {
    const sch_version *v = t->v[i - 1];
    if (!same_incarnation(&v->rel, rel)) continue;
    if (!last) last = v;
    if (od_schema_describe_diff(&v->rel, rel, diff, sizeof diff) == 0) found = v;
  }
  for (size_t i = t->n; i > 0 && !found; i--) {
    const sch_version *v = t->v[i - 1];
    if (!same_incarnation(&v->rel, rel) || !same_wire_shape(&v->rel, rel)) continue;
    found = v;
    for (uint16_t c = 0; c < rel->ncolumns; c++) rel->columns[c].attnum = v->rel.columns[c].attnum;
  }
  if (found) {
    rel->version = found->rel.version;
    if (starts_over && at && found->recreated_at && strcmp(found->recreated_at, at) == 0) *starts_over = true;
    return s->policy == OD_SCHEMA_IGNORE ? src_register(s, ti, rel, NULL, err) : OD_OK;
  }
  /* No version of this incarnation matches. None at all: the table was dropped and re-created
   * under the same name (a new relation OID); its rows in the sink are stale. */
  bool recreated = !last;
  if (!last) last = t->v[t->n - 1];
  if (recreated)
    snprintf(diff, sizeof diff, "table dropped and re-created at the source (relation oid %u, now %u)",
             last->rel.oid, rel->oid);
  char more[OD_ERROR_MSG_MAX];
  /* (Columns of two different tables are not compared: the new one replaces the old.) */
  if (!recreated && od_schema_describe_diff(&last->rel, rel, more, sizeof more) > 0) {
    size_t len = strnlen(more, sizeof diff - 1);
    memcpy(diff, more, len);
    diff[len] = '\0';
  }
  if (s->policy == OD_SCHEMA_STOP) {
    if (recreated)
      return OD_FAIL(err, OD_ESCHEMA,
                     "pipeline %s: table %s was dropped and re-created on the source (relation oid %u, now %u): "
                     "the sink's rows of %s belong to the dropped table; schema_changes is 'stop', so nothing of "
                     "the new table is applied. To go on, set schema_changes: apply (the sink table then starts "
                     "over: emptied in the transaction that first writes the new table) and restart",
                     s->pipeline, qname, last->rel.oid, rel->oid, qname);
    return OD_FAIL(err, OD_ESCHEMA,
                   "pipeline %s: table %s changed on the source (%s); schema_changes is 'stop', so nothing "
                   "written under the new shape is applied. To go on, set schema_changes: apply (or "
                   "ignore) and restart",
                   s->pipeline, qname, diff);
  }
  uint32_t version = t->v[t->n - 1]->rel.version + 1;
  bool applied = s->policy == OD_SCHEMA_APPLY;
  if ((rc = record(s, t, rel, version, applied, diff, recreated ? (at ? at : "") : NULL, err))) return rc;
  s->changes++;
  rel->version = version;
  if (recreated) {
    od_warn("pipeline %s: table %s: schema version %u: %s; the sink table starts over (emptied, then filled "
            "from the stream)", s->pipeline, qname, version, diff);
    if (starts_over && at) *starts_over = true;
  }
  if (applied) {
    if (!recreated) od_info("pipeline %s: table %s: schema version %u: %s", s->pipeline, qname, version, diff);
    return OD_OK;
  }
  od_warn("pipeline %s: table %s: schema version %u not applied (schema_changes: ignore): %s; the sink "
          "keeps version %u", s->pipeline, qname, version, diff, pinned_of(t)->rel.version);
  return src_register(s, ti, rel, NULL, err);
}

static int map_tuple(od_arena *a, const sch_src *e, od_tuple *t) {
  if (!t->ncolumns) return OD_OK;
  uint16_t n = e->pinned->ncolumns;
  od_value *vals = od_arena_alloc(a, sizeof(od_value) * (n ? n : 1));
  if (!vals) return OD_ENOMEM;
  for (uint16_t i = 0; i < n; i++) {
    int m = e->map[i];
    if (m >= 0 && m < t->ncolumns) vals[i] = t->values[m];
    else vals[i] = (od_value){.data = NULL, .len = 0, .kind = OD_VALUE_NULL};
  }
  t->values = vals;
  t->ncolumns = n;
  return OD_OK;
}

int od_schema_map_change(od_schema *s, od_change *c, od_arena *a, od_error *err) {
  if (s->policy != OD_SCHEMA_IGNORE || !c->rel || c->op == OD_OP_MESSAGE) return OD_OK;
  sch_src *e = src_find(s, c->rel);
  if (!e) {
    char qname[300];
    qualified(c->rel, qname, sizeof qname);
    sch_table *t = table_find(s, qname);
    if (!t || !t->n)
      return OD_FAIL(err, OD_EINVAL, "pipeline %s: table %s: change of a relation version that was never passed "
                     "to od_schema_relation", s->pipeline, qname);
    int rc = src_register(s, (size_t)(t - s->tables), c->rel, &e, err);
    if (rc) return rc;
  }
  if (e->pinned == c->rel) return OD_OK;
  if (!e->identity && (map_tuple(a, e, &c->newtup) || map_tuple(a, e, &c->oldtup)))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory mapping a change", s->pipeline);
  c->rel = e->pinned;
  return OD_OK;
}

uint64_t od_schema_versions_recorded(const od_schema *s) { return s ? s->changes : 0; }

void od_schema_close(od_schema *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  for (size_t i = 0; i < s->ntables; i++) {
    for (size_t j = 0; j < s->tables[i].n; j++) version_free(s->tables[i].v[j]);
    free(s->tables[i].v);
    free(s->tables[i].qname);
  }
  free(s->tables);
  for (size_t i = 0; i < s->nslots; i++) {
    if (!s->slots[i]) continue;
    free(s->slots[i]->map);
    free(s->slots[i]);
  }
  free(s->slots);
  free(s->path);
  free(s->pipeline);
  free(s);
}
