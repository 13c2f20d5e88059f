/* config.c — reads, resolves and validates the odsync YAML configuration (libyaml document API).
 *
 * Owns: the od_config tree it returns. Every string, list, path and array in it is malloc'd here
 * and released by od_config_free; section.file points at cfg->file, section.path is owned by the
 * config although declared const. The libyaml document is freed before od_config_load returns.
 * Resolves ${env:NAME} and ${file:PATH} references at load time and marks entries that used one
 * as secret; a value that came (partly) from a reference is never copied into an error message.
 * Never touches: servers, the state directory, any file other than the config and ${file:}
 * targets, process exit, logging. Adapter keys are validated by the adapters
 * (od_config_check_keys, config_section.c), not here. The process-wide sections (log, tracing,
 * encryption, admin, audit) are parsed by config_global.c, `mesh:` by config_mesh.c.
 */
#include "odsync/config.h"
#include "core/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <yaml.h>

#define NAME_MAX_LEN 48


/* Ranges of the pipeline-level numbers (documented in docs/CONFIG.md). */
#define BATCH_ROWS_MIN 1L
#define BATCH_ROWS_MAX 1000000L
#define BATCH_DELAY_MIN 0L
#define BATCH_DELAY_MAX 60000L
#define BATCH_BYTES_MIN KIB
#define BATCH_BYTES_MAX (4ULL * GIB)
#define QUEUE_ROWS_MIN 1000L
#define QUEUE_ROWS_MAX 100000000L
#define QUEUE_BYTES_MIN MIB
#define QUEUE_BYTES_MAX TIB

static const char *const TOP_KEYS[] = {"state_dir", "log_level", "log", "admin", "tracing", "encryption", "audit", "pipelines", "mesh",
                                       NULL};
static const char *const PII_KEYS[] = {"detect", "sample", NULL};
static const char *const PII_MODES[] = {"off", "warn", "enforce", NULL}; /* indexed by enum od_pii_mode */
static const char *const PIPELINE_KEYS[] = {"name", "source", "sink", "sinks", "transforms", "batch", "queue",
                                              "schema_changes", "consistency", "apply_workers", "apply_parallel_min_rows",
                                              "reconnect_max_ms", "alerts", "pii", "on_poison", "poison_attempts",
                                              "circuit_breaker", NULL};
static const char *const BREAKER_KEYS[] = {"failures", "error_rate", "min_attempts", "window_ms", "cooldown_ms", NULL};
/* Indexed by enum od_poison_policy. */
static const char *const POISON_POLICIES[] = {"stop", "dead_letter", NULL};
static const char *const ALERT_KEYS[] = {"lag_seconds", "latency_p95_seconds", "errors_per_minute", "anomalies",
                                         "webhook", NULL};
static const char *const BATCH_KEYS[] = {"max_rows", "max_bytes", "max_delay_ms", "adaptive", "min_rows",
                                         "target_latency_ms", "linger", NULL};
const char *const BOOLS[] = {"false", "true", "no", "yes", "off", "on", NULL};
static const char *const QUEUE_KEYS[] = {"max_rows", "max_bytes", NULL};
/* Indexed by enum od_schema_policy. */
static const char *const SCHEMA_POLICIES[] = {"apply", "ignore", "stop", NULL};
static const char *const CONSISTENCY_LEVELS[] = {"strong", "causal", "eventual", NULL};

/* ---------------------------------------------------------------- messages */

static int vfail_at(od_error *err, const char *file, int line, int col, const char *fmt,
                    va_list ap) {
  char what[OD_ERROR_MSG_MAX];
  vsnprintf(what, sizeof what, fmt, ap);
  return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s", file, line, col, what);
}

int fail_at(od_error *err, const char *file, int line, int col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vfail_at(err, file, line, col, fmt, ap);
  va_end(ap);
  return rc;
}

int oom(od_error *err, const char *file) {
  return OD_FAIL(err, OD_ENOMEM, "out of memory while loading configuration %s", file);
}

/* A value as it may appear in a message: quoted and shortened, or withheld when secret. */
const char *shown(char *buf, size_t n, const char *v, bool secret) {
  if (secret) return "the value (resolved from a ${env:}/${file:} reference, not shown)";
  size_t len = strlen(v);
  snprintf(buf, n, "'%.*s%s'", SHOW_MAX, v, len > SHOW_MAX ? "..." : "");
  return buf;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return SIZE_MAX;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = prev + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      prev = up;
    }
  }
  return row[lb];
}

/* Closest allowed word when it is close enough to be a plausible typo, else NULL. */
const char *closest(const char *word, const char *const *allowed) {
  const char *best = NULL;
  size_t bd = SIZE_MAX;
  for (size_t i = 0; allowed[i]; i++) {
    size_t d = edit_distance(word, allowed[i]);
    if (d < bd) {
      bd = d;
      best = allowed[i];
    }
  }
  if (!best) return NULL;
  size_t longer = strlen(word) > strlen(best) ? strlen(word) : strlen(best);
  return 2 * bd <= longer ? best : NULL;
}

static void join_words(char *buf, size_t n, const char *const *words) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; words[i] && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", words[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* "unknown key 'k' in WHERE; did you mean 'x'? (allowed: a, b)"; WHERE NULL = top level. */
int unknown_key(od_error *err, const char *file, int line, int col, const char *key,
                const char *where, const char *const *allowed) {
  char list[300];
  join_words(list, sizeof list, allowed);
  const char *near = closest(key, allowed);
  char what[200];
  if (where) snprintf(what, sizeof what, "unknown key '%.64s' in %s", key, where);
  else snprintf(what, sizeof what, "unknown top-level key '%.64s'", key);
  if (near)
    return fail_at(err, file, line, col, "%s; did you mean '%s'? (allowed: %s)", what, near, list);
  return fail_at(err, file, line, col, "%s; expected one of: %s", what, list);
}

/* ---------------------------------------------------------------- small helpers */

typedef struct sbuf {
  char *buf;
  size_t len, cap;
} sbuf;

static bool sb_add(sbuf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->buf, cap);
    if (!p) return false;
    b->buf = p;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
  return true;
}

/* Whole file into a NUL-terminated malloc'd buffer. Returns 0, or an errno value. */
static int read_whole(const char *path, char **out, size_t *outlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return errno ? errno : EIO;
  sbuf b = {0};
  char chunk[8192];
  size_t n;
  int e = 0;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (!sb_add(&b, chunk, n)) {
      e = ENOMEM;
      break;
    }
  }
  if (!e && ferror(f)) e = errno ? errno : EIO;
  fclose(f);
  if (!e && !b.buf && !sb_add(&b, "", 0)) e = ENOMEM;
  if (e) {
    free(b.buf);
    return e;
  }
  *out = b.buf;
  *outlen = b.len;
  return 0;
}

char *xstrdup(const char *s) {
  size_t n = strlen(s);
  char *p = malloc(n + 1);
  if (p) memcpy(p, s, n + 1);
  return p;
}

__attribute__((format(printf, 1, 2))) char *xprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *p = malloc((size_t)n + 1);
  if (!p) return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

/* Decimal integer with optional sign. 0 ok, -1 malformed, -2 does not fit a long. */
int parse_long(const char *s, long *out) {
  const char *p = s;
  bool neg = false;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  if (!isdigit((unsigned char)*p)) return -1;
  unsigned long long v = 0;
  bool big = false;
  for (; isdigit((unsigned char)*p); p++) {
    if (v > (ULLONG_MAX - 9) / 10) big = true;
    else v = v * 10 + (unsigned long long)(*p - '0');
  }
  if (*p) return -1;
  if (big || v > (unsigned long long)LONG_MAX + (neg ? 1ULL : 0ULL)) return -2;
  *out = neg ? (long)(0 - v) : (long)v;
  return 0;
}

