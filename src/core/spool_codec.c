/* spool_codec.c — see spool_codec.h. */
#include "core/spool_codec.h"

#include <stdlib.h>
#include <string.h>

#define CODEC_VERSION 1

/* ---- buffer -------------------------------------------------------------------------------- */

int od_sbuf_reserve(od_sbuf *b, size_t more) {
  if (b->cap - b->len >= more) return OD_OK;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < more) cap *= 2;
  uint8_t *d = realloc(b->data, cap);
  if (!d) return OD_ENOMEM;
  b->data = d;
  b->cap = cap;
  return OD_OK;
}

void od_sbuf_free(od_sbuf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* ---- writer -------------------------------------------------------------------------------- */

typedef struct wr {
  od_sbuf *b;
  int rc;
} wr;

static void put(wr *w, const void *p, size_t n) {
  if (w->rc || (w->rc = od_sbuf_reserve(w->b, n))) return;
  if (n) memcpy(w->b->data + w->b->len, p, n);
  w->b->len += n;
}

static void put_u8(wr *w, uint8_t v) { put(w, &v, 1); }

static void put_var(wr *w, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    tmp[n++] = byte | (v ? 0x80 : 0);
  } while (v);
  put(w, tmp, n);
}

static void put_svar(wr *w, int64_t v) { put_var(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); }

static void put_bytes(wr *w, const void *p, size_t n) {
  put_var(w, n);
  put(w, p, n);
}

static void put_str(wr *w, const char *s) { /* NULL and "" differ: 0 is NULL, n+1 is a string of n */
  if (!s) {
    put_var(w, 0);
    return;
  }
  size_t n = strlen(s);
  put_var(w, n + 1);
  put(w, s, n);
}

static void put_pos(wr *w, const od_pos *p) {
  char text[OD_POS_TEXT_MAX];
  od_pos_to_text(p, text, sizeof text);
  put_bytes(w, text, strlen(text));
}

static void put_tuple(wr *w, const od_tuple *t) {
  put_var(w, t->ncolumns);
  for (uint16_t i = 0; i < t->ncolumns; i++) {
    const od_value *v = &t->values[i];
    put_u8(w, v->kind);
    if (v->kind == OD_VALUE_TEXT || v->kind == OD_VALUE_BINARY) put_bytes(w, v->data, v->len);
  }
}

static void put_relation(wr *w, const od_relation *r, uint64_t session) {
  put_var(w, session);
  put_var(w, (uint64_t)(uintptr_t)r);
  put_var(w, r->oid);
  put_var(w, r->version);
  put_str(w, r->schema);
  put_str(w, r->name);
  put_u8(w, (uint8_t)r->replica_identity);
  put_u8(w, (uint8_t)((r->has_primary_key ? 1 : 0) | (r->match_full_row ? 2 : 0)));
  put_var(w, r->ncolumns);
  for (uint16_t i = 0; i < r->ncolumns; i++) {
    const od_column *c = &r->columns[i];
    put_str(w, c->name);
    put_var(w, c->type_oid);
    put_svar(w, c->typmod);
    put_u8(w, c->key ? 1 : 0);
    put_str(w, c->type_name);
    put_svar(w, c->attnum);
    put_str(w, c->missing_value);
  }
}

enum { CH_REL = 1, CH_TXN_NEW = 2, CH_TXN_NONE = 4 };

