/* pgoutput.c — decoder of PostgreSQL's pgoutput logical replication messages (protocol v1).
 *
 * Owns: the relation cache (an OID -> current od_relation map; every version ever built stays
 * alive, reachable through `previous`, until od_pgoutput_free), the type cache (OID ->
 * "schema.name" strings), the open transaction's od_txn_info and origin name, and the scratch
 * space values are decoded into (a byte buffer plus two od_value arrays, grown only when a
 * message is larger or wider than any before it, so decoding a change of a known relation
 * never allocates once warm; the byte buffer is released after a message that needed more than
 * SCRATCH_KEEP, and not used at all by od_pgoutput_decode_inplace).
 * Never touches: sockets, libpq, the queue, sinks, logging. Never calls exit().
 * Pointer ownership: the input buffer stays the caller's. Values handed to handler->change point
 * into the input buffer (binary values, message prefix/content) or into decoder scratch (text
 * values, copied so that data[len] == '\0'; od_pgoutput_decode_inplace instead moves each text
 * value one byte back over its own length field and terminates it there, in the caller's buffer)
 * and are valid only during that call. od_relation
 * pointers stay valid until od_pgoutput_free. txn->origin is valid until the Commit returns.
 * Message formats: PostgreSQL's "Logical Replication Message Formats" (protocol version 1);
 * integers are big-endian, strings NUL-terminated.
 */
#include "sources/pg/pgoutput.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2000-01-01 (PostgreSQL epoch) minus 1970-01-01, in microseconds. */
#define PG_EPOCH_OFFSET_USEC INT64_C(946684800000000)

#define REL_FLAG_KEY 1 /* column flag: part of the replica identity key */
#define MSG_TRANSACTIONAL 1

/* ---- OID-keyed open-addressing map (OID 0 is never valid, so 0 marks an empty slot). ---- */

typedef struct oid_slot {
  uint32_t oid;
  void *val;
} oid_slot;

typedef struct oid_map {
  oid_slot *slots;
  size_t cap; /* 0 or a power of two */
  size_t count;
} oid_map;

static void *map_get(const oid_map *m, uint32_t oid) {
  if (!m->cap || !oid) return NULL;
  for (size_t i = (oid * 2654435761u) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->slots[i].oid == oid) return m->slots[i].val;
    if (m->slots[i].oid == 0) return NULL;
  }
}