/* Bytes with an optional unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of
 * 1024), case-insensitive, optional space between number and unit.
 * 0 ok, -1 malformed, -2 overflow. */
static int parse_size(const char *s, unsigned long long *out) {
  static const struct {
    const char *unit;
    unsigned long long mult;
  } units[] = {{"", 1},          {"b", 1},          {"kb", 1000ULL},  {"kib", KIB},
               {"mb", 1000000ULL}, {"mib", MIB},     {"gb", 1000000000ULL}, {"gib", GIB},
               {"tb", 1000000000000ULL}, {"tib", TIB}};
  const char *p = s;
  if (!isdigit((unsigned char)*p)) return -1;
  unsigned long long v = 0;
  bool big = false;
  for (; isdigit((unsigned char)*p); p++) {
    if (v > (ULLONG_MAX - 9) / 10) big = true;
    else v = v * 10 + (unsigned long long)(*p - '0');
  }
  while (*p == ' ') p++;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcasecmp(p, units[i].unit) == 0) {
      if (big || (units[i].mult > 1 && v > ULLONG_MAX / units[i].mult)) return -2;
      *out = v * units[i].mult;
      return 0;
    }
  }
  return -1;
}

/* Human form of a byte count for range messages: "64 MiB" when exact, else plain bytes. */
static void human_bytes(char *buf, size_t n, unsigned long long v) {
  if (v >= TIB && v % TIB == 0) snprintf(buf, n, "%lluTiB", v / TIB);
  else if (v >= GIB && v % GIB == 0) snprintf(buf, n, "%lluGiB", v / GIB);
  else if (v >= MIB && v % MIB == 0) snprintf(buf, n, "%lluMiB", v / MIB);
  else if (v >= KIB && v % KIB == 0) snprintf(buf, n, "%lluKiB", v / KIB);
  else snprintf(buf, n, "%llu", v);
}

/* "base.key" into buf (shortened if it does not fit; only used in messages and section.path). */
static void subpath(char *buf, size_t n, const char *base, const char *key) {
  if (snprintf(buf, n, "%s.%s", base, key) >= (int)n) buf[n - 1] = '\0';
}

/* ---------------------------------------------------------------- parse context */

/* pctx: core/config_internal.h */

yaml_node_t *node_at(pctx *p, int idx) { return yaml_document_get_node(p->doc, idx); }
int nline(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }
int ncol(const yaml_node_t *n) { return (int)n->start_mark.column + 1; }

static const char *kind_name(const yaml_node_t *n) {
  switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a sequence";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
  }
}

__attribute__((format(printf, 3, 4))) int fail_node(pctx *p, const yaml_node_t *n,
                                                           const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vfail_at(p->err, p->file, nline(n), ncol(n), fmt, ap);
  va_end(ap);
  return rc;
}

int expect_kind(pctx *p, const yaml_node_t *n, yaml_node_type_t want, const char *path,
                       const char *what) {
  if (n->type == want) return OD_OK;
  return fail_node(p, n, "%s: expected %s, got %s", path, what, kind_name(n));
}

/* A plain empty / ~ / null scalar: YAML's "no value". */
bool is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const char *v = (const char *)n->data.scalar.value;
  return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
         strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *key_text(pctx *p, const yaml_node_pair_t *pair) {
  yaml_node_t *k = node_at(p, pair->key);
  return (const char *)k->data.scalar.value;
}

/* Every key a scalar, no key twice. `path` names the mapping in messages. */
int check_mapping(pctx *p, const yaml_node_t *map, const char *path) {
  yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
  for (yaml_node_pair_t *a = start; a < top; a++) {
    yaml_node_t *k = node_at(p, a->key);
    if (k->type != YAML_SCALAR_NODE)
      return fail_node(p, k, "%s: a key is %s; expected a plain key name", path, kind_name(k));
    for (yaml_node_pair_t *b = start; b < a; b++) {
      yaml_node_t *kb = node_at(p, b->key);
      if (strcmp((const char *)kb->data.scalar.value, (const char *)k->data.scalar.value) == 0)
        return fail_node(p, k, "duplicate key '%.64s' in %s (first at %d:%d); each key may appear once",
                         (const char *)k->data.scalar.value, path, nline(kb), ncol(kb));
    }
  }
  return OD_OK;
}

int check_known(pctx *p, const yaml_node_t *map, const char *where,
                       const char *const *allowed) {
  for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++) {
    const char *k = key_text(p, a);
    bool ok = false;
    for (size_t i = 0; allowed[i] && !ok; i++) ok = strcmp(k, allowed[i]) == 0;
    if (!ok) {
      yaml_node_t *kn = node_at(p, a->key);
      return unknown_key(p->err, p->file, nline(kn), ncol(kn), k, where, allowed);
    }
  }
  return OD_OK;
}

yaml_node_t *map_get(pctx *p, const yaml_node_t *map, const char *key) {
  for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++)
    if (strcmp(key_text(p, a), key) == 0) return node_at(p, a->value);
  return NULL;
}

/* ---------------------------------------------------------------- references */

/* Resolve ${env:NAME}, ${file:PATH} and the $${ escape in a scalar node. `path` names the value
 * ("pipelines[0].source.dsn") for messages. *out is malloc'd; *secret set when a reference was
 * used. */
static int resolve_scalar(pctx *p, const yaml_node_t *n, const char *path, char **out,
                          bool *secret) {
  const char *s = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  *out = NULL;
  *secret = false;
  if (memchr(s, '\0', len))
    return fail_node(p, n, "%s: value contains a NUL character; expected text", path);
  sbuf b = {0};
  int rc = OD_OK;
  size_t i = 0;
  while (i < len && rc == OD_OK) {
    if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
      if (!sb_add(&b, "${", 2)) rc = oom(p->err, p->file);
      i += 3;
      continue;
    }
    if (!(s[i] == '$' && i + 1 < len && s[i + 1] == '{')) {
      size_t j = i + 1;
      while (j < len && s[j] != '$') j++;
      if (!sb_add(&b, s + i, j - i)) rc = oom(p->err, p->file);
      i = j;
      continue;
    }
    const char *inner = s + i + 2;
    const char *close = memchr(inner, '}', len - (i + 2));
    if (!close) {
      rc = fail_node(p, n,
                     "%s: unterminated reference ('${' without '}'); expected ${env:NAME} or "
                     "${file:PATH}, or $${ for a literal '${'",
                     path);
      break;
    }
    size_t ilen = (size_t)(close - inner);
    char ref[1024];
    if (ilen >= sizeof ref) {
      rc = fail_node(p, n, "%s: reference longer than %zu characters; expected ${env:NAME} or ${file:PATH}",
                     path, sizeof ref - 1);
      break;
    }
    memcpy(ref, inner, ilen);
    ref[ilen] = '\0';
    i = (size_t)(close - s) + 1;
    *secret = true;
    if (strncmp(ref, "env:", 4) == 0) {
      const char *name = ref + 4;
      bool valid = *name != '\0';
      for (const char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_')) valid = false;
      if (!valid) {
        rc = fail_node(p, n, "%s: invalid environment variable name '%s' in ${%s}; expected [A-Za-z0-9_]+",
                       path, name, ref);
        break;
      }
      const char *v = getenv(name);
      if (!v) {
        rc = fail_node(p, n, "environment variable %s is not set (referenced by %s); set it or change the value",
                       name, path);
        break;
      }
      if (!sb_add(&b, v, strlen(v))) rc = oom(p->err, p->file);
    } else if (strncmp(ref, "file:", 5) == 0) {
      const char *fpath = ref + 5;
      if (!*fpath) {
        rc = fail_node(p, n, "%s: empty path in ${file:}; expected ${file:PATH}", path);
        break;
      }
      char *data = NULL;
      size_t dlen = 0;
      int e = read_whole(fpath, &data, &dlen);
      if (e == ENOMEM) {
        rc = oom(p->err, p->file);
        break;
      }
      if (e) {
        rc = fail_node(p, n, "cannot read %s (referenced by %s): %s; expected a readable file", fpath,
                       path, strerror(e));
        break;
      }
      if (memchr(data, '\0', dlen)) {
        free(data);
        rc = fail_node(p, n, "%s (referenced by %s) contains a NUL byte; expected a text file", fpath,
                       path);
        break;
      }
      if (dlen > 0 && data[dlen - 1] == '\n') {
        dlen--;
        if (dlen > 0 && data[dlen - 1] == '\r') dlen--;
      }
      if (!sb_add(&b, data, dlen)) rc = oom(p->err, p->file);
      free(data);
    } else {
      rc = fail_node(p, n, "%s: unknown reference '${%s}'; expected ${env:NAME} or ${file:PATH} "
                     "(write $${ for a literal '${')", path, ref);
      break;
    }
  }
  if (rc == OD_OK && !b.buf && !sb_add(&b, "", 0)) rc = oom(p->err, p->file);
  if (rc != OD_OK) {
    free(b.buf);
    return rc;
  }
  *out = b.buf;
  return OD_OK;
}

