/* sources/poll/poll_keys.c — see poll_keys.h.
 *
 * Journal (text, one record a line; a last line without its newline was torn by a crash and is
 * ignored — it belonged to a commit that never happened):
 *   odsync-poll-keys 1
 *   T <name> <nparts>          the tables, in order (a different list: the file is not trusted)
 *   V <hex>  /  R <hex>         valid-from / highest removal position (bytes of the position, hex)
 *   + <table> <part>...         a key delivered
 *   - <table> <part>...         a key whose delete every sink holds
 * Fields are tab-separated; \ tab and newline inside a part are written \\ \t \n.
 */
#include "sources/poll/poll_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/adapter.h"

static _Thread_local const pk_table *g_sort_table;

void pk_init(pk_ledger *l, const char *path) {
  memset(l, 0, sizeof *l);
  l->fd = -1;
  snprintf(l->path, sizeof l->path, "%s", path);
}

int pk_add_table(pk_ledger *l, const char *name, int nparts, const bool *numeric, od_error *err) {
  if (nparts < 1 || nparts > PK_MAX_PARTS)
    return OD_FAIL(err, OD_EUNSUPPORTED, "table %s: a primary key of %d columns is not supported by checksum "
                   "reconciliation (at most %d); use reconcile_mode: reload", name, nparts, PK_MAX_PARTS);
  pk_table *t = realloc(l->tables, (size_t)(l->ntables + 1) * sizeof *t);
  if (!t) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  l->tables = t;
  t = &l->tables[l->ntables];
  memset(t, 0, sizeof *t);
  if (!(t->name = strdup(name))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  t->nparts = nparts;
  memcpy(t->numeric, numeric, (size_t)nparts * sizeof *numeric);
  l->ntables++;
  return OD_OK;
}

const char *pk_key_part(const pk_table *t, const char *key, int i) {
  (void)t;
  while (i-- > 0) key += strlen(key) + 1;
  return key;
}

static size_t key_size(const pk_table *t, const char *key) {
  const char *p = key;
  for (int i = 0; i < t->nparts; i++) p += strlen(p) + 1;
  return (size_t)(p - key);
}

int pk_key_cmp(const pk_table *t, const char *a, const char *b) {
  for (int i = 0; i < t->nparts; i++) {
    int c;
    if (t->numeric[i]) {
      long long x = strtoll(a, NULL, 10), y = strtoll(b, NULL, 10);
      c = x < y ? -1 : x > y;
    } else {
      c = strcmp(a, b);
    }
    if (c) return c < 0 ? -1 : 1;
    a += strlen(a) + 1;
    b += strlen(b) + 1;
  }
  return 0;
}

int64_t pk_key_hash(const pk_table *t, const char *key) {
  size_t n = key_size(t, key);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char stack[512];
  char *joined = n <= sizeof stack ? stack : malloc(n);
  if (!joined) return 0;
  memcpy(joined, key, n);
  for (size_t i = 0; i + 1 < n; i++)
    if (joined[i] == '\0') joined[i] = '\x1f'; /* the separators; the last NUL ends the string */
  if (!EVP_Digest(joined, n ? n - 1 : 0, md, &mdlen, EVP_md5(), NULL)) mdlen = 0;
  if (joined != stack) free(joined);
  uint64_t v = 0;
  for (unsigned i = 0; i < 8 && i < mdlen; i++) v = (v << 8) | md[i];
  return (int64_t)v;
}

static int sort_cmp(const void *a, const void *b) {
  return pk_key_cmp(g_sort_table, *(char *const *)a, *(char *const *)b);
}

int pk_normalize(pk_table *t, od_error *err) {
  if (!t->nadds) return OD_OK;
  g_sort_table = t;
  qsort(t->adds, t->nadds, sizeof *t->adds, sort_cmp);
  size_t need = t->n + t->nadds;
  char **m = malloc((need ? need : 1) * sizeof *m);
  if (!m) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  size_t i = 0, j = 0, k = 0;
  while (i < t->n || j < t->nadds) {
    char *next;
    if (j >= t->nadds || (i < t->n && pk_key_cmp(t, t->keys[i], t->adds[j]) <= 0)) {
      next = t->keys[i++];
    } else {
      next = t->adds[j++];
    }
    if (k && !pk_key_cmp(t, m[k - 1], next)) {
      free(next);
      continue;
    }
    m[k++] = next;
  }
  free(t->keys);
  free(t->adds);
  t->adds = NULL;
  t->nadds = t->capadds = 0;
  t->keys = m;
  t->n = k;
  t->cap = need;
  return OD_OK;
}

/* ---- journal lines ------------------------------------------------------------------------------ */

static int out_put(pk_ledger *l, const char *s, size_t n) {
  if (l->outlen + n + 1 > l->outcap) {
    size_t cap = l->outcap ? l->outcap * 2 : 4096;
    while (cap < l->outlen + n + 1) cap *= 2;
    char *p = realloc(l->out, cap);
    if (!p) return -1;
    l->out = p;
    l->outcap = cap;
  }
  memcpy(l->out + l->outlen, s, n);
  l->outlen += n;
  return 0;
}

static int out_key_line(pk_ledger *l, char op, int ti, const char *key) {
  char head[32];
  int hn = snprintf(head, sizeof head, "%c\t%d", op, ti);
  if (out_put(l, head, (size_t)hn)) return -1;
  const pk_table *t = &l->tables[ti];
  const char *p = key;
  for (int i = 0; i < t->nparts; i++) {
    if (out_put(l, "\t", 1)) return -1;
    for (; *p; p++) {
      const char *e = *p == '\\' ? "\\\\" : *p == '\t' ? "\\t" : *p == '\n' ? "\\n" : NULL;
      if (e ? out_put(l, e, 2) : out_put(l, p, 1)) return -1;
    }
    p++;
  }
  l->records++;
  return out_put(l, "\n", 1);
}

static int out_pos_line(pk_ledger *l, char op, const od_pos *p) {
  char buf[8 + 2 * OD_POS_MAX];
  int n = snprintf(buf, sizeof buf, "%c\t", op);
  if (od_pos_is_none(p)) {
    buf[n++] = '-';
  } else {
    for (int i = 0; i < p->len; i++) n += snprintf(buf + n, sizeof buf - (size_t)n, "%02x", p->data[i]);
  }
  buf[n++] = '\n';
  l->records++;
  return out_put(l, buf, (size_t)n);
}

static bool parse_pos(const char *s, const od_pos_kind *kind, od_pos *out) {
  *out = od_pos_none();
  if (!strcmp(s, "-")) return true;
  size_t n = strlen(s);
  if (n % 2 || n / 2 > OD_POS_MAX || !n) return false;
  out->kind = kind;
  out->len = (uint16_t)(n / 2);
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
    out->data[i] = (uint8_t)v;
  }
  return true;
}