int od_spool_encode(const od_chunk *c, uint64_t session, od_sbuf *out) {
  wr w = {.b = out};
  put_u8(&w, CODEC_VERSION);
  put_u8(&w, (uint8_t)((c->ends_txn ? 1 : 0) | (c->heartbeat ? 2 : 0)));
  put_var(&w, c->nchanges);
  put_var(&w, c->ntxns);
  put_var(&w, c->boundary);
  put_pos(&w, &c->end);
  put_svar(&w, c->commit_time);
  put_var(&w, c->xid);
  put_var(&w, c->nmarks);
  for (uint32_t i = 0; i < c->nmarks; i++) {
    put_str(&w, c->marks[i].key);
    put_str(&w, c->marks[i].text);
    put_var(&w, c->marks[i].value);
  }
  /* The relation table: distinct relations in order of first use (few per chunk). */
  const od_relation *small[16], **rels = small;
  size_t nrels = 0, cap = 16;
  for (uint32_t i = 0; i < c->nchanges && !w.rc; i++) {
    const od_relation *r = c->changes[i].rel;
    if (!r) continue;
    size_t k = 0;
    while (k < nrels && rels[k] != r) k++;
    if (k < nrels) continue;
    if (nrels == cap) {
      const od_relation **grown = malloc(cap * 2 * sizeof *grown);
      if (!grown) {
        w.rc = OD_ENOMEM;
        break;
      }
      memcpy(grown, rels, nrels * sizeof *grown);
      if (rels != small) free(rels);
      rels = grown;
      cap *= 2;
    }
    rels[nrels++] = r;
  }
  put_var(&w, nrels);
  for (size_t k = 0; k < nrels; k++) put_relation(&w, rels[k], session);
  const od_pos *prev = NULL;
  for (uint32_t i = 0; i < c->nchanges && !w.rc; i++) {
    const od_change *ch = &c->changes[i];
    uint8_t flags = 0;
    size_t k = 0;
    if (ch->rel) {
      flags |= CH_REL;
      while (rels[k] != ch->rel) k++;
    }
    if (!ch->txn_start) flags |= CH_TXN_NONE;
    else if (!prev || (prev != ch->txn_start && !od_pos_eq(prev, ch->txn_start))) flags |= CH_TXN_NEW;
    put_u8(&w, ch->op);
    put_u8(&w, (uint8_t)ch->old_kind);
    put_u8(&w, ch->truncate_flags);
    put_u8(&w, flags);
    if (flags & CH_REL) put_var(&w, k);
    if (flags & CH_TXN_NEW) put_pos(&w, ch->txn_start);
    if (ch->txn_start) prev = ch->txn_start;
    put_var(&w, ch->index);
    put_tuple(&w, &ch->newtup);
    put_tuple(&w, &ch->oldtup);
  }
  if (rels != small) free(rels);
  return w.rc;
}

/* ---- relation copies ------------------------------------------------------------------------ */

typedef struct rel_copy {
  struct rel_copy *next;
  uint64_t session, ptr;
  uint32_t version;
  od_relation rel;
} rel_copy;

struct od_spool_rels {
  rel_copy *head;
};

od_spool_rels *od_spool_rels_new(void) { return calloc(1, sizeof(od_spool_rels)); }

static void rel_copy_free(rel_copy *c) {
  for (uint16_t i = 0; i < c->rel.ncolumns; i++) {
    free(c->rel.columns[i].name);
    free((char *)c->rel.columns[i].missing_value);
  }
  free(c->rel.columns);
  free(c->rel.schema);
  free(c->rel.name);
  free(c);
}

void od_spool_rels_free(od_spool_rels *r) {
  if (!r) return;
  rel_copy *c = r->head;
  while (c) {
    rel_copy *next = c->next;
    rel_copy_free(c);
    c = next;
  }
  free(r);
}

/* ---- reader -------------------------------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p, *end;
  bool bad;
} rd;

static uint8_t get_u8(rd *r) {
  if (r->bad || r->p >= r->end) {
    r->bad = true;
    return 0;
  }
  return *r->p++;
}

static uint64_t get_var(rd *r) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b = get_u8(r);
    if (r->bad) return 0;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  r->bad = true;
  return 0;
}

static int64_t get_svar(rd *r) {
  uint64_t u = get_var(r);
  return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static const uint8_t *get_bytes(rd *r, size_t *n) {
  uint64_t len = get_var(r);
  if (r->bad || len > (uint64_t)(r->end - r->p)) {
    r->bad = true;
    *n = 0;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += len;
  *n = (size_t)len;
  return p;
}

/* A string: NULL when absent; *n its length. Points into the record (not terminated). */
static const char *get_str(rd *r, size_t *n, bool *present) {
  uint64_t len = get_var(r);
  *present = !r->bad && len > 0;
  *n = 0;
  if (!*present) return NULL;
  if (len - 1 > (uint64_t)(r->end - r->p)) {
    r->bad = true;
    *present = false;
    return NULL;
  }
  const char *s = (const char *)r->p;
  r->p += len - 1;
  *n = (size_t)(len - 1);
  return s;
}