/* Resolve a scalar that must be a scalar; `path` for messages. */
int scalar_value(pctx *p, const yaml_node_t *n, const char *path, char **out, bool *secret) {
  int rc = expect_kind(p, n, YAML_SCALAR_NODE, path, "a scalar");
  if (rc) return rc;
  return resolve_scalar(p, n, path, out, secret);
}

/* ---------------------------------------------------------------- numbers */

int num_long(pctx *p, const yaml_node_t *n, const char *path, long min, long max, long *out) {
  char *v = NULL;
  bool secret = false;
  int rc = scalar_value(p, n, path, &v, &secret);
  if (rc) return rc;
  char buf[SHOW_MAX + 8];
  long x = 0;
  int r = parse_long(v, &x);
  if (r == -1)
    rc = fail_node(p, n, "%s: %s is not an integer; expected a whole number in %ld..%ld", path,
                   shown(buf, sizeof buf, v, secret), min, max);
  else if (r == -2 || x < min || x > max)
    rc = fail_node(p, n, "%s: %s is out of range; expected %ld..%ld", path,
                   shown(buf, sizeof buf, v, secret), min, max);
  else
    *out = x;
  free(v);
  return rc;
}

int num_size(pctx *p, const yaml_node_t *n, const char *path, unsigned long long min,
                    unsigned long long max, size_t *out) {
  char *v = NULL;
  bool secret = false;
  int rc = scalar_value(p, n, path, &v, &secret);
  if (rc) return rc;
  char buf[SHOW_MAX + 8], lo[32], hi[32];
  human_bytes(lo, sizeof lo, min);
  human_bytes(hi, sizeof hi, max);
  unsigned long long x = 0;
  int r = parse_size(v, &x);
  if (r == -1)
    rc = fail_node(p, n,
                   "%s: %s is not a size; expected bytes with an optional unit (KiB, MiB, GiB, "
                   "KB, MB, GB), e.g. 64MiB, in %s..%s",
                   path, shown(buf, sizeof buf, v, secret), lo, hi);
  else if (r == -2 || x < min || x > max || x > SIZE_MAX)
    rc = fail_node(p, n, "%s: %s is out of range; expected %s..%s", path,
                   shown(buf, sizeof buf, v, secret), lo, hi);
  else
    *out = (size_t)x;
  free(v);
  return rc;
}

/* ---------------------------------------------------------------- sections */

static void free_section(od_config_section *s) {
  free((char *)s->path);
  free(s->type);
  for (int i = 0; i < s->nentries; i++) {
    od_config_entry *e = &s->entries[i];
    free(e->key);
    if (e->secret && e->value) OPENSSL_cleanse(e->value, strlen(e->value)); /* passwords, keys */
    free(e->value);
    for (int j = 0; j < e->nlist; j++) free(e->list[j]);
    free(e->list);
    free(e->list_line);
    free(e->list_col);
  }
  free(s->entries);
  memset(s, 0, sizeof *s);
}

/* One source/sink entry: a scalar or a sequence of scalars. */
int parse_entry(pctx *p, od_config_entry *e, const char *key, const yaml_node_t *v,
                       const char *path) {
  e->line = nline(v);
  e->col = ncol(v);
  if (!(e->key = xstrdup(key))) return oom(p->err, p->file);
  if (v->type == YAML_SCALAR_NODE) return resolve_scalar(p, v, path, &e->value, &e->secret);
  if (v->type == YAML_MAPPING_NODE)
    return fail_node(p, v, "%s: nested mappings are not supported here; expected a scalar or a list "
                     "of scalars", path);
  if (v->type != YAML_SEQUENCE_NODE)
    return fail_node(p, v, "%s: expected a scalar or a list of scalars", path);
  yaml_node_item_t *start = v->data.sequence.items.start, *top = v->data.sequence.items.top;
  size_t n = (size_t)(top - start);
  if (!(e->list = calloc(n + 1, sizeof *e->list)) || !(e->list_line = calloc(n + 1, sizeof *e->list_line)) ||
      !(e->list_col = calloc(n + 1, sizeof *e->list_col)))
    return oom(p->err, p->file); /* NULL-terminated */
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *item = node_at(p, start[i]);
    char ipath[256];
    if (snprintf(ipath, sizeof ipath, "%s[%zu]", path, i) >= (int)sizeof ipath) ipath[0] = '\0';
    if (item->type != YAML_SCALAR_NODE)
      return fail_node(p, item, "%s: expected a scalar list item, got %s", ipath, kind_name(item));
    bool sec = false;
    e->list_line[i] = nline(item);
    e->list_col[i] = ncol(item);
    int rc = resolve_scalar(p, item, ipath, &e->list[i], &sec);
    if (rc) return rc;
    e->nlist++;
    if (sec) e->secret = true;
  }
  return OD_OK;
}

static int parse_section_skip(pctx *p, od_config *cfg, od_config_section *s, const yaml_node_t *n,
                              const char *path, const char *example_type, const char *const *skip);
static int parse_section(pctx *p, od_config *cfg, od_config_section *s, const yaml_node_t *n,
                         const char *path, const char *example_type) {
  return parse_section_skip(p, cfg, s, n, path, example_type, NULL);
}