/* Unescape the tab-separated parts of line (after "op\tti\t") into a new key block. */
static char *parse_key(const pk_table *t, char *s) {
  size_t n = strlen(s) + 1;
  char *k = malloc(n), *o = k;
  if (!k) return NULL;
  int parts = 1;
  for (; *s; s++) {
    if (*s == '\t') {
      *o++ = '\0';
      parts++;
    } else if (*s == '\\' && s[1]) {
      s++;
      *o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
  if (parts != t->nparts) {
    free(k);
    return NULL;
  }
  return k;
}

static int push_add(pk_table *t, char *key) {
  if (t->nadds == t->capadds) {
    size_t cap = t->capadds ? t->capadds * 2 : 256;
    char **p = realloc(t->adds, cap * sizeof *p);
    if (!p) return -1;
    t->adds = p;
    t->capadds = cap;
  }
  t->adds[t->nadds++] = key;
  return 0;
}

static void clear_keys(pk_ledger *l) {
  for (int ti = 0; ti < l->ntables; ti++) {
    pk_table *t = &l->tables[ti];
    for (size_t i = 0; i < t->n; i++) free(t->keys[i]);
    for (size_t i = 0; i < t->nadds; i++) free(t->adds[i]);
    t->n = t->nadds = 0;
  }
}

/* Replay the journal into the (empty) key sets. false: missing, foreign or unreadable. */
static bool replay(pk_ledger *l, const od_pos_kind *kind, od_error *err, int *rc) {
  *rc = OD_OK;
  FILE *f = fopen(l->path, "r");
  if (!f) return false;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int ntab = 0;
  bool ok = true, header = false;
  while (ok && (len = getline(&line, &cap, f)) > 0) {
    if (line[len - 1] != '\n') break; /* torn by a crash */
    line[--len] = '\0';
    if (!header) {
      ok = header = !strcmp(line, "odsync-poll-keys 1");
      continue;
    }
    char op = line[0];
    if (op == 'T') {
      char *name = line + 2, *tab = strrchr(name, '\t');
      ok = len > 2 && tab && ntab < l->ntables;
      if (ok) {
        *tab = '\0';
        ok = !strcmp(name, l->tables[ntab].name) && atoi(tab + 1) == l->tables[ntab].nparts;
        ntab++;
      }
    } else if (op == 'V' || op == 'R') {
      ok = len > 2 && parse_pos(line + 2, kind, op == 'V' ? &l->valid_from : &l->max_removed);
    } else if ((op == '+' || op == '-') && ntab == l->ntables) {
      char *end = NULL;
      long ti = strtol(line + 2, &end, 10);
      ok = len > 2 && end && *end == '\t' && ti >= 0 && ti < l->ntables;
      if (!ok) break;
      pk_table *t = &l->tables[ti];
      char *key = parse_key(t, end + 1);
      ok = key != NULL;
      if (!ok) break;
      if (op == '+') {
        if (push_add(t, key)) {
          free(key);
          *rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
          break;
        }
        if (t->nadds > 2 * (t->n + 65536) && (*rc = pk_normalize(t, err))) break;
      } else {
        if ((*rc = pk_normalize(t, err))) {
          free(key);
          break;
        }
        size_t lo = 0, hi = t->n;
        while (lo < hi) {
          size_t mid = (lo + hi) / 2;
          int c = pk_key_cmp(t, t->keys[mid], key);
          if (!c) {
            free(t->keys[mid]);
            memmove(t->keys + mid, t->keys + mid + 1, (t->n - mid - 1) * sizeof *t->keys);
            t->n--;
            break;
          }
          if (c < 0) lo = mid + 1;
          else hi = mid;
        }
        free(key);
      }
    } else {
      ok = false;
    }
  }
  free(line);
  fclose(f);
  if (*rc) return false;
  if (!ok || !header || ntab != l->ntables) {
    od_warn("postgres_poll: the key ledger %s is not one of this pipeline's tables (or is damaged): ignoring it; "
            "the next reconciliation is a full reload", l->path);
    clear_keys(l);
    return false;
  }
  for (int ti = 0; ti < l->ntables; ti++)
    if ((*rc = pk_normalize(&l->tables[ti], err))) return false;
  return true;
}

static int fsync_dir(const char *path) {
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", path);
  int d = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (d < 0) return -1;
  int rc = fsync(d);
  close(d);
  return rc;
}

/* Rewrite the journal as a snapshot: header, V, R, every key held (in the set, added, or removed but
 * not yet acked). Replaces the file atomically. */
static int rewrite(pk_ledger *l, od_error *err) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", l->path);
  l->outlen = 0;
  l->records = 0;
  int rc = 0;
  char head[64];
  int hn = snprintf(head, sizeof head, "odsync-poll-keys 1\n");
  rc |= out_put(l, head, (size_t)hn);
  for (int ti = 0; ti < l->ntables; ti++) {
    char line[400];
    int n = snprintf(line, sizeof line, "T\t%s\t%d\n", l->tables[ti].name, l->tables[ti].nparts);
    rc |= out_put(l, line, (size_t)n);
  }
  rc |= out_pos_line(l, 'V', &l->valid_from);
  rc |= out_pos_line(l, 'R', &l->max_removed);
  for (int ti = 0; ti < l->ntables && !rc; ti++) {
    pk_table *t = &l->tables[ti];
    for (size_t i = 0; i < t->n && !rc; i++)
      if (t->keys[i]) rc |= out_key_line(l, '+', ti, t->keys[i]);
    for (size_t i = 0; i < t->nadds && !rc; i++) rc |= out_key_line(l, '+', ti, t->adds[i]);
  }
  for (size_t i = 0; i < l->nrm && !rc; i++) rc |= out_key_line(l, '+', l->rm[i].table, l->rm[i].key);
  if (rc) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  size_t off = 0;
  while (ok && off < l->outlen) {
    ssize_t w = write(fd, l->out + off, l->outlen - off);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) off += (size_t)w;
  }
  ok = ok && !fsync(fd);
  if (fd >= 0) close(fd);
  ok = ok && !rename(tmp, l->path) && !fsync_dir(l->path);
  l->outlen = 0;
  if (!ok)
    return OD_FAIL_RETRY(err, OD_EIO, "postgres_poll: cannot write the key ledger %s: %s (check state_dir's space "
                         "and permissions)", l->path, strerror(errno));
  if (l->fd >= 0) close(l->fd);
  l->fd = open(l->path, O_WRONLY | O_APPEND | O_CLOEXEC);
  l->unsynced = false;
  if (l->fd < 0)
    return OD_FAIL_RETRY(err, OD_EIO, "postgres_poll: cannot open the key ledger %s: %s", l->path, strerror(errno));
  return OD_OK;
}