static char *get_strdup(rd *r) {
  size_t n;
  bool present;
  const char *s = get_str(r, &n, &present);
  if (!present) return NULL;
  char *d = malloc(n + 1);
  if (!d) {
    r->bad = true;
    return NULL;
  }
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *get_arena_str(rd *r, od_arena *a, bool *oom) {
  size_t n;
  bool present;
  const char *s = get_str(r, &n, &present);
  if (!present) return NULL;
  char *d = od_arena_strndup(a, s, n);
  if (!d) *oom = true;
  return d;
}

static bool get_pos(rd *r, od_pos *out, od_error *err, int *rc) {
  size_t n;
  const uint8_t *p = get_bytes(r, &n);
  if (r->bad || n >= OD_POS_TEXT_MAX) {
    r->bad = true;
    return false;
  }
  char text[OD_POS_TEXT_MAX];
  memcpy(text, p, n);
  text[n] = '\0';
  if ((*rc = od_pos_from_text(text, out, err))) return false;
  return true;
}

static int get_tuple(rd *r, od_arena *a, od_tuple *t) {
  uint64_t n = get_var(r);
  if (r->bad || n > UINT16_MAX) return OD_EIO;
  t->ncolumns = (uint16_t)n;
  t->values = NULL;
  if (!n) return OD_OK;
  if (!(t->values = od_arena_alloc(a, sizeof(od_value) * n))) return OD_ENOMEM;
  for (uint64_t i = 0; i < n; i++) {
    od_value *v = &t->values[i];
    v->kind = get_u8(r);
    v->data = NULL;
    v->len = 0;
    if (v->kind == OD_VALUE_TEXT || v->kind == OD_VALUE_BINARY) {
      size_t len;
      const uint8_t *p = get_bytes(r, &len);
      if (r->bad || len > UINT32_MAX) return OD_EIO;
      char *d = od_arena_alloc(a, len + 1); /* text keeps its NUL; binary gets one too */
      if (!d) return OD_ENOMEM;
      memcpy(d, p, len);
      d[len] = '\0';
      v->data = d;
      v->len = (uint32_t)len;
    } else if (v->kind != OD_VALUE_NULL && v->kind != OD_VALUE_UNCHANGED) {
      return OD_EIO;
    }
  }
  return r->bad ? OD_EIO : OD_OK;
}

/* One relation of the table: the live pointer (same session) or a copy. */
static int get_relation(rd *r, uint64_t session, od_spool_rels *rels, const od_relation **out) {
  uint64_t s = get_var(r), ptr = get_var(r);
  uint64_t oid = get_var(r), version = get_var(r);
  if (r->bad) return OD_EIO;
  rel_copy *found = NULL;
  if (s != session)
    for (rel_copy *c = rels->head; c && !found; c = c->next)
      if (c->session == s && c->ptr == ptr && c->version == version) found = c;
  bool build = s != session && !found;
  rel_copy *c = NULL;
  if (build) {
    if (!(c = calloc(1, sizeof *c))) return OD_ENOMEM;
    c->session = s;
    c->ptr = ptr;
    c->version = (uint32_t)version;
    c->rel.oid = (uint32_t)oid;
    c->rel.version = (uint32_t)version;
  }
  /* Read the rest whether or not it is needed (the cursor must pass it). */
  char *schema = get_strdup(r), *name = get_strdup(r);
  uint8_t ri = get_u8(r), flags = get_u8(r);
  uint64_t ncols = get_var(r);
  if (r->bad || ncols > UINT16_MAX) goto bad;
  if (build) {
    c->rel.schema = schema;
    c->rel.name = name;
    schema = name = NULL;
    c->rel.replica_identity = (char)ri;
    c->rel.has_primary_key = flags & 1;
    c->rel.match_full_row = flags & 2;
    c->rel.ncolumns = (uint16_t)ncols;
    if (ncols && !(c->rel.columns = calloc(ncols, sizeof(od_column)))) goto bad;
  }
  for (uint64_t i = 0; i < ncols; i++) {
    char *cname = get_strdup(r);
    uint64_t type_oid = get_var(r);
    int64_t typmod = get_svar(r);
    uint8_t key = get_u8(r);
    size_t tn;
    bool present;
    const char *type_name = get_str(r, &tn, &present);
    int64_t attnum = get_svar(r);
    char *missing = get_strdup(r);
    if (r->bad || !build) {
      free(cname);
      free(missing);
      if (r->bad) goto bad;
      continue;
    }
    od_column *col = &c->rel.columns[i];
    col->name = cname;
    col->type_oid = (uint32_t)type_oid;
    col->typmod = (int32_t)typmod;
    col->key = key != 0;
    if (tn >= sizeof col->type_name) tn = sizeof col->type_name - 1;
    if (tn) memcpy(col->type_name, type_name, tn);
    col->attnum = (int16_t)attnum;
    col->missing_value = missing;
  }
  free(schema);
  free(name);
  if (s == session) {
    *out = (const od_relation *)(uintptr_t)ptr;
  } else if (found) {
    *out = &found->rel;
  } else {
    c->next = rels->head;
    rels->head = c;
    *out = &c->rel;
  }
  return OD_OK;
bad:
  free(schema);
  free(name);
  if (c) rel_copy_free(c);
  return r->bad ? OD_EIO : OD_ENOMEM;
}

#define BAD(what) OD_FAIL(err, OD_EIO, "malformed spool record: %s", what)

int od_spool_decode(const uint8_t *p, size_t n, uint64_t session, od_spool_rels *rels, od_chunk *c, od_error *err) {
  rd r = {.p = p, .end = p + n};
  int rc = OD_OK;
  if (get_u8(&r) != CODEC_VERSION) return BAD("unknown version (written by a newer odsync?)");
  uint8_t flags = get_u8(&r);
  uint64_t nchanges = get_var(&r), ntxns = get_var(&r), boundary = get_var(&r);
  if (r.bad || boundary > nchanges || nchanges > UINT32_MAX) return BAD("chunk header");
  c->ends_txn = flags & 1;
  c->heartbeat = flags & 2;
  c->ntxns = (uint32_t)ntxns;
  c->boundary = (uint32_t)boundary;
  if (!get_pos(&r, &c->end, err, &rc)) return rc ? rc : BAD("end position");
  c->commit_time = get_svar(&r);
  c->xid = get_var(&r);
  uint64_t nmarks = get_var(&r);
  if (r.bad || nmarks > (uint64_t)(r.end - r.p)) return BAD("marks");
  bool oom = false;
  for (uint64_t i = 0; i < nmarks; i++) {
    char *key = get_arena_str(&r, &c->arena, &oom);
    char *text = get_arena_str(&r, &c->arena, &oom);
    uint64_t value = get_var(&r);
    if (oom) return OD_FAIL(err, OD_ENOMEM, "out of memory decoding a spool record");
    if (r.bad || !key) return BAD("mark");
    if ((rc = text ? od_chunk_add_text_mark(c, key, text) : od_chunk_add_mark(c, key, value)))
      return OD_FAIL(err, rc, "out of memory decoding a spool record");
  }
  uint64_t nrels = get_var(&r);
  if (r.bad || nrels > (uint64_t)(r.end - r.p)) return BAD("relation table");
  const od_relation **rel = NULL;
  if (nrels && !(rel = od_arena_alloc(&c->arena, nrels * sizeof *rel)))
    return OD_FAIL(err, OD_ENOMEM, "out of memory decoding a spool record");
  for (uint64_t i = 0; i < nrels; i++)
    if ((rc = get_relation(&r, session, rels, &rel[i])))
      return rc == OD_ENOMEM ? OD_FAIL(err, rc, "out of memory decoding a spool record") : BAD("relation");
  const od_pos *txn = NULL;
  for (uint64_t i = 0; i < nchanges; i++) {
    od_change *ch = od_chunk_add(c);
    if (!ch) return OD_FAIL(err, OD_ENOMEM, "out of memory decoding a spool record");
    ch->op = get_u8(&r);
    ch->old_kind = (char)get_u8(&r);
    ch->truncate_flags = get_u8(&r);
    uint8_t f = get_u8(&r);
    if (f & CH_REL) {
      uint64_t k = get_var(&r);
      if (r.bad || k >= nrels) return BAD("relation reference");
      ch->rel = rel[k];
    }
    if (f & CH_TXN_NEW) {
      od_pos *pos = od_arena_alloc(&c->arena, sizeof *pos);
      if (!pos) return OD_FAIL(err, OD_ENOMEM, "out of memory decoding a spool record");
      if (!get_pos(&r, pos, err, &rc)) return rc ? rc : BAD("transaction position");
      txn = pos;
    }
    if (!(f & CH_TXN_NONE) && !txn) return BAD("transaction position missing");
    ch->txn_start = (f & CH_TXN_NONE) ? NULL : txn;
    uint64_t index = get_var(&r);
    if (r.bad || index > UINT32_MAX) return BAD("change");
    ch->index = (uint32_t)index;
    if ((rc = get_tuple(&r, &c->arena, &ch->newtup)) || (rc = get_tuple(&r, &c->arena, &ch->oldtup)))
      return rc == OD_ENOMEM ? OD_FAIL(err, rc, "out of memory decoding a spool record") : BAD("tuple");
  }
  if (r.bad || r.p != r.end) return BAD("trailing bytes");
  return OD_OK;
}