/* Like parse_section; keys in `skip` (NULL-terminated, may be NULL) are left to the caller. */
static int parse_section_skip(pctx *p, od_config *cfg, od_config_section *s, const yaml_node_t *n,
                              const char *path, const char *example_type, const char *const *skip) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping");
  if (rc) return rc;
  if ((rc = check_mapping(p, n, path))) return rc;
  s->file = cfg->file;
  if (!(s->path = xstrdup(path))) return oom(p->err, p->file);
  s->line = nline(n);
  s->col = ncol(n);
  size_t npairs = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  if (npairs && !(s->entries = calloc(npairs, sizeof *s->entries))) return oom(p->err, p->file);
  for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++) {
    const char *key = key_text(p, a);
    yaml_node_t *v = node_at(p, a->value);
    char kpath[256];
    subpath(kpath, sizeof kpath, path, key);
    bool skipped = false;
    for (size_t i = 0; skip && skip[i] && !skipped; i++) skipped = strcmp(key, skip[i]) == 0;
    if (skipped) continue;
    if (strcmp(key, "type") == 0) {
      bool sec = false;
      if ((rc = scalar_value(p, v, kpath, &s->type, &sec))) return rc;
      if (!s->type[0])
        return fail_node(p, v, "%s is empty; expected an adapter name, e.g. 'type: %s'", kpath,
                         example_type);
      continue;
    }
    od_config_entry *e = &s->entries[s->nentries++];
    if ((rc = parse_entry(p, e, key, v, kpath))) return rc;
  }
  if (!s->type)
    return fail_node(p, n, "%s: missing required key 'type'; expected e.g. 'type: %s'", path,
                     example_type);
  return OD_OK;
}

/* ---------------------------------------------------------------- pipelines */

int parse_choice(pctx *p, const yaml_node_t *v, const char *path, const char *const *choices,
                        const char *what, const char *expected, int *out);

/* A positive decimal number (seconds, rates). */
int num_double(pctx *p, const yaml_node_t *n, const char *path, double max, double *out) {
  char *v = NULL;
  bool secret = false;
  int rc = scalar_value(p, n, path, &v, &secret);
  if (rc) return rc;
  char buf[SHOW_MAX + 8], *end = NULL;
  errno = 0;
  double x = strtod(v, &end);
  if (!v[0] || *end || errno || !(x > 0) || x > max)
    rc = fail_node(p, n, "%s: %s is not a number above 0 and at most %g", path, shown(buf, sizeof buf, v, secret), max);
  else
    *out = x;
  free(v);
  return rc;
}

/* alerts: { lag_seconds, latency_p95_seconds, errors_per_minute, anomalies, webhook } */
static int parse_alerts(pctx *p, od_alerts_config *a, const yaml_node_t *n, const char *path) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping such as { lag_seconds: 30 }");
  if (rc || (rc = check_mapping(p, n, path)) || (rc = check_known(p, n, path, ALERT_KEYS))) return rc;
  char kpath[160];
  yaml_node_t *v;
  a->line = nline(n);
  a->col = ncol(n);
  if ((v = map_get(p, n, "lag_seconds"))) {
    subpath(kpath, sizeof kpath, path, "lag_seconds");
    if ((rc = num_double(p, v, kpath, 86400, &a->lag_seconds))) return rc;
  }
  if ((v = map_get(p, n, "latency_p95_seconds"))) {
    subpath(kpath, sizeof kpath, path, "latency_p95_seconds");
    if ((rc = num_double(p, v, kpath, 86400, &a->latency_p95_seconds))) return rc;
  }
  if ((v = map_get(p, n, "errors_per_minute"))) {
    subpath(kpath, sizeof kpath, path, "errors_per_minute");
    if ((rc = num_double(p, v, kpath, 1e6, &a->errors_per_minute))) return rc;
  }
  if ((v = map_get(p, n, "anomalies"))) {
    int choice;
    subpath(kpath, sizeof kpath, path, "anomalies");
    if ((rc = parse_choice(p, v, kpath, BOOLS, "a boolean", "true or false", &choice))) return rc;
    a->anomalies = choice % 2 == 1;
  }
  if ((v = map_get(p, n, "webhook"))) {
    subpath(kpath, sizeof kpath, path, "webhook");
    if ((rc = scalar_value(p, v, kpath, &a->webhook, &a->webhook_secret))) return rc;
    if (strncmp(a->webhook, "http://", 7) != 0 && strncmp(a->webhook, "https://", 8) != 0) {
      char buf[SHOW_MAX + 8];
      return fail_node(p, v, "%s: %s is not an http:// or https:// URL", kpath,
                       shown(buf, sizeof buf, a->webhook, a->webhook_secret));
    }
  }
  return OD_OK;
}

/* Failure policy of a pipeline: on_poison, poison_attempts, circuit_breaker (docs/DEAD_LETTERS.md);
 * also read from `mesh:` (config_mesh.c) for every pipeline of the mesh. */
int parse_fault(pctx *p, od_pipeline_config *pl, const yaml_node_t *n, const char *path) {
  char sub[160];
  yaml_node_t *v;
  int rc;
  long x;
  if ((v = map_get(p, n, "on_poison"))) {
    subpath(sub, sizeof sub, path, "on_poison");
    if ((rc = parse_choice(p, v, sub, POISON_POLICIES, "a poison-row policy", "stop, dead_letter", &pl->on_poison)))
      return rc;
  }
  if ((v = map_get(p, n, "poison_attempts"))) {
    subpath(sub, sizeof sub, path, "poison_attempts");
    if ((rc = num_long(p, v, sub, 1, 100, &x))) return rc;
    pl->poison_attempts = (int)x;
  }
  const yaml_node_t *b = map_get(p, n, "circuit_breaker");
  if (!b || is_null(b)) return OD_OK;
  subpath(sub, sizeof sub, path, "circuit_breaker");
  rc = expect_kind(p, b, YAML_MAPPING_NODE, sub, "a mapping such as { failures: 5, cooldown_ms: 30000 }");
  if (rc || (rc = check_mapping(p, b, sub)) || (rc = check_known(p, b, sub, BREAKER_KEYS))) return rc;
  char kpath[192];
  if ((v = map_get(p, b, "failures"))) {
    subpath(kpath, sizeof kpath, sub, "failures");
    if ((rc = num_long(p, v, kpath, 1, 1000, &x))) return rc;
    pl->breaker.failures = (int)x;
  }
  if ((v = map_get(p, b, "error_rate"))) {
    subpath(kpath, sizeof kpath, sub, "error_rate");
    if ((rc = num_double(p, v, kpath, 1, &pl->breaker.error_rate))) return rc;
  }
  if ((v = map_get(p, b, "min_attempts"))) {
    subpath(kpath, sizeof kpath, sub, "min_attempts");
    if ((rc = num_long(p, v, kpath, 1, 100000, &x))) return rc;
    pl->breaker.min_attempts = (int)x;
  }
  if ((v = map_get(p, b, "window_ms"))) {
    subpath(kpath, sizeof kpath, sub, "window_ms");
    if ((rc = num_long(p, v, kpath, 1000, 86400000, &pl->breaker.window_ms))) return rc;
  }
  if ((v = map_get(p, b, "cooldown_ms"))) {
    subpath(kpath, sizeof kpath, sub, "cooldown_ms");
    if ((rc = num_long(p, v, kpath, 0, 3600000, &pl->breaker.cooldown_ms))) return rc;
  }
  return OD_OK;
}

/* pii: { detect: off|warn|enforce, sample: N } */
static int parse_pii(pctx *p, od_pii_config *c, const yaml_node_t *n, const char *path) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping such as { detect: warn }");
  if (rc || (rc = check_mapping(p, n, path)) || (rc = check_known(p, n, path, PII_KEYS))) return rc;
  char kpath[160];
  yaml_node_t *v;
  if ((v = map_get(p, n, "detect"))) {
    subpath(kpath, sizeof kpath, path, "detect");
    if ((rc = parse_choice(p, v, kpath, PII_MODES, "a PII mode", "off, warn, enforce", &c->detect))) return rc;
  }
  if ((v = map_get(p, n, "sample"))) {
    long x;
    subpath(kpath, sizeof kpath, path, "sample");
    if ((rc = num_long(p, v, kpath, 1, 100000, &x))) return rc;
    c->sample = (int)x;
  }
  return OD_OK;
}