static int mkdirs(const char *path) {
  char p[1024];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0700) && errno != EEXIST) return -1;
    *s = '/';
  }
  return 0;
}

int pk_dir_ready(const char *path) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  if (mkdirs(dir)) return errno ? errno : EIO;
  return access(dirname(dir), W_OK) ? errno : 0;
}

int pk_load(pk_ledger *l, const od_pos *from, const od_pos_kind *kind, bool *trusted, od_error *err) {
  if (mkdirs(l->path))
    return OD_FAIL(err, OD_EIO, "postgres_poll: cannot create the directory of the key ledger %s: %s (fix state_dir)",
                   l->path, strerror(errno));
  clear_keys(l);
  /* Removals not yet written belong to transactions a restart may have dropped: forget them (the
   * file still holds their keys, so their deletes are found again). */
  for (size_t i = 0; i < l->nrm; i++) free(l->rm[i].key);
  l->nrm = 0;
  l->outlen = 0;
  l->valid_from = l->max_removed = od_pos_none();
  int rc = OD_OK;
  if (od_pos_is_none(from)) { /* the sinks hold nothing: an empty ledger is exact */
    *trusted = true;
  } else {
    bool found = replay(l, kind, err, &rc);
    if (rc) return rc;
    *trusted = found && od_pos_le(&l->valid_from, from) && od_pos_le(&l->max_removed, from);
    if (found && !*trusted)
      od_warn("postgres_poll: the sinks hold a position older than the key ledger %s knows (a sink restored from a "
              "backup?): the next reconciliation is a full reload", l->path);
  }
  return rewrite(l, err);
}