/* Inserts or replaces; *old receives the replaced value (or NULL). False on out-of-memory. */
static bool map_put(oid_map *m, uint32_t oid, void *val, void **old) {
  *old = NULL;
  if ((m->count + 1) * 2 > m->cap) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    oid_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return false;
    for (size_t j = 0; j < m->cap; j++) {
      if (!m->slots[j].oid) continue;
      size_t i = (m->slots[j].oid * 2654435761u) & (ncap - 1);
      while (ns[i].oid) i = (i + 1) & (ncap - 1);
      ns[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
  }
  size_t i = (oid * 2654435761u) & (m->cap - 1);
  while (m->slots[i].oid && m->slots[i].oid != oid) i = (i + 1) & (m->cap - 1);
  if (m->slots[i].oid == oid) {
    *old = m->slots[i].val;
  } else {
    m->slots[i].oid = oid;
    m->count++;
  }
  m->slots[i].val = val;
  return true;
}

/* ---- Relation versions: one allocation holding the od_relation, its columns, the key flags as
 * received (the handler may change column.key; comparisons use what the wire said) and the
 * strings. `rel` is the first member so an od_relation* converts back. ---- */

typedef struct rel_version {
  od_relation rel;
  uint8_t *wire_flags;
} rel_version;

struct od_pgoutput {
  oid_map rels;  /* oid -> rel_version* (current version) */
  oid_map types; /* oid -> char* "schema.name" */
  char *scratch;
  size_t scratch_cap;
  od_value *vals[2]; /* [0] new tuple, [1] old tuple */
  size_t vals_cap;
  bool in_txn;
  od_txn_info txn;
  od_lsn final_lsn; /* the open transaction's commit record (Begin), checked against Commit */
  uint32_t next_index;
  char *origin;
  size_t origin_cap;
};

/* ---- Reader with sticky truncation: after the first short read every get returns 0. ---- */

typedef struct reader {
  const unsigned char *p;
  size_t len, pos;
  char type;
  const char *short_field; /* first field that did not fit, NULL while all fit */
  size_t short_pos;
  const od_relation *rel;  /* for error messages */
  const char *nsp, *relname; /* relation names while a Relation message is being parsed */
  unsigned char *mut;       /* the same buffer, writable (od_pgoutput_decode_inplace), else NULL */
} reader;

static bool need(reader *r, size_t n, const char *field) {
  if (r->short_field) return false;
  if (r->len - r->pos < n) {
    r->short_field = field;
    r->short_pos = r->pos;
    return false;
  }
  return true;
}

static uint8_t get8(reader *r, const char *field) {
  if (!need(r, 1, field)) return 0;
  return r->p[r->pos++];
}

static uint16_t get16(reader *r, const char *field) {
  if (!need(r, 2, field)) return 0;
  const unsigned char *b = r->p + r->pos;
  r->pos += 2;
  return (uint16_t)((b[0] << 8) | b[1]);
}

static uint32_t get32(reader *r, const char *field) {
  if (!need(r, 4, field)) return 0;
  const unsigned char *b = r->p + r->pos;
  r->pos += 4;
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static uint64_t get64(reader *r, const char *field) {
  uint64_t hi = get32(r, field);
  return (hi << 32) | get32(r, field);
}

/* A NUL-terminated string inside the message; *n gets its length. NULL when unterminated. */
static const char *getstr(reader *r, size_t *n, const char *field) {
  if (r->short_field) return NULL;
  const unsigned char *s = r->p + r->pos;
  const unsigned char *nul = memchr(s, '\0', r->len - r->pos);
  if (!nul) {
    r->short_field = field;
    r->short_pos = r->pos;
    return NULL;
  }
  *n = (size_t)(nul - s);
  r->pos += *n + 1;
  return (const char *)s;
}

static const char *getbytes(reader *r, size_t n, const char *field) {
  if (!need(r, n, field)) return NULL;
  const char *s = (const char *)r->p + r->pos;
  r->pos += n;
  return s;
}

static const char *msg_name(char t) {
  switch (t) {
  case 'B': return "Begin";
  case 'C': return "Commit";
  case 'O': return "Origin";
  case 'R': return "Relation";
  case 'Y': return "Type";
  case 'I': return "Insert";
  case 'U': return "Update";
  case 'D': return "Delete";
  case 'T': return "Truncate";
  case 'M': return "Message";
  case 'S': return "Stream Start";
  case 'E': return "Stream Stop";
  case 'c': return "Stream Commit";
  case 'A': return "Stream Abort";
  }
  return "unknown";
}

/* Fills err with "pgoutput <Name> message ('X'): <detail> at byte offset N of LEN[ (relation
 * s.n)]" and returns code. */
static int fail(const reader *r, od_error *err, int code, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(const reader *r, od_error *err, int code, size_t at, const char *fmt, ...) {
  char detail[256], relpart[160] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  if (r->rel)
    snprintf(relpart, sizeof relpart, " (relation %s.%s)", r->rel->schema, r->rel->name);
  else if (r->relname)
    snprintf(relpart, sizeof relpart, " (relation %s.%s)",
             r->nsp && *r->nsp ? r->nsp : "pg_catalog", r->relname);
  unsigned char t = (unsigned char)r->type;
  if (t >= 0x20 && t < 0x7f)
    return OD_FAIL(err, code, "pgoutput %s message ('%c'): %s at byte offset %zu of %zu%s",
                   msg_name(r->type), t, detail, at, r->len, relpart);
  return OD_FAIL(err, code, "pgoutput %s message (0x%02x): %s at byte offset %zu of %zu%s",
                 msg_name(r->type), t, detail, at, r->len, relpart);
}

static int truncated(const reader *r, od_error *err) {
  return fail(r, err, OD_EPROTOCOL, r->short_pos, "message truncated while reading %s",
              r->short_field);
}

/* Protocol v1 messages have no trailing bytes: check a message was read to its end. */
static int finish(const reader *r, od_error *err) {
  if (r->short_field) return truncated(r, err);
  if (r->pos != r->len)
    return fail(r, err, OD_EPROTOCOL, r->pos, "%zu unexpected trailing bytes", r->len - r->pos);
  return OD_OK;
}

static int64_t pg_time_to_unix(uint64_t t) { return (int64_t)t + PG_EPOCH_OFFSET_USEC; }

/* ---- Lifecycle and lookups ---- */

od_pgoutput *od_pgoutput_new(void) { return calloc(1, sizeof(od_pgoutput)); }

void od_pgoutput_free(od_pgoutput *d) {
  if (!d) return;
  for (size_t i = 0; i < d->rels.cap; i++) {
    od_relation *rel = d->rels.slots[i].oid ? d->rels.slots[i].val : NULL;
    while (rel) {
      od_relation *prev = rel->previous;
      free(rel);
      rel = prev;
    }
  }
  for (size_t i = 0; i < d->types.cap; i++)
    if (d->types.slots[i].oid) free(d->types.slots[i].val);
  free(d->rels.slots);
  free(d->types.slots);
  free(d->scratch);
  free(d->vals[0]);
  free(d->vals[1]);
  free(d->origin);
  free(d);
}

const od_relation *od_pgoutput_relation(const od_pgoutput *d, uint32_t oid) {
  return map_get(&d->rels, oid);
}

const char *od_pgoutput_type_name(const od_pgoutput *d, uint32_t oid) {
  return map_get(&d->types, oid);
}

bool od_pgoutput_in_transaction(const od_pgoutput *d) { return d->in_txn; }

void od_pgoutput_reset(od_pgoutput *d) {
  d->in_txn = false;
  d->next_index = 0;
  memset(&d->txn, 0, sizeof d->txn);
}

/* ---- Transaction framing ---- */

static int need_txn(const od_pgoutput *d, const reader *r, od_error *err) {
  if (d->in_txn) return OD_OK;
  return fail(r, err, OD_EPROTOCOL, 0, "arrived outside a transaction (no Begin before it)");
}

static int on_begin(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  uint64_t final_lsn = get64(r, "final LSN");
  uint64_t ts = get64(r, "commit timestamp");
  uint32_t xid = get32(r, "xid");
  int rc = finish(r, err);
  if (rc) return rc;
  if (d->in_txn)
    return fail(r, err, OD_EPROTOCOL, 0, "xid %u began while xid %u was still open", xid,
                (unsigned)d->txn.xid);
  memset(&d->txn, 0, sizeof d->txn);
  d->txn.xid = xid;
  d->final_lsn = final_lsn;
  d->txn.start = od_pg_pos(final_lsn);
  d->txn.commit_time = pg_time_to_unix(ts);
  d->in_txn = true;
  d->next_index = 0;
  return h->begin ? h->begin(h->ctx, &d->txn, err) : OD_OK;
}

static int on_commit(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  (void)get8(r, "flags");
  uint64_t commit_lsn = get64(r, "commit LSN");
  uint64_t end_lsn = get64(r, "end LSN");
  uint64_t ts = get64(r, "commit timestamp");
  int rc = finish(r, err);
  if (rc) return rc;
  if (!d->in_txn)
    return fail(r, err, OD_EPROTOCOL, 0, "Commit " OD_LSN_FMT " without a Begin",
                OD_LSN_ARGS(commit_lsn));
  if (commit_lsn != d->final_lsn)
    return fail(r, err, OD_EPROTOCOL, 1, "commit LSN " OD_LSN_FMT " differs from the Begin's "
                OD_LSN_FMT " (xid %u)", OD_LSN_ARGS(commit_lsn), OD_LSN_ARGS(d->final_lsn),
                (unsigned)d->txn.xid);
  d->txn.end = od_pg_pos(end_lsn);
  d->txn.commit_time = pg_time_to_unix(ts);
  rc = h->commit ? h->commit(h->ctx, &d->txn, err) : OD_OK;
  od_pgoutput_reset(d);
  return rc;
}

static int on_origin(od_pgoutput *d, reader *r, od_error *err) {
  size_t n = 0;
  uint64_t origin_lsn = get64(r, "origin LSN");
  const char *name = getstr(r, &n, "origin name");
  int rc = finish(r, err);
  if (rc || (rc = need_txn(d, r, err))) return rc;
  if (n + 1 > d->origin_cap) {
    char *nb = realloc(d->origin, n + 1);
    if (!nb) return OD_FAIL(err, OD_ENOMEM, "pgoutput: no memory for origin name (%zu bytes)", n);
    d->origin = nb;
    d->origin_cap = n + 1;
  }
  memcpy(d->origin, name, n + 1);
  d->txn.origin = d->origin;
  d->txn.origin_lsn = origin_lsn;
  return OD_OK;
}

/* ---- Relation and Type ---- */

static bool same_shape(const rel_version *old, const char *nsp, const char *name, char ri,
                       uint16_t ncols, reader *cols) {
  const od_relation *o = &old->rel;
  if (o->replica_identity != ri || o->ncolumns != ncols || strcmp(o->schema, nsp) ||
      strcmp(o->name, name))
    return false;
  for (uint16_t i = 0; i < ncols; i++) {
    size_t n;
    uint8_t flags = get8(cols, "column flags");
    const char *cname = getstr(cols, &n, "column name");
    uint32_t type = get32(cols, "column type");
    int32_t typmod = (int32_t)get32(cols, "column typmod");
    if (old->wire_flags[i] != flags || strcmp(o->columns[i].name, cname) ||
        o->columns[i].type_oid != type || o->columns[i].typmod != typmod)
      return false;
  }
  return true;
}

static int on_relation(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  size_t nsp_len = 0, name_len = 0, names_len = 0;
  uint32_t oid = get32(r, "relation OID");
  const char *nsp = getstr(r, &nsp_len, "namespace");
  const char *name = getstr(r, &name_len, "relation name");
  r->nsp = nsp;
  r->relname = name;
  char ri = (char)get8(r, "replica identity");
  uint16_t ncols = get16(r, "column count");
  reader cols = *r; /* second pass over the columns */
  for (uint16_t i = 0; i < ncols && !r->short_field; i++) {
    size_t n = 0;
    (void)get8(r, "column flags");
    (void)getstr(r, &n, "column name");
    (void)get32(r, "column type");
    (void)get32(r, "column typmod");
    names_len += n + 1;
  }
  int rc = finish(r, err);
  if (rc) return rc;
  if (!oid) return fail(r, err, OD_EPROTOCOL, 1, "relation OID 0");
  if (nsp_len == 0) {
    nsp = "pg_catalog"; /* pgoutput sends an empty namespace for pg_catalog */
    nsp_len = strlen(nsp);
  }

  rel_version *old = map_get(&d->rels, oid);
  reader cmp = cols;
  if (old && same_shape(old, nsp, name, ri, ncols, &cmp)) return OD_OK;

  size_t size = sizeof(rel_version) + (size_t)ncols * sizeof(od_column) + ncols + nsp_len + 1 +
                name_len + 1 + names_len;
  rel_version *v = calloc(1, size);
  if (!v)
    return fail(r, err, OD_ENOMEM, 0, "no memory for relation %u (%zu bytes)", oid, size);
  od_relation *rel = &v->rel;
  rel->columns = (od_column *)(v + 1);
  v->wire_flags = (uint8_t *)(rel->columns + ncols);
  char *s = (char *)(v->wire_flags + ncols);
  rel->oid = oid;
  rel->schema = memcpy(s, nsp, nsp_len + 1);
  s += nsp_len + 1;
  rel->name = memcpy(s, name, name_len + 1);
  s += name_len + 1;
  rel->replica_identity = ri;
  rel->ncolumns = ncols;
  rel->version = old ? old->rel.version + 1 : 1;
  rel->previous = old ? &old->rel : NULL;
  bool any_key = false;
  for (uint16_t i = 0; i < ncols; i++) {
    size_t n = 0;
    od_column *c = &rel->columns[i];
    v->wire_flags[i] = get8(&cols, "column flags");
    const char *cname = getstr(&cols, &n, "column name");
    c->name = memcpy(s, cname, n + 1);
    s += n + 1;
    c->type_oid = get32(&cols, "column type");
    c->typmod = (int32_t)get32(&cols, "column typmod");
    c->key = (v->wire_flags[i] & REL_FLAG_KEY) != 0;
    any_key = any_key || c->key;
  }
  rel->has_primary_key = any_key && (ri == 'd' || ri == 'i');
  od_pg_set_identity(rel);

  if (h->relation && (rc = h->relation(h->ctx, rel, err)) != 0) {
    free(v);
    return rc;
  }
  void *replaced;
  if (!map_put(&d->rels, oid, v, &replaced)) {
    free(v);
    return fail(r, err, OD_ENOMEM, 0, "no memory for the relation cache");
  }
  return OD_OK;
}

static int on_type(od_pgoutput *d, reader *r, od_error *err) {
  size_t nsp_len = 0, name_len = 0;
  uint32_t oid = get32(r, "type OID");
  const char *nsp = getstr(r, &nsp_len, "namespace");
  const char *name = getstr(r, &name_len, "type name");
  int rc = finish(r, err);
  if (rc) return rc;
  if (!oid) return fail(r, err, OD_EPROTOCOL, 1, "type OID 0");
  if (nsp_len == 0) {
    nsp = "pg_catalog";
    nsp_len = strlen(nsp);
  }
  char *full = malloc(nsp_len + 1 + name_len + 1);
  if (!full) return fail(r, err, OD_ENOMEM, 0, "no memory for type %u", oid);
  memcpy(full, nsp, nsp_len);
  full[nsp_len] = '.';
  memcpy(full + nsp_len + 1, name, name_len + 1);
  void *replaced;
  if (!map_put(&d->types, oid, full, &replaced)) {
    free(full);
    return fail(r, err, OD_ENOMEM, 0, "no memory for the type cache");
  }
  free(replaced);
  return OD_OK;
}

/* ---- Row changes (the hot path: no allocation once the scratch space is warm) ---- */

#define SCRATCH_KEEP ((size_t)1 << 20) /* scratch grown past this is released after the message */

/* Scratch for one message: a 't' or 'b' column of L bytes takes 5+L bytes on the wire and at
 * most L+1 in scratch, so the message length bounds the scratch a message needs. */
static int reserve(od_pgoutput *d, const reader *r, size_t natts, od_error *err) {
  if (!r->mut && r->len > d->scratch_cap) {
    size_t cap = d->scratch_cap ? d->scratch_cap : 256;
    while (cap < r->len) cap *= 2;
    char *nb = realloc(d->scratch, cap);
    if (!nb) return fail(r, err, OD_ENOMEM, 0, "no memory for %zu bytes of scratch", cap);
    d->scratch = nb;
    d->scratch_cap = cap;
  }
  if (natts > d->vals_cap) {
    for (int i = 0; i < 2; i++) {
      od_value *nv = realloc(d->vals[i], natts * sizeof(od_value));
      if (!nv) return fail(r, err, OD_ENOMEM, 0, "no memory for %zu column values", natts);
      d->vals[i] = nv;
    }
    d->vals_cap = natts;
  }
  return OD_OK;
}

static const od_relation *lookup_rel(od_pgoutput *d, reader *r, od_error *err, int *rc) {
  uint32_t oid = get32(r, "relation OID");
  if (r->short_field) {
    *rc = truncated(r, err);
    return NULL;
  }
  const od_relation *rel = map_get(&d->rels, oid);
  if (!rel) {
    *rc = fail(r, err, OD_EPROTOCOL, r->pos - 4,
               "change for unknown relation OID %u (no Relation message received for it)", oid);
    return NULL;
  }
  if ((*rc = reserve(d, r, rel->ncolumns, err)) != 0) return NULL;
  r->rel = rel;
  return rel;
}

static int read_tuple(od_pgoutput *d, reader *r, od_tuple *t, od_value *vals, size_t *used,
                      od_error *err) {
  size_t at = r->pos;
  uint16_t natts = get16(r, "tuple column count");
  if (r->short_field) return truncated(r, err);
  if (natts != r->rel->ncolumns)
    return fail(r, err, OD_EPROTOCOL, at, "tuple has %u columns, the relation has %u", natts,
                r->rel->ncolumns);
  for (uint16_t i = 0; i < natts; i++) {
    od_value *v = &vals[i];
    at = r->pos;
    uint8_t kind = get8(r, "column kind");
    v->kind = kind;
    v->data = NULL;
    v->len = 0;
    if (kind == 't' || kind == 'b') {
      uint32_t len = get32(r, "column length");
      const char *src = getbytes(r, len, "column data");
      if (!src) break;
      v->len = len;
      if (kind == 'b') {
        v->data = src;
      } else if (r->mut) {
        /* In place: one byte back over the last byte of the length just read, so the byte after
         * the value (the next column's kind, or what follows the tuple) stays intact. */
        char *dst = (char *)r->mut + (src - (const char *)r->p) - 1;
        memmove(dst, src, len);
        dst[len] = '\0';
        v->data = dst;
      } else {
        char *dst = d->scratch + *used;
        memcpy(dst, src, len);
        dst[len] = '\0';
        *used += (size_t)len + 1;
        v->data = dst;
      }
    } else if (kind != 'n' && kind != 'u') {
      if (r->short_field) break;
      return fail(r, err, OD_EPROTOCOL, at, "unknown kind 0x%02x for column %s", kind,
                  r->rel->columns[i].name);
    }
  }
  if (r->short_field) return truncated(r, err);
  t->ncolumns = natts;
  t->values = vals;
  return OD_OK;
}

static int emit(od_pgoutput *d, const od_change_handler *h, od_change *c, od_error *err) {
  c->index = d->next_index++;
  return h->change ? h->change(h->ctx, &d->txn, c, err) : OD_OK;
}

static int on_row(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  int rc = 0;
  od_change c = {.op = (uint8_t)r->type};
  if (!(c.rel = lookup_rel(d, r, err, &rc))) return rc;
  if ((rc = need_txn(d, r, err))) return rc;
  size_t used = 0;
  size_t at = r->pos;
  uint8_t sub = get8(r, "tuple marker");
  if (r->short_field) return truncated(r, err);
  if ((sub == 'K' || sub == 'O') && r->type != 'I') {
    c.old_kind = (char)sub;
    if ((rc = read_tuple(d, r, &c.oldtup, d->vals[1], &used, err))) return rc;
    if (r->type == 'U') {
      at = r->pos;
      sub = get8(r, "new tuple marker");
      if (r->short_field) return truncated(r, err);
    }
  }
  if (r->type == 'D') {
    if (!c.old_kind)
      return fail(r, err, OD_EPROTOCOL, at, "expected old tuple marker 'K' or 'O', got 0x%02x",
                  sub);
  } else {
    if (sub != 'N')
      return fail(r, err, OD_EPROTOCOL, at, "expected new tuple marker 'N', got 0x%02x", sub);
    if ((rc = read_tuple(d, r, &c.newtup, d->vals[0], &used, err))) return rc;
  }
  if ((rc = finish(r, err))) return rc;
  return emit(d, h, &c, err);
}

static int on_truncate(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  int rc = need_txn(d, r, err);
  if (rc) return rc;
  uint32_t n = get32(r, "relation count");
  uint8_t flags = get8(r, "flags");
  size_t first = r->pos;
  /* Check every OID first so that a bad message emits nothing. */
  for (uint32_t i = 0; i < n && !r->short_field; i++) {
    uint32_t oid = get32(r, "relation OID");
    if (!r->short_field && !map_get(&d->rels, oid))
      return fail(r, err, OD_EPROTOCOL, r->pos - 4, "truncate of unknown relation OID %u", oid);
  }
  if ((rc = finish(r, err))) return rc;
  r->pos = first;
  for (uint32_t i = 0; i < n; i++) {
    od_change c = {.op = OD_OP_TRUNCATE, .truncate_flags = flags};
    c.rel = map_get(&d->rels, get32(r, "relation OID"));
    if ((rc = emit(d, h, &c, err))) return rc;
  }
  return OD_OK;
}

static int on_message(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  size_t plen = 0;
  uint8_t flags = get8(r, "flags");
  uint64_t lsn = get64(r, "message LSN");
  const char *prefix = getstr(r, &plen, "prefix");
  uint32_t clen = get32(r, "content length");
  const char *content = getbytes(r, clen, "content");
  int rc = finish(r, err);
  if (rc) return rc;
  od_value vals[2] = {
      {.data = prefix, .len = (uint32_t)plen, .kind = OD_VALUE_TEXT},
      {.data = content, .len = clen, .kind = OD_VALUE_BINARY},
  };
  od_change c = {.op = OD_OP_MESSAGE, .newtup = {.ncolumns = 2, .values = vals}};
  if (flags & MSG_TRANSACTIONAL) {
    if ((rc = need_txn(d, r, err))) return rc;
    return emit(d, h, &c, err);
  }
  od_txn_info solo = {.xid = 0, .start = od_pg_pos(lsn), .end = od_pg_pos(lsn)};
  return h->change ? h->change(h->ctx, &solo, &c, err) : OD_OK;
}

/* Protocol v2 streaming of in-progress transactions: decoded, then refused. With stream_in_progress
 * these messages never reach the decoder (pg_stream.c routes them and replays v1 messages). */
static int on_stream(reader *r, od_error *err) {
  uint32_t xid = 0;
  if (r->type != 'E') xid = get32(r, "xid");
  if (r->type == 'S') (void)get8(r, "first segment flag");
  if (r->type == 'c') {
    (void)get8(r, "flags");
    (void)get64(r, "commit LSN");
    (void)get64(r, "end LSN");
    (void)get64(r, "commit timestamp");
  }
  if (r->type == 'A') (void)get32(r, "subtransaction xid"); /* v4 may append LSN and time */
  if (r->short_field) return truncated(r, err);
  return fail(r, err, OD_EUNSUPPORTED, 0,
              "streaming of in-progress transactions (xid %u) is not supported; start "
              "replication with proto_version '1' and without streaming",
              xid);
}

static int decode(od_pgoutput *d, reader *r, const od_change_handler *h, od_error *err) {
  if (r->len == 0) {
    r->type = 0;
    return OD_FAIL(err, OD_EPROTOCOL, "pgoutput: empty message (no type byte) at byte offset 0");
  }
  r->type = (char)r->p[0];
  r->pos = 1;
  switch (r->type) {
  case 'B': return on_begin(d, r, h, err);
  case 'C': return on_commit(d, r, h, err);
  case 'O': return on_origin(d, r, err);
  case 'R': return on_relation(d, r, h, err);
  case 'Y': return on_type(d, r, err);
  case 'I':
  case 'U':
  case 'D': return on_row(d, r, h, err);
  case 'T': return on_truncate(d, r, h, err);
  case 'M': return on_message(d, r, h, err);
  case 'S':
  case 'E':
  case 'c':
  case 'A': return on_stream(r, err);
  }
  return fail(r, err, OD_EPROTOCOL, 0, "unknown message type");
}

int od_pgoutput_decode(od_pgoutput *d, const char *buf, size_t len, const od_change_handler *h,
                       od_error *err) {
  reader r = {.p = (const unsigned char *)buf, .len = len};
  int rc = decode(d, &r, h, err);
  if (d->scratch_cap > SCRATCH_KEEP) { /* a large message passed: do not hold its size */
    free(d->scratch);
    d->scratch = NULL;
    d->scratch_cap = 0;
  }
  return rc;
}

int od_pgoutput_decode_inplace(od_pgoutput *d, char *buf, size_t len, const od_change_handler *h,
                               od_error *err) {
  reader r = {.p = (const unsigned char *)buf, .len = len, .mut = (unsigned char *)buf};
  return decode(d, &r, h, err);
}