static int parse_batch(pctx *p, od_batch_config *b, const yaml_node_t *n, const char *path) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping");
  if (rc || (rc = check_mapping(p, n, path)) || (rc = check_known(p, n, path, BATCH_KEYS))) return rc;
  char kpath[128];
  yaml_node_t *v;
  long x;
  if ((v = map_get(p, n, "max_rows"))) {
    subpath(kpath, sizeof kpath, path, "max_rows");
    if ((rc = num_long(p, v, kpath, BATCH_ROWS_MIN, BATCH_ROWS_MAX, &x))) return rc;
    b->max_rows = (int)x;
    b->max_rows_set = true;
  }
  if ((v = map_get(p, n, "max_bytes"))) {
    subpath(kpath, sizeof kpath, path, "max_bytes");
    if ((rc = num_size(p, v, kpath, BATCH_BYTES_MIN, BATCH_BYTES_MAX, &b->max_bytes))) return rc;
  }
  if ((v = map_get(p, n, "max_delay_ms"))) {
    subpath(kpath, sizeof kpath, path, "max_delay_ms");
    if ((rc = num_long(p, v, kpath, BATCH_DELAY_MIN, BATCH_DELAY_MAX, &x))) return rc;
    b->max_delay_ms = (int)x;
    b->max_delay_set = true;
  }
  if ((v = map_get(p, n, "adaptive"))) {
    int choice;
    subpath(kpath, sizeof kpath, path, "adaptive");
    if ((rc = parse_choice(p, v, kpath, BOOLS, "a boolean", "true or false", &choice))) return rc;
    b->adaptive = choice % 2 == 1;
  }
  if ((v = map_get(p, n, "min_rows"))) {
    subpath(kpath, sizeof kpath, path, "min_rows");
    if ((rc = num_long(p, v, kpath, BATCH_ROWS_MIN, BATCH_ROWS_MAX, &x))) return rc;
    b->min_rows = (int)x;
  }
  if ((v = map_get(p, n, "target_latency_ms"))) {
    subpath(kpath, sizeof kpath, path, "target_latency_ms");
    if ((rc = num_long(p, v, kpath, 1, 60000, &x))) return rc;
    b->target_latency_ms = (int)x;
  }
  if ((v = map_get(p, n, "linger"))) {
    static const char *const LINGER[] = {"auto", "false", "true", NULL};
    int choice;
    subpath(kpath, sizeof kpath, path, "linger");
    if ((rc = parse_choice(p, v, kpath, LINGER, "auto, true or false", "auto, true or false", &choice))) return rc;
    b->linger = choice == 0 ? OD_LINGER_AUTO : choice == 1 ? OD_LINGER_OFF : OD_LINGER_ON;
  }
  if (b->min_rows > b->max_rows && !map_get(p, n, "min_rows")) b->min_rows = b->max_rows;
  if (b->min_rows > b->max_rows)
    return fail_node(p, n, "%s: min_rows (%d) is larger than max_rows (%d)", path, b->min_rows, b->max_rows);
  return OD_OK;
}

static int parse_queue(pctx *p, od_queue_config *q, const yaml_node_t *n, const char *path) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping");
  if (rc || (rc = check_mapping(p, n, path)) || (rc = check_known(p, n, path, QUEUE_KEYS))) return rc;
  char kpath[128];
  yaml_node_t *v;
  long x;
  if ((v = map_get(p, n, "max_rows"))) {
    subpath(kpath, sizeof kpath, path, "max_rows");
    if ((rc = num_long(p, v, kpath, QUEUE_ROWS_MIN, QUEUE_ROWS_MAX, &x))) return rc;
    q->max_rows = (size_t)x;
  }
  if ((v = map_get(p, n, "max_bytes"))) {
    subpath(kpath, sizeof kpath, path, "max_bytes");
    if ((rc = num_size(p, v, kpath, QUEUE_BYTES_MIN, QUEUE_BYTES_MAX, &q->max_bytes))) return rc;
  }
  return OD_OK;
}

static int parse_name(pctx *p, od_config *cfg, od_pipeline_config *pl, const yaml_node_t *v,
                      const char *path) {
  bool secret = false;
  int rc = scalar_value(p, v, path, &pl->name, &secret);
  if (rc) return rc;
  char buf[SHOW_MAX + 8];
  size_t len = strlen(pl->name);
  if (len == 0)
    return fail_node(p, v, "%s is empty; expected a pipeline name of letters, digits and '_'", path);
  if (len > NAME_MAX_LEN)
    return fail_node(p, v, "%s: %s is %zu characters long; expected at most %d", path,
                     shown(buf, sizeof buf, pl->name, secret), len, NAME_MAX_LEN);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)pl->name[i];
    if (!(isalnum(c) && c < 128) && c != '_')
      return fail_node(p, v, "%s: %s contains an invalid character at position %zu; expected only "
                       "letters, digits and '_' ([A-Za-z0-9_]+)",
                       path, shown(buf, sizeof buf, pl->name, secret), i + 1);
  }
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *o = &cfg->pipelines[i];
    if (o != pl && o->name && strcmp(o->name, pl->name) == 0)
      return fail_node(p, v, "duplicate pipeline name %s (first used by %s at %d:%d); expected "
                       "each pipeline name to be unique",
                       shown(buf, sizeof buf, pl->name, secret), o->path, o->line, o->col);
  }
  pl->line = nline(v);
  pl->col = ncol(v);
  return OD_OK;
}

/* A scalar that must be one of `choices`; *out = its index. `what` names the kind of value. */
int parse_choice(pctx *p, const yaml_node_t *v, const char *path, const char *const *choices,
                        const char *what, const char *expected, int *out) {
  char *val = NULL;
  bool secret = false;
  int rc = scalar_value(p, v, path, &val, &secret);
  if (rc) return rc;
  for (int i = 0; choices[i]; i++)
    if (strcmp(val, choices[i]) == 0) {
      *out = i;
      free(val);
      return OD_OK;
    }
  char buf[SHOW_MAX + 8];
  const char *near = secret ? NULL : closest(val, choices);
  if (near)
    rc = fail_node(p, v, "%s: %s is not %s; did you mean '%s'? (expected one of %s)", path,
                   shown(buf, sizeof buf, val, secret), what, near, expected);
  else
    rc = fail_node(p, v, "%s: %s is not %s; expected one of %s", path, shown(buf, sizeof buf, val, secret),
                   what, expected);
  free(val);
  return rc;
}

static void free_transforms(od_transform_list *t) {
  for (int i = 0; i < t->n; i++) free_section(&t->items[i]);
  free(t->items);
  memset(t, 0, sizeof *t);
}

/* transforms: a list of mappings, each with `type:` (the transform) and its keys. */
static int parse_transforms(pctx *p, od_config *cfg, od_transform_list *t, const yaml_node_t *v, const char *path) {
  int rc = expect_kind(p, v, YAML_SEQUENCE_NODE, path, "a list of transforms (each a mapping with 'type:')");
  if (rc) return rc;
  size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (n && !(t->items = calloc(n, sizeof *t->items))) return oom(p->err, p->file);
  for (size_t i = 0; i < n; i++) {
    char ipath[160];
    snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
    if ((rc = parse_section(p, cfg, &t->items[t->n++], node_at(p, v->data.sequence.items.start[i]), ipath,
                            "drop_columns")))
      return rc;
  }
  return OD_OK;
}