int pk_add(pk_ledger *l, int ti, const char *const *parts, od_error *err) {
  pk_table *t = &l->tables[ti];
  size_t n = 0;
  for (int i = 0; i < t->nparts; i++) n += strlen(parts[i]) + 1;
  char *k = malloc(n);
  if (!k) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  char *o = k;
  for (int i = 0; i < t->nparts; i++) {
    size_t m = strlen(parts[i]) + 1;
    memcpy(o, parts[i], m);
    o += m;
  }
  /* A key delivered again cancels its pending removal: its "-" line must never follow this "+". */
  for (size_t i = 0; i < l->nrm; i++) {
    if (l->rm[i].table == ti && !pk_key_cmp(t, l->rm[i].key, k)) {
      free(l->rm[i].key);
      l->rm[i--] = l->rm[--l->nrm];
    }
  }
  if (out_key_line(l, '+', ti, k) || push_add(t, k)) {
    free(k);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  return OD_OK; /* never normalizes here: a reconciliation may be walking t->keys */
}

int pk_remove(pk_ledger *l, int ti, size_t i, const od_pos *end, od_error *err) {
  pk_table *t = &l->tables[ti];
  if (l->nrm == l->caprm) {
    size_t cap = l->caprm ? l->caprm * 2 : 64;
    pk_removal *p = realloc(l->rm, cap * sizeof *p);
    if (!p) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    l->rm = p;
    l->caprm = cap;
  }
  l->rm[l->nrm++] = (pk_removal){.table = ti, .key = t->keys[i], .end = *end};
  t->keys[i] = NULL;
  return OD_OK;
}

void pk_compact_keys(pk_table *t) {
  size_t k = 0;
  for (size_t i = 0; i < t->n; i++)
    if (t->keys[i]) t->keys[k++] = t->keys[i];
  t->n = k;
}

int pk_set_valid_from(pk_ledger *l, const od_pos *end, od_error *err) {
  l->valid_from = *end;
  if (out_pos_line(l, 'V', end)) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  return OD_OK;
}

static int write_out(pk_ledger *l, bool sync, od_error *err) {
  size_t off = 0;
  while (off < l->outlen) {
    ssize_t w = write(l->fd, l->out + off, l->outlen - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      return OD_FAIL_RETRY(err, OD_EIO, "postgres_poll: cannot append to the key ledger %s: %s (check state_dir's "
                           "space)", l->path, strerror(errno));
    off += (size_t)w;
  }
  l->outlen = 0;
  l->unsynced = !sync;
  if (sync && fsync(l->fd))
    return OD_FAIL_RETRY(err, OD_EIO, "postgres_poll: cannot fsync the key ledger %s: %s", l->path, strerror(errno));
  return OD_OK;
}

int pk_sync(pk_ledger *l, od_error *err) {
  if (l->fd < 0) return OD_FAIL(err, OD_EINVAL, "postgres_poll: the key ledger %s is not open", l->path);
  uint64_t live = l->nrm;
  for (int ti = 0; ti < l->ntables; ti++) {
    pk_table *t = &l->tables[ti];
    int rc = t->nadds > 2 * (t->n + 65536) ? pk_normalize(t, err) : OD_OK; /* bound the memory of repeats */
    if (rc) return rc;
    live += t->n + t->nadds;
  }
  if (l->records > 2 * live + 100000) return rewrite(l, err); /* mostly re-reads of the same keys */
  if (!l->outlen && !l->unsynced) return OD_OK;
  return write_out(l, true, err);
}

int pk_acked(pk_ledger *l, const od_pos *durable, od_error *err) {
  if (l->fd < 0) return OD_OK;
  bool any = false;
  for (size_t i = 0; i < l->nrm; i++) {
    if (!od_pos_le(&l->rm[i].end, durable)) continue;
    /* Written unsynced: losing the line only makes a later reconciliation resend a harmless delete. */
    if (out_key_line(l, '-', l->rm[i].table, l->rm[i].key)) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    if (od_pos_lt(&l->max_removed, &l->rm[i].end)) l->max_removed = l->rm[i].end;
    free(l->rm[i].key);
    l->rm[i--] = l->rm[--l->nrm];
    any = true;
  }
  if (!any) return OD_OK;
  if (out_pos_line(l, 'R', &l->max_removed)) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  return write_out(l, false, err);
}

void pk_free(pk_ledger *l) {
  clear_keys(l);
  for (int ti = 0; ti < l->ntables; ti++) {
    free(l->tables[ti].keys);
    free(l->tables[ti].adds);
    free(l->tables[ti].name);
  }
  free(l->tables);
  for (size_t i = 0; i < l->nrm; i++) free(l->rm[i].key);
  free(l->rm);
  free(l->out);
  if (l->fd >= 0) close(l->fd);
  memset(l, 0, sizeof *l);
  l->fd = -1;
}
