/* keytuple.c — see keytuple.h. */
#include "core/keytuple.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odsync/error.h"

/* ---- encoding -------------------------------------------------------------------------------- */

static bool reserve(od_keybuf *b, size_t need) {
  if (need <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return false;
  b->p = p;
  b->cap = cap;
  return true;
}

int od_key_encode(od_keybuf *b, const od_tuple *t, const uint16_t *cols, int n) {
  b->len = 0;
  if (!t->values || n <= 0) return 0;
  size_t need = 0;
  for (int i = 0; i < n; i++) {
    if (cols[i] >= t->ncolumns) return 0;
    const od_value *v = &t->values[cols[i]];
    if (v->kind != OD_VALUE_TEXT || !v->data) return 0;
    need += 4 + (size_t)v->len;
  }
  if (!reserve(b, need)) return OD_ENOMEM;
  for (int i = 0; i < n; i++) {
    const od_value *v = &t->values[cols[i]];
    unsigned char *o = (unsigned char *)b->p + b->len;
    o[0] = (unsigned char)v->len;
    o[1] = (unsigned char)(v->len >> 8);
    o[2] = (unsigned char)(v->len >> 16);
    o[3] = (unsigned char)(v->len >> 24);
    memcpy(o + 4, v->data, v->len);
    b->len += 4 + (size_t)v->len;
  }
  return 1;
}

void od_keybuf_free(od_keybuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- the set --------------------------------------------------------------------------------- */

/* FNV-1a, then a final mix so that the low bits (the slot index) depend on every byte. */
static uint64_t hash_bytes(const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * UINT64_C(0x100000001b3);
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  return h;
}

void od_keyset_init(od_keyset *s) {
  memset(s, 0, sizeof *s);
  od_arena_init(&s->bytes, 64 * 1024);
}

static od_keyset_slot *find(const od_keyset *s, uint64_t h, const void *key, size_t len) {
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    od_keyset_slot *sl = &s->slots[i];
    if (!sl->key || (sl->hash == h && sl->len == len && !memcmp(sl->key, key, len))) return sl;
  }
}

int od_keyset_add(od_keyset *s, const void *key, size_t len) {
  if (len > UINT32_MAX) return OD_ENOMEM;
  if ((s->n + 1) * 2 > s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    od_keyset_slot *n = calloc(ncap, sizeof *n), *old = s->slots;
    if (!n) return OD_ENOMEM;
    size_t ocap = s->cap;
    s->slots = n;
    s->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
      if (old[i].key) *find(s, old[i].hash, old[i].key, old[i].len) = old[i];
    free(old);
  }
  uint64_t h = hash_bytes(key, len);
  od_keyset_slot *sl = find(s, h, key, len);
  if (sl->key) return OD_OK;
  char *copy = od_arena_alloc(&s->bytes, len ? len : 1);
  if (!copy) return OD_ENOMEM;
  memcpy(copy, key, len);
  *sl = (od_keyset_slot){.hash = h, .key = copy, .len = (uint32_t)len};
  s->n++;
  return OD_OK;
}

bool od_keyset_has(const od_keyset *s, const void *key, size_t len) {
  if (!s->n) return false;
  return find(s, hash_bytes(key, len), key, len)->key != NULL;
}

size_t od_keyset_count(const od_keyset *s) { return s->n; }

void od_keyset_clear(od_keyset *s) {
  if (s->n) memset(s->slots, 0, s->cap * sizeof *s->slots);
  s->n = 0;
  od_arena_reset(&s->bytes);
}

void od_keyset_free(od_keyset *s) {
  free(s->slots);
  od_arena_destroy(&s->bytes);
  memset(s, 0, sizeof *s);
}

/* ---- the progress mark ----------------------------------------------------------------------- */

int od_keymark_format(const char *form, int n, const char *const *names, const char *const *types,
                      const char *const *values, char **out) {
  *out = NULL;
  if (n < 1 || n > OD_SNAP_KEY_MAX) return OD_EINVAL;
  char count[16];
  snprintf(count, sizeof count, "%d", n);
  const char *fields[2 + 3 * OD_SNAP_KEY_MAX];
  int nf = 0;
  fields[nf++] = form ? form : "";
  fields[nf++] = count;
  for (int i = 0; i < n; i++) {
    fields[nf++] = names[i];
    fields[nf++] = types[i];
    fields[nf++] = values[i];
  }
  size_t size = 3;
  for (int i = 0; i < nf; i++) size += strlen(fields[i]) + 24;
  char *p = malloc(size);
  if (!p) return OD_ENOMEM;
  size_t o = (size_t)snprintf(p, size, "K1");
  for (int i = 0; i < nf; i++) {
    size_t len = strlen(fields[i]);
    o += (size_t)snprintf(p + o, size - o, " %zu:", len);
    memcpy(p + o, fields[i], len);
    o += len;
  }
  p[o] = '\0';
  *out = p;
  return OD_OK;
}

/* One " <len>:<bytes>" field at *pos: a malloc'd copy in *out. */
static int take_field(const char *text, size_t *pos, char **out) {
  const char *p = text + *pos;
  if (*p != ' ') return OD_EINVAL;
  p++;
  if (*p < '0' || *p > '9') return OD_EINVAL;
  char *end;
  unsigned long long len = strtoull(p, &end, 10);
  if (*end != ':') return OD_EINVAL;
  end++;
  if (len > SIZE_MAX - 1 || strnlen(end, (size_t)len) < len) return OD_EINVAL; /* runs past the text */
  char *copy = malloc(len + 1);
  if (!copy) return OD_ENOMEM;
  memcpy(copy, end, len);
  copy[len] = '\0';
  *out = copy;
  *pos = (size_t)(end + len - text);
  return OD_OK;
}

int od_keymark_parse(const char *text, od_keymark *m) {
  memset(m, 0, sizeof *m);
  if (!text || strncmp(text, "K1", 2) != 0) return OD_EINVAL;
  size_t pos = 2;
  char *count = NULL;
  int rc = take_field(text, &pos, &m->form);
  if (!rc) rc = take_field(text, &pos, &count);
  if (rc) {
    free(count);
    return rc;
  }
  char *end;
  long n = strtol(count, &end, 10);
  bool ok = *count && !*end && n >= 1 && n <= OD_SNAP_KEY_MAX;
  free(count);
  if (!ok) return OD_EINVAL;
  for (int i = 0; i < n; i++) {
    if ((rc = take_field(text, &pos, &m->names[i])) || (rc = take_field(text, &pos, &m->types[i])) ||
        (rc = take_field(text, &pos, &m->values[i])))
      return rc;
    m->n = i + 1;
  }
  return text[pos] ? OD_EINVAL : OD_OK;
}

void od_keymark_free(od_keymark *m) {
  free(m->form);
  for (int i = 0; i < OD_SNAP_KEY_MAX; i++) {
    free(m->names[i]);
    free(m->types[i]);
    free(m->values[i]);
  }
  memset(m, 0, sizeof *m);
}

void od_keymark_describe(const od_keymark *m, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
#define PUT(...)                                                             \
  do {                                                                       \
    if (o < cap) o += (size_t)snprintf(out + o, cap - o, __VA_ARGS__);       \
  } while (0)
  PUT("%s", m->n > 1 ? "(" : "");
  for (int i = 0; i < m->n; i++) PUT("%s%s", i ? ", " : "", m->names[i] ? m->names[i] : "");
  PUT("%s > %s", m->n > 1 ? ")" : "", m->n > 1 ? "(" : "");
  for (int i = 0; i < m->n; i++) {
    const char *v = m->values[i] ? m->values[i] : "";
    PUT("%s%.40s%s", i ? ", " : "", v, strlen(v) > 40 ? "..." : "");
  }
  PUT("%s", m->n > 1 ? ")" : "");
#undef PUT
}