static bool valid_sink_name(const char *s) {
  if (!*s || strlen(s) > NAME_MAX_LEN) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  return true;
}

static const char *const SINK_OWN_KEYS[] = {"name", "transforms", "spool", NULL};
static const char *const SPOOL_KEYS[] = {"max_bytes", "dir", "compression", NULL};
static const char *const SPOOL_CODECS[] = {"none", "zstd", "lz4", NULL};

/* `spool: false`, or a mapping of max_bytes, dir, compression (core/spool.h). */
static int parse_spool(pctx *p, od_spool_config *sp, const yaml_node_t *n, const char *path) {
  int rc, choice;
  char kpath[224];
  if (n->type == YAML_SCALAR_NODE) {
    if ((rc = parse_choice(p, n, path, BOOLS, "false or a mapping", "false, or max_bytes/dir/compression", &choice)))
      return rc;
    sp->disabled = choice % 2 == 0;
    return OD_OK;
  }
  if ((rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping (max_bytes, dir, compression) or false")) ||
      (rc = check_mapping(p, n, path)) || (rc = check_known(p, n, path, SPOOL_KEYS)))
    return rc;
  yaml_node_t *v;
  if ((v = map_get(p, n, "max_bytes"))) {
    subpath(kpath, sizeof kpath, path, "max_bytes");
    size_t bytes;
    if ((rc = num_size(p, v, kpath, MIB, 16 * TIB, &bytes))) return rc;
    sp->max_bytes = bytes;
  }
  if ((v = map_get(p, n, "dir"))) {
    bool secret = false;
    subpath(kpath, sizeof kpath, path, "dir");
    if ((rc = scalar_value(p, v, kpath, &sp->dir, &secret))) return rc;
  }
  if ((v = map_get(p, n, "compression"))) {
    subpath(kpath, sizeof kpath, path, "compression");
    if ((rc = parse_choice(p, v, kpath, SPOOL_CODECS, "a compression", "lz4, zstd, none", &choice))) return rc;
    sp->compression = choice;
  }
  return OD_OK;
}

/* One sink block: the adapter's section, plus `name` and `transforms`, which belong to the core. */
static int parse_sink(pctx *p, od_config *cfg, od_sink_config *sk, const yaml_node_t *n, const char *path,
                      bool named) {
  int rc = parse_section_skip(p, cfg, &sk->section, n, path, "sqlite", SINK_OWN_KEYS);
  if (rc) return rc;
  yaml_node_t *v = map_get(p, n, "name");
  char sub[192];
  if (v) {
    bool secret = false;
    subpath(sub, sizeof sub, path, "name");
    if ((rc = scalar_value(p, v, sub, &sk->name, &secret))) return rc;
    if (!valid_sink_name(sk->name))
      return fail_node(p, v, "%s: expected a sink name of letters, digits and '_' (at most %d)", sub, NAME_MAX_LEN);
  } else if (named) {
    return fail_node(p, n, "%s: missing required key 'name'; every sink of a 'sinks:' list needs a unique name", path);
  } else if (!(sk->name = xstrdup("default"))) {
    return oom(p->err, p->file);
  }
  if ((v = map_get(p, n, "transforms")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "transforms");
    if ((rc = parse_transforms(p, cfg, &sk->transforms, v, sub))) return rc;
  }
  sk->spool.max_bytes = 1ULL << 30;
  sk->spool.compression = 1; /* zstd: docs/BENCHMARKS.md (bench/spool_compress.sh) */
  if ((v = map_get(p, n, "spool")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "spool");
    if ((rc = parse_spool(p, &sk->spool, v, sub))) return rc;
  }
  return OD_OK;
}

/* `sink:` (one) or `sinks:` (a list of named sinks), exactly one of them. */
static int parse_sinks(pctx *p, od_config *cfg, od_pipeline_config *pl, const yaml_node_t *n, const char *path) {
  yaml_node_t *one = map_get(p, n, "sink"), *many = map_get(p, n, "sinks");
  char sub[160];
  int rc;
  if (one && many)
    return fail_node(p, many, "%s: both 'sink' and 'sinks' are set; use 'sink:' for one sink or 'sinks:' for a "
                     "list of named sinks", path);
  if (!one && !many)
    return fail_node(p, n, "%s: missing required key 'sink'; expected a mapping with 'type: sqlite' "
                     "and its settings (or 'sinks:', a list of named sinks)", path);
  if (one) {
    if (!(pl->sinks = calloc(1, sizeof *pl->sinks))) return oom(p->err, p->file);
    pl->nsinks = 1;
    subpath(sub, sizeof sub, path, "sink");
    return parse_sink(p, cfg, &pl->sinks[0], one, sub, false);
  }
  subpath(sub, sizeof sub, path, "sinks");
  if ((rc = expect_kind(p, many, YAML_SEQUENCE_NODE, sub, "a list of sinks (each a mapping with 'name:' and 'type:')")))
    return rc;
  size_t count = (size_t)(many->data.sequence.items.top - many->data.sequence.items.start);
  if (count == 0 || count > OD_SINKS_MAX)
    return fail_node(p, many, "%s: expected 1 to %d sinks, got %zu", sub, OD_SINKS_MAX, count);
  if (!(pl->sinks = calloc(count, sizeof *pl->sinks))) return oom(p->err, p->file);
  for (size_t i = 0; i < count; i++) {
    char ipath[192];
    snprintf(ipath, sizeof ipath, "%s[%zu]", sub, i);
    const yaml_node_t *item = node_at(p, many->data.sequence.items.start[i]);
    od_sink_config *sk = &pl->sinks[pl->nsinks++];
    if ((rc = parse_sink(p, cfg, sk, item, ipath, true))) return rc;
    for (int j = 0; j < pl->nsinks - 1; j++)
      if (!strcmp(pl->sinks[j].name, sk->name))
        return fail_node(p, item, "%s: sink name '%s' is used twice in this pipeline (first at %s); sink names must "
                         "be unique", ipath, sk->name, pl->sinks[j].section.path);
  }
  return OD_OK;
}

void pipeline_defaults(od_pipeline_config *pl) {
  pl->batch = (od_batch_config){.max_rows = 5000, .max_bytes = 64 * MIB, .max_delay_ms = 20,
                                .adaptive = false, .min_rows = 100, .target_latency_ms = 50};
  pl->queue = (od_queue_config){.max_rows = 100000, .max_bytes = 256 * MIB};
  pl->schema_changes = OD_SCHEMA_APPLY;
  pl->consistency = OD_CONSISTENCY_STRONG;
  pl->apply_workers = 4;
  pl->apply_parallel_min_rows = 256;
  pl->reconnect_max_ms = 30000;
  pl->on_poison = OD_POISON_STOP;
  pl->poison_attempts = 3;
  pl->breaker = (od_breaker_config){.failures = 5, .error_rate = 0.5, .min_attempts = 10, .window_ms = 60000,
                                    .cooldown_ms = 30000};
  pl->alerts.anomalies = true;
  pl->pii.sample = 64;
}

static int parse_pipeline(pctx *p, od_config *cfg, od_pipeline_config *pl, int idx,
                          const yaml_node_t *n) {
  pipeline_defaults(pl);
  if (!(pl->path = xprintf("pipelines[%d]", idx))) return oom(p->err, p->file);
  const char *path = pl->path;
  pl->line = nline(n);
  pl->col = ncol(n);
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, path, "a mapping (name, source, sink, ...)");
  if (rc || (rc = check_mapping(p, n, path)) || (rc = check_known(p, n, path, PIPELINE_KEYS)))
    return rc;
  char sub[128];
  yaml_node_t *v = map_get(p, n, "name");
  if (!v)
    return fail_node(p, n, "%s: missing required key 'name'; expected a unique pipeline name of "
                     "letters, digits and '_'", path);
  subpath(sub, sizeof sub, path, "name");
  if ((rc = parse_name(p, cfg, pl, v, sub))) return rc;

  if (!(v = map_get(p, n, "source")))
    return fail_node(p, n, "%s: missing required key 'source'; expected a mapping with 'type: postgres' "
                     "and its settings", path);
  subpath(sub, sizeof sub, path, "source");
  if ((rc = parse_section(p, cfg, &pl->source, v, sub, "postgres"))) return rc;

  if ((rc = parse_sinks(p, cfg, pl, n, path))) return rc;
  if ((v = map_get(p, n, "transforms")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "transforms");
    if ((rc = parse_transforms(p, cfg, &pl->transforms, v, sub))) return rc;
  }
  const yaml_node_t *src_node = map_get(p, n, "source");
  const yaml_node_t *legacy = src_node ? map_get(p, src_node, "reconnect_max_ms") : NULL;
  if ((v = map_get(p, n, "reconnect_max_ms")) || (v = (yaml_node_t *)legacy)) {
    subpath(sub, sizeof sub, v == legacy ? pl->source.path : path, "reconnect_max_ms");
    if ((rc = num_long(p, v, sub, 100, 3600000, &pl->reconnect_max_ms))) return rc;
  }

  if ((v = map_get(p, n, "batch")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "batch");
    if ((rc = parse_batch(p, &pl->batch, v, sub))) return rc;
  }
  if ((v = map_get(p, n, "queue")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "queue");
    if ((rc = parse_queue(p, &pl->queue, v, sub))) return rc;
  }
  if ((v = map_get(p, n, "schema_changes"))) {
    subpath(sub, sizeof sub, path, "schema_changes");
    if ((rc = parse_choice(p, v, sub, SCHEMA_POLICIES, "a schema change policy", "apply, ignore, stop",
                           &pl->schema_changes)))
      return rc;
  }
  if ((v = map_get(p, n, "consistency"))) {
    subpath(sub, sizeof sub, path, "consistency");
    if ((rc = parse_choice(p, v, sub, CONSISTENCY_LEVELS, "a consistency level", "strong, causal, eventual",
                           &pl->consistency)))
      return rc;
  }
  if ((v = map_get(p, n, "apply_workers"))) {
    long x;
    subpath(sub, sizeof sub, path, "apply_workers");
    if ((rc = num_long(p, v, sub, 1, 64, &x))) return rc;
    pl->apply_workers = (int)x;
  }
  if ((v = map_get(p, n, "apply_parallel_min_rows"))) {
    subpath(sub, sizeof sub, path, "apply_parallel_min_rows");
    if ((rc = num_long(p, v, sub, 0, 1000000, &pl->apply_parallel_min_rows))) return rc;
  }
  if ((rc = parse_fault(p, pl, n, path))) return rc;
  if ((v = map_get(p, n, "alerts")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "alerts");
    if ((rc = parse_alerts(p, &pl->alerts, v, sub))) return rc;
  }
  if ((v = map_get(p, n, "pii")) && !is_null(v)) {
    subpath(sub, sizeof sub, path, "pii");
    if ((rc = parse_pii(p, &pl->pii, v, sub))) return rc;
  }
  return OD_OK;
}








/* Two postgres pipelines of one config reading the same database through the same replication
 * slot would take turns failing with "slot in use" (and each would acknowledge the other's
 * changes). The slot is source.slot, or odsync_<pipeline name in lower case> (the postgres
 * source's default, src/sources/pg/pg_source.c); the database is compared by the dsn text. */
static void effective_slot(const od_pipeline_config *pl, char *out, size_t size) {
  const od_config_entry *e = od_config_find(&pl->source, "slot");
  if (e && e->value) {
    snprintf(out, size, "%s", e->value);
    return;
  }
  snprintf(out, size, "odsync_%s", pl->name ? pl->name : "");
  for (char *c = out; *c; c++)
    if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
}

static int check_shared_slots(pctx *p, const od_config *cfg) {
  for (int j = 1; j < cfg->npipelines; j++) {
    const od_pipeline_config *b = &cfg->pipelines[j];
    const od_config_entry *bd = od_config_find(&b->source, "dsn");
    if (!b->source.type || strcmp(b->source.type, "postgres") != 0 || !bd || !bd->value) continue;
    char bs[128];
    effective_slot(b, bs, sizeof bs);
    for (int i = 0; i < j; i++) {
      const od_pipeline_config *a = &cfg->pipelines[i];
      const od_config_entry *ad = od_config_find(&a->source, "dsn");
      if (!a->source.type || strcmp(a->source.type, "postgres") != 0 || !ad || !ad->value ||
          strcmp(ad->value, bd->value) != 0)
        continue;
      char as[128];
      effective_slot(a, as, sizeof as);
      if (strcmp(as, bs) != 0) continue;
      const od_config_entry *e = od_config_find(&b->source, "slot");
      return OD_FAIL(p->err, OD_ECONFIG,
                     "%s:%d:%d: pipelines %s and %s read the same database through the same replication slot %s; "
                     "a slot serves one pipeline: give each its own source.slot",
                     p->file, e ? e->line : b->source.line, e ? e->col : b->source.col, a->name, b->name, bs);
    }
  }
  return OD_OK;
}


static int parse_root(pctx *p, od_config *cfg, const yaml_node_t *root) {
  if (!root)
    return fail_at(p->err, p->file, 1, 1, "the configuration is empty; expected a mapping with at "
                   "least 'pipelines'");
  int rc = expect_kind(p, root, YAML_MAPPING_NODE, "top level", "a mapping (state_dir, log_level, pipelines)");
  if (rc || (rc = check_mapping(p, root, "the top-level mapping"))) return rc;
  if ((rc = check_known(p, root, NULL, TOP_KEYS))) return rc;

  yaml_node_t *v;
  bool secret = false;
  if ((v = map_get(p, root, "state_dir"))) {
    if ((rc = scalar_value(p, v, "state_dir", &cfg->state_dir, &secret))) return rc;
    if (!cfg->state_dir[0])
      return fail_node(p, v, "state_dir is empty; expected a directory path (default ./odsync-state)");
  } else if (!(cfg->state_dir = xstrdup("./odsync-state"))) {
    return oom(p->err, p->file);
  }

  yaml_node_t *log = map_get(p, root, "log");
  if ((v = map_get(p, root, "log_level"))) {
    if (log && map_get(p, log, "level"))
      return fail_node(p, v, "log_level and log.level are both set; keep one (log.level)");
    if ((rc = parse_log_level(p, v, "log_level", &cfg->log_level))) return rc;
  }
  if (log && (rc = parse_log(p, cfg, log))) return rc;
  if (!cfg->log_level && !(cfg->log_level = xstrdup("info"))) return oom(p->err, p->file);
  if (!cfg->log_format && !(cfg->log_format = xstrdup("text"))) return oom(p->err, p->file);

  if ((v = map_get(p, root, "admin")) && (rc = parse_admin(p, &cfg->admin, v))) return rc;
  if ((v = map_get(p, root, "tracing")) && (rc = parse_tracing(p, &cfg->tracing, v))) return rc;
  if ((v = map_get(p, root, "encryption")) && (rc = parse_encryption(p, &cfg->encryption, v))) return rc;
  cfg->audit = (od_audit_config){.enabled = true, .max_bytes = 64 * MIB, .fsync_ms = 1000};
  if ((v = map_get(p, root, "audit")) && (rc = parse_audit(p, &cfg->audit, v))) return rc;

  yaml_node_t *mesh = map_get(p, root, "mesh");
  if (!(v = map_get(p, root, "pipelines")) && !mesh)
    return fail_node(p, root, "missing required key 'pipelines'; expected a list with at least one "
                     "pipeline (or a 'mesh')");
  if (v) {
    if ((rc = expect_kind(p, v, YAML_SEQUENCE_NODE, "pipelines", "a list of pipelines"))) return rc;
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return fail_node(p, v, "pipelines is empty; expected at least one pipeline");
    if (!(cfg->pipelines = calloc(n, sizeof *cfg->pipelines))) return oom(p->err, p->file);
    for (size_t i = 0; i < n; i++) {
      od_pipeline_config *pl = &cfg->pipelines[cfg->npipelines++];
      if ((rc = parse_pipeline(p, cfg, pl, (int)i, node_at(p, v->data.sequence.items.start[i]))))
        return rc;
    }
  }
  if (mesh) {
    int first = cfg->npipelines;
    if ((rc = parse_mesh(p, cfg, mesh))) return rc;
    for (int i = first; i < cfg->npipelines; i++)
      for (int j = 0; j < first; j++)
        if (strcmp(cfg->pipelines[i].name, cfg->pipelines[j].name) == 0)
          return fail_node(p, mesh, "mesh: pipeline name %s (from the mesh) is also used by %s; rename one",
                           cfg->pipelines[i].name, cfg->pipelines[j].path);
  }
  for (int i = 0; i < cfg->npipelines; i++) { /* sources and sinks that keep files find the state dir */
    od_pipeline_config *pl = &cfg->pipelines[i];
    pl->source.state_dir = cfg->state_dir;
    pl->source.encryption = &cfg->encryption;
    for (int j = 0; j < pl->nsinks; j++) {
      pl->sinks[j].section.state_dir = cfg->state_dir;
      pl->sinks[j].section.encryption = &cfg->encryption;
    }
  }
  return check_shared_slots(p, cfg);
}

/* ---------------------------------------------------------------- public API */

static int yaml_failure(const yaml_parser_t *ps, const char *text, size_t len, const char *file,
                        od_error *err) {
  if (ps->error == YAML_MEMORY_ERROR) return oom(err, file);
  int line, col;
  size_t at;
  if (ps->error == YAML_READER_ERROR) { /* only a byte offset is known: count lines up to it */
    at = ps->problem_offset < len ? ps->problem_offset : len;
    line = 1;
    col = 1;
    for (size_t i = 0; i < at; i++) {
      if (text[i] == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
  } else {
    at = ps->problem_mark.index;
    line = (int)ps->problem_mark.line + 1;
    col = (int)ps->problem_mark.column + 1;
  }
  const char *problem = ps->problem ? ps->problem : "unknown problem";
  const char *hint = at < len && text[at] == '\t' ? "valid YAML (indent with spaces, not tabs)"
                                                    : "valid YAML";
  if (ps->context)
    return fail_at(err, file, line, col, "YAML syntax error: %s (%s started at %d:%d); expected %s",
                   problem, ps->context, (int)ps->context_mark.line + 1,
                   (int)ps->context_mark.column + 1, hint);
  return fail_at(err, file, line, col, "YAML syntax error: %s; expected %s", problem, hint);
}

int od_config_parse(const char *text, size_t len, const char *name, od_config **out, od_error *err) {
  if (!out) return OD_FAIL(err, OD_EINVAL, "od_config_parse: out is NULL");
  *out = NULL;
  if (!name) name = "<string>";
  if (!text) {
    text = "";
    len = 0;
  }
  od_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg || !(cfg->file = xstrdup(name))) {
    free(cfg);
    return oom(err, name);
  }
  yaml_parser_t ps;
  if (!yaml_parser_initialize(&ps)) {
    od_config_free(cfg);
    return oom(err, name);
  }
  yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
  yaml_document_t doc;
  int rc;
  if (!yaml_parser_load(&ps, &doc)) {
    rc = yaml_failure(&ps, text, len, cfg->file, err);
  } else {
    pctx p = {.file = cfg->file, .doc = &doc, .err = err};
    rc = parse_root(&p, cfg, yaml_document_get_root_node(&doc));
    if (rc == OD_OK) {
      /* A second document would be silently ignored; refuse it instead. */
      yaml_document_t next;
      if (!yaml_parser_load(&ps, &next)) {
        rc = yaml_failure(&ps, text, len, cfg->file, err);
      } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&next);
        if (r2)
          rc = fail_at(err, cfg->file, (int)next.start_mark.line + 1, (int)next.start_mark.column + 1,
                       "a second YAML document; expected exactly one document per configuration file");
        yaml_document_delete(&next);
      }
    }
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&ps);
  if (rc != OD_OK) {
    od_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return OD_OK;
}

int od_config_load(const char *path, od_config **out, od_error *err) {
  if (!out) return OD_FAIL(err, OD_EINVAL, "od_config_load: out is NULL");
  *out = NULL;
  if (!path) return OD_FAIL(err, OD_EINVAL, "od_config_load: path is NULL");
  char *text = NULL;
  size_t len = 0;
  int e = read_whole(path, &text, &len);
  if (e == ENOMEM) return oom(err, path);
  if (e) return OD_FAIL(err, OD_ECONFIG, "cannot read %s: %s", path, strerror(e));
  int rc = od_config_parse(text, len, path, out, err);
  free(text);
  return rc;
}

void od_config_free(od_config *cfg) {
  if (!cfg) return;
  for (int i = 0; i < cfg->npipelines; i++) {
    od_pipeline_config *pl = &cfg->pipelines[i];
    free(pl->name);
    free(pl->path);
    free(pl->alerts.webhook);
    free_section(&pl->source);
    for (int j = 0; j < pl->nsinks; j++) {
      free(pl->sinks[j].name);
      free(pl->sinks[j].spool.dir);
      free_section(&pl->sinks[j].section);
      free_transforms(&pl->sinks[j].transforms);
    }
    free(pl->sinks);
    free_transforms(&pl->transforms);
  }
  free(cfg->pipelines);
  free(cfg->state_dir);
  free(cfg->log_level);
  free(cfg->log_format);
  free(cfg->admin.listen);
  for (int i = 0; i < cfg->admin.ntokens; i++) {
    char *t = cfg->admin.tokens[i].token;
    if (t) OPENSSL_cleanse(t, strlen(t));
    free(t);
  }
  free(cfg->admin.tokens);
  for (int i = 0; i < cfg->encryption.nkeys; i++) {
    char *k = cfg->encryption.keys[i].key;
    if (k) OPENSSL_cleanse(k, strlen(k));
    free(k);
    free(cfg->encryption.keys[i].id);
  }
  free(cfg->encryption.keys);
  if (cfg->admin.jwt.secret) OPENSSL_cleanse(cfg->admin.jwt.secret, strlen(cfg->admin.jwt.secret));
  free(cfg->admin.jwt.secret);
  free(cfg->admin.jwt.public_key);
  free(cfg->admin.jwt.audience);
  free(cfg->admin.jwt.issuer);
  free(cfg->admin.jwt.role_claim);
  free(cfg->admin.tls_cert);
  free(cfg->admin.tls_key);
  free(cfg->tracing.endpoint);
  free(cfg->tracing.service_name);
  free(cfg->admin.host);
  free(cfg->file);
  free(cfg);
}
