/* sinks/postgres_bulk.c — set-based apply of the PostgreSQL sink.
 *
 * Owns: one pgs_bulk per keyed relation version (hung on its pg_rel): the cast type of every
 * target column (read once from the target's catalog), two prepared statements (a set-based
 * DELETE and a set-based upsert, both fed with one text[] array parameter per column), and a
 * buffer of the "simple" changes of that relation not yet sent:
 *   insert/read                        -> upsert of the full row
 *   update with a full new row whose key did not change (no old tuple, or an old tuple with
 *   byte-equal key values)             -> upsert of the full row
 *   delete (old key or old row)        -> delete of the key
 * The buffer merges by key (the key values' bytes): each key keeps only its last operation,
 * which is a full image (row present with these values, or row absent), so the order among keys
 * does not matter. A flush sends at most two statements into the open pipeline: the DELETE of
 * every deleted key, then the upsert of every remaining row:
 *   DELETE FROM t WHERE (k..) IN (SELECT u.c1, .. FROM ROWS FROM (unnest($1::T1[]), ..) AS u(c1, ..))
 *   INSERT INTO t (a..) SELECT u.c1, .. FROM ROWS FROM (unnest($1::T1[]), ..) AS u(c1, ..)
 *     ON CONFLICT (k..) DO UPDATE SET a = EXCLUDED.a, ..   (DO NOTHING when every column is key)
 * T is the target column's type without typmod (format_type(atttypid, -1): "bpchar", "\"bit\""),
 * whose input function parses each element exactly as for a bound parameter of the per-row path;
 * the INSERT's assignment coercion then applies the typmod the same way (array-typed columns go
 * as text[] and are cast, since T[][] is T[]; so do composite columns and domains over a composite,
 * typcategory 'C', since unnest() in FROM would spread a composite over several columns). T is
 * the target's own type, found by name in its catalog: a source type OID means nothing there.
 * Deletes go first: a key deleted and another spelling of an equal key upserted (numeric 1.0 vs
 * 1.00) can only mean the upsert is the later, live row.
 * New rows (a key whose final image comes from an insert in this buffer: op 'I') go last, as a
 * plain INSERT (no ON CONFLICT: no arbiter pre-check, no speculative insertion) between SAVEPOINT
 * odsync_new and its RELEASE, then a sync: if it met a key already there (23505), the run is
 * rolled back to the savepoint and sent again, same parameters, as the upsert; the next
 * PGS_CALM_FLUSHES flushes of that table then upsert their new rows at once.
 * A run of at least copy_min_rows new rows (sink option, default 512; 0 never) goes by COPY ... FROM
 * STDIN in text format instead of the plain INSERT, in the same savepoint: the pipeline is finished
 * first (COPY runs outside pipeline mode), a 23505 takes the same fallback, a target that refuses
 * COPY itself (a view: 42809, a feature: 0A...) gets a WARN and the plain INSERT from then on, and
 * any other error fails the flush as the INSERT's would; a target with an INSERT rule (COPY does
 * not fire rules) never gets COPY. COPY costs the server about half of
 * INSERT ... unnest per row (no arrays to build and unnest), for two more round trips.
 * A run of fewer than PGS_OPTIMISTIC_MIN_ROWS new rows goes with the upsert at once: its own sync
 * would cost a round trip (at the head, with a few rows per commit, that round trip is most of
 * the latency: 2-3 round trips per commit instead of 1), while the upsert's extra cost (the
 * arbiter pre-check, a speculative insertion) for a few rows is far smaller than one round trip.
 * Parameters of the target types bool, int2/4/8, text and varchar go as binary arrays (encoded
 * here from the text the source sent; a value not in the type's output form sends that parameter
 * as text instead); the others as text[] literals.
 * A row of more than PGS_BULK_ROW_MAX value bytes is not buffered (per-row path: its values are
 * sent once, straight from the change), so a transaction of large values holds about one value in
 * the sink at a time.
 * When it flushes (the callers): before any other change of the same relation version takes the
 * per-row path (postgres_apply.c), when the buffer passes PGS_BULK_MAX_ROWS rows or
 * PGS_BULK_MAX_BYTES, before any DDL (a relation version not seen yet), and for every relation at
 * commit before the checkpoint (postgres.c). Different target tables are independent (targets
 * have no foreign keys), so flushing per relation keeps the result of the source's order.
 * Memory: the arena, entry array, hash slots and the per-column literal buffers only grow; once
 * warm, buffering a row copies its bytes and allocates nothing. Change values are copied into the
 * arena (they are borrowed only for one apply() call).
 * Never touches: transactions (but for its own savepoint odsync_new), the checkpoint, the per-row
 * statements, DDL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sinks/postgres_internal.h"

#define PGS_BULK_MAX_ROWS 20000u
#define PGS_BULK_MAX_BYTES ((size_t)16 << 20)
#define PGS_BULK_ROW_MAX ((size_t)1 << 20) /* a row with more value bytes takes the per-row path */
#define NULL_LEN UINT32_MAX
#define PGS_CALM_FLUSHES 16u /* after a 23505 fallback: flushes that upsert new rows at once */
#define PGS_OPTIMISTIC_MIN_ROWS 64u /* fewer new rows in a flush: upserted, no sync of their own */
#define PGS_COPY_PIECE (256u << 10) /* COPY rows handed to libpq in pieces of about this size */

typedef struct bent {
  uint32_t off, klen, len, hash; /* in the arena: key values, then (upsert) every column */
  uint8_t op;                    /* 'I' new row, 'U' upsert, 'D' delete, 0 superseded */
} bent;

struct pgs_bulk {
  bool off;               /* set-based apply unusable for this version: per-row path */
  char **casts;           /* per column: the target type (owned) */
  bool *arr;              /* per column: an array or composite type (sent as text[], then cast) */
  char *delim;            /* per column: the array element delimiter (box: ';') */
  uint32_t *oid;          /* per column: the target type's OID, when its array goes binary, else 0 */
  int *plen, *pfmt;       /* per parameter of the statement being sent: length, format */
  bool *failed;           /* per parameter: a value did not encode in binary: sent as text */
  pgs_stmt del, ins, plain; /* names only ("" until prepared); plain: INSERT without ON CONFLICT */
  uint32_t calm;          /* flushes left that upsert 'I' rows (set after a 23505 fallback) */
  bool nocopy;            /* the target refused COPY (a view, ...) or has an INSERT rule: plain INSERT */
  od_sqlbuf copy;         /* COPY text-format rows being handed to libpq */
  char *copy_sql;         /* "COPY t (a, b) FROM STDIN", built at the first COPY (owned) */
  char *arena;
  size_t alen, acap;
  bent *ents;
  uint32_t nent, ecap, nup, nins, ndel;
  int32_t *slots;         /* open addressing, -1 empty; only live entries */
  uint32_t nslots;
  od_sqlbuf *lits;          /* per column: the text[] literal being built */
  int nlits;
  od_sqlbuf sql;            /* statement text while preparing (s->sql may hold the caller's SQL) */
};

static int oom(pgs_sink *s, const pg_rel *r, od_error *err) {
  return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: table %s: out of memory", s->where, r->target);
}

void pgs_bulk_free(pgs_bulk *b) {
  if (!b) return;
  if (b->casts)
    for (int i = 0; i < b->nlits; i++) free(b->casts[i]);
  free(b->casts);
  free(b->arr);
  free(b->delim);
  free(b->oid);
  free(b->plen);
  free(b->pfmt);
  free(b->failed);
  for (int i = 0; b->lits && i < b->nlits; i++) od_sqlbuf_free(&b->lits[i]);
  free(b->lits);
  free(b->arena);
  free(b->ents);
  free(b->slots);
  od_sqlbuf_free(&b->sql);
  od_sqlbuf_free(&b->copy);
  free(b->copy_sql);
  free(b);
}

/* ---- state: the target's column types ------------------------------------------------------ */

/* Built-in types whose binary form odsync writes itself from the text the source sent (the
 * target's own OIDs: a domain or a user type is never one of these): the array parameter goes in
 * binary, so the server runs no array_in and no element input function (bench/pg_insert_shapes.sh). */
enum { OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25, OID_VARCHAR = 1043 };
static uint32_t bin_type(uint32_t oid) {
  switch (oid) {
    case OID_BOOL: case OID_INT8: case OID_INT2: case OID_INT4: case OID_TEXT: case OID_VARCHAR: return oid;
    default: return 0;
  }
}

int pgs_bulk_ready(pgs_sink *s, pg_rel *r, od_error *err) {
  if (!s->bulk_on || !r->keyed || r->bulk) return OD_OK;
  int n = r->rel->ncolumns;
  pgs_bulk *b = calloc(1, sizeof *b);
  if (!b) return oom(s, r, err);
  b->nlits = n;
  b->casts = calloc((size_t)n, sizeof *b->casts);
  b->lits = calloc((size_t)n, sizeof *b->lits);
  b->arr = calloc((size_t)n, sizeof *b->arr);
  b->delim = calloc((size_t)n, sizeof *b->delim);
  b->oid = calloc((size_t)n, sizeof *b->oid);
  b->plen = calloc((size_t)n, sizeof *b->plen);
  b->pfmt = calloc((size_t)n, sizeof *b->pfmt);
  b->failed = calloc((size_t)n, sizeof *b->failed);
  if (!b->casts || !b->lits || !b->arr || !b->delim || !b->oid || !b->plen || !b->pfmt || !b->failed) {
    pgs_bulk_free(b);
    return oom(s, r, err);
  }
  r->bulk = b;
  for (int k = 0; k < r->nkey; k++)
    if (r->text_cmp[PGS_COL(r->key_plan[k])]) b->off = true; /* no '=' on a key: per-row */
  const char *p[] = {r->qtarget};
  PGresult *res = pgs_exec(s, r->target, "reading the column types", 
                           "SELECT a.attname, pg_catalog.format_type(a.atttypid, -1), t.typcategory IN ('A', 'C'), t.typdelim, a.atttypid, "
                           "EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w WHERE w.ev_class = $1::regclass AND w.ev_type = '3') "
                           "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
                           "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                           1, p, err);
  if (!res) return err->code;
  /* COPY runs a table's triggers but not its rules: a target with an INSERT rule gets every new
   * row by INSERT, so that the rule fires for all of them, whatever the size of the run. */
  if (PQntuples(res) && PQgetvalue(res, 0, 5)[0] == 't' && s->copy_min_rows && !b->nocopy) {
    b->nocopy = true;
    od_info("postgres sink %s: table %s has an INSERT rule, which COPY would not fire: its new rows go as INSERT",
            s->where, r->target);
  }
  for (int t = 0; t < PQntuples(res); t++) {
    const char *name = PQgetvalue(res, t, 0);
    for (int i = 0; i < n; i++) {
      if (b->casts[i] || strcmp(r->rel->columns[i].name, name) != 0) continue;
      b->arr[i] = PQgetvalue(res, t, 2)[0] == 't';
      b->delim[i] = b->arr[i] ? ',' : PQgetvalue(res, t, 3)[0];
      b->oid[i] = bin_type((uint32_t)strtoul(PQgetvalue(res, t, 4), NULL, 10));
      if (!b->delim[i] || b->delim[i] == '"' || b->delim[i] == '\\') b->off = true;
      if (!(b->casts[i] = strdup(PQgetvalue(res, t, 1)))) {
        PQclear(res);
        return oom(s, r, err);
      }
      break;
    }
  }
  PQclear(res);
  for (int i = 0; i < n; i++)
    if (!b->casts[i]) b->off = true; /* should not happen: the per-row path reports it */
  if (b->off) od_debug("postgres sink %s: table %s: set-based apply off for this version", s->where, r->target);
  return OD_OK;
}

/* ---- buffering ----------------------------------------------------------------------------- */

static bool arena_reserve(pgs_bulk *b, size_t extra) {
  if (b->alen + extra <= b->acap) return true;
  size_t cap = b->acap ? b->acap : 65536;
  while (cap < b->alen + extra) cap *= 2;
  if (cap > UINT32_MAX) return false;
  char *p = realloc(b->arena, cap);
  if (!p) return false;
  b->arena = p;
  b->acap = cap;
  return true;
}

static bool put_value(pgs_bulk *b, const od_value *v) {
  uint32_t len = v->kind == OD_VALUE_NULL ? NULL_LEN : v->len;
  size_t need = sizeof len + (len == NULL_LEN ? 0 : len);
  if (!arena_reserve(b, need)) return false;
  memcpy(b->arena + b->alen, &len, sizeof len);
  if (len != NULL_LEN && len) memcpy(b->arena + b->alen + sizeof len, v->data, len);
  b->alen += need;
  return true;
}

static bool sendable(const od_tuple *t, int n) {
  if (t->ncolumns != n || !t->values) return false;
  for (int i = 0; i < n; i++)
    if (t->values[i].kind != OD_VALUE_TEXT && t->values[i].kind != OD_VALUE_NULL) return false;
  return true;
}

static bool same_key(const pg_rel *r, const od_tuple *a, const od_tuple *b) {
  for (int k = 0; k < r->nkey; k++) {
    int col = PGS_COL(r->key_plan[k]);
    const od_value *x = &a->values[col], *y = &b->values[col];
    if (x->kind != y->kind || x->len != y->len || (x->len && memcmp(x->data, y->data, x->len) != 0)) return false;
  }
  return true;
}

static uint32_t hash_bytes(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
  return h;
}

static bool slots_grow(pgs_bulk *b) {
  uint32_t n = b->nslots ? b->nslots * 2 : 1024;
  int32_t *sl = realloc(b->slots, (size_t)n * sizeof *sl);
  if (!sl) return false;
  b->slots = sl;
  b->nslots = n;
  memset(sl, 0xff, (size_t)n * sizeof *sl);
  for (uint32_t e = 0; e < b->nent; e++) {
    if (!b->ents[e].op) continue;
    uint32_t h = b->ents[e].hash & (n - 1);
    while (sl[h] >= 0) h = (h + 1) & (n - 1);
    sl[h] = (int32_t)e;
  }
  return true;
}

static void reset(pgs_bulk *b) {
  b->alen = 0;
  b->nent = b->nup = b->nins = b->ndel = 0;
  if (b->slots) memset(b->slots, 0xff, (size_t)b->nslots * sizeof *b->slots);
}

int pgs_bulk_add(pgs_sink *s, pg_rel *r, const od_change *c, bool *taken, od_error *err) {
  *taken = false;
  pgs_bulk *b = r->bulk;
  if (!b || b->off) return OD_OK;
  int n = r->rel->ncolumns;
  const od_tuple *kt; /* the tuple the key comes from */
  uint8_t op;
  switch (c->op) {
    case OD_OP_INSERT:
      if (!sendable(&c->newtup, n)) return OD_OK;
      op = 'I', kt = &c->newtup; /* a new row: no row with this key on the target (optimistic) */
      break;
    case OD_OP_READ: /* a snapshot row may meet one already there: upsert */
      if (!sendable(&c->newtup, n)) return OD_OK;
      op = 'U', kt = &c->newtup;
      break;
    case OD_OP_UPDATE:
      if (!sendable(&c->newtup, n)) return OD_OK; /* UNCHANGED values, or malformed: per-row */
      if (c->old_kind) {
        if (c->old_kind != 'K' && c->old_kind != 'O') return OD_OK;
        if (c->oldtup.ncolumns != n || !c->oldtup.values || !same_key(r, &c->oldtup, &c->newtup)) return OD_OK;
      }
      op = 'U', kt = &c->newtup;
      break;
    case OD_OP_DELETE:
      if ((c->old_kind != 'K' && c->old_kind != 'O') || c->oldtup.ncolumns != n || !c->oldtup.values) return OD_OK;
      for (int k = 0; k < r->nkey; k++) {
        uint8_t kind = c->oldtup.values[PGS_COL(r->key_plan[k])].kind;
        if (kind != OD_VALUE_TEXT && kind != OD_VALUE_NULL) return OD_OK;
      }
      op = 'D', kt = &c->oldtup;
      break;
    default:
      return OD_OK;
  }
  /* A large row goes per row: buffered, it would be held three times more (the arena copy, the
   * escaped array literal twice its size, libpq's message), so memory would follow the values'
   * size several times over instead of once. */
  if (op != 'D') {
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
      if (c->newtup.values[i].kind == OD_VALUE_TEXT) bytes += c->newtup.values[i].len;
    if (bytes > PGS_BULK_ROW_MAX) return OD_OK;
  }
  if (b->nent == b->ecap) {
    uint32_t cap = b->ecap ? b->ecap * 2 : 1024;
    bent *e = realloc(b->ents, (size_t)cap * sizeof *e);
    if (!e) return oom(s, r, err);
    b->ents = e;
    b->ecap = cap;
  }
  if ((b->nent + 1) * 2 > b->nslots && !slots_grow(b)) return oom(s, r, err);
  size_t start = b->alen;
  for (int k = 0; k < r->nkey; k++)
    if (!put_value(b, &kt->values[PGS_COL(r->key_plan[k])])) return oom(s, r, err);
  uint32_t klen = (uint32_t)(b->alen - start), h = hash_bytes(b->arena + start, klen);
  uint32_t slot = h & (b->nslots - 1);
  for (int32_t e; (e = b->slots[slot]) >= 0; slot = (slot + 1) & (b->nslots - 1)) {
    bent *o = &b->ents[e];
    if (o->hash != h || o->klen != klen || memcmp(b->arena + o->off, b->arena + start, klen) != 0) continue;
    /* A row inserted in this buffer stays new through its updates; an insert after a delete
     * (or after an update: a row that was there) is an upsert. */
    if (o->op == 'I' && c->op == OD_OP_UPDATE) op = 'I';
    else if (op == 'I') op = 'U';
    if (o->op == 'U') b->nup--;
    else if (o->op == 'I') b->nins--;
    else b->ndel--;
    o->op = 0; /* superseded: this change is the key's final image */
    break;
  }
  if (op != 'D')
    for (int i = 0; i < n; i++)
      if (!put_value(b, &c->newtup.values[i])) return oom(s, r, err);
  b->slots[slot] = (int32_t)b->nent;
  b->ents[b->nent++] = (bent){.off = (uint32_t)start, .klen = klen, .len = (uint32_t)(b->alen - start),
                              .hash = h, .op = op};
  if (op == 'U') b->nup++;
  else if (op == 'I') b->nins++;
  else b->ndel++;
  *taken = true;
  if (b->nent >= PGS_BULK_MAX_ROWS || b->alen >= PGS_BULK_MAX_BYTES) return pgs_bulk_flush(s, r, err);
  return OD_OK;
}

/* ---- flushing ------------------------------------------------------------------------------ */

static bool lit_reserve(od_sqlbuf *l, size_t extra) {
  if (l->len + extra + 1 <= l->cap) return true;
  size_t cap = l->cap ? l->cap : 4096;
  while (cap < l->len + extra + 1) cap *= 2;
  char *p = realloc(l->p, cap);
  if (!p) return false;
  l->p = p;
  l->cap = cap;
  return true;
}

/* Append one array element: NULL unquoted, anything else double-quoted with \ and " escaped (so
 * the string "NULL" stays a string). Reads the value at *pos and advances it. */
static bool lit_elem(od_sqlbuf *l, char delim, const char *arena, size_t *pos) {
  uint32_t len;
  memcpy(&len, arena + *pos, sizeof len);
  *pos += sizeof len;
  if (!lit_reserve(l, len == NULL_LEN ? 5 : 2 * (size_t)len + 3)) return false;
  char *o = l->p + l->len;
  if (l->len > 1) *o++ = delim;
  if (len == NULL_LEN) {
    memcpy(o, "NULL", 4);
    o += 4;
  } else {
    const char *v = arena + *pos;
    *o++ = '"';
    for (uint32_t i = 0; i < len; i++) {
      if (v[i] == '"' || v[i] == '\\') *o++ = '\\';
      *o++ = v[i];
    }
    *o++ = '"';
    *pos += len;
  }
  l->len = (size_t)(o - l->p);
  return true;
}

/* Parameter i+1 carries column col(i). A scalar type's array is parsed by the type's own input
 * function ($n::T[]), exactly like a bound parameter (a cast from text may differ: text::regclass
 * rejects '-'); an array-typed column comes as text[] and is cast element-wise (T[][] is T[]). */
static int col_of(const pg_rel *r, bool keys, int i) { return keys ? (int)PGS_COL(r->key_plan[i]) : i; }

static void add_select(od_sqlbuf *q, const pg_rel *r, bool keys, int n) {
  for (int i = 0; i < n; i++) {
    int c = col_of(r, keys, i);
    od_sqlbuf_addf(q, "%su.c%d", i ? ", " : "", i + 1);
    if (r->bulk->arr[c]) od_sqlbuf_addf(q, "::%s", r->bulk->casts[c]);
  }
  od_sqlbuf_add(q, " FROM ROWS FROM (");
  for (int i = 0; i < n; i++) {
    int c = col_of(r, keys, i);
    od_sqlbuf_addf(q, "%sunnest($%d::%s[])", i ? ", " : "", i + 1, r->bulk->arr[c] ? "text" : r->bulk->casts[c]);
  }
  od_sqlbuf_add(q, ") AS u(");
  for (int i = 0; i < n; i++) od_sqlbuf_addf(q, "%sc%d", i ? ", " : "", i + 1);
  od_sqlbuf_add(q, ")");
}

/* pgs_send_prepare sends s->sql: lend it the text built in r's own buffer, keep the caller's. */
static int send_prepare(pgs_sink *s, pg_rel *r, const char *what, const char *name, od_error *err) {
  od_sqlbuf saved = s->sql;
  s->sql = r->bulk->sql;
  int rc = pgs_send_prepare(s, r, what, name, err);
  r->bulk->sql = s->sql;
  s->sql = saved;
  return rc;
}

static int prepare_delete(pgs_sink *s, pg_rel *r, od_error *err) {
  od_sqlbuf *q = &r->bulk->sql;
  od_sqlbuf_reset(q);
  od_sqlbuf_add(q, "DELETE FROM ");
  od_sqlbuf_add(q, r->qtarget);
  od_sqlbuf_add(q, " WHERE (");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(q, ", ");
    od_sqlbuf_ident(q, r->rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(q, ") IN (SELECT ");
  add_select(q, r, true, r->nkey);
  od_sqlbuf_add(q, ")");
  if (q->oom) return oom(s, r, err);
  snprintf(r->bulk->del.name, sizeof r->bulk->del.name, "odsync_%u", ++s->stmt_seq);
  int rc = send_prepare(s, r, "preparing the set-based delete", r->bulk->del.name, err);
  if (rc) r->bulk->del.name[0] = '\0';
  else s->stats.prepared++;
  return rc;
}

/* plain: INSERT without ON CONFLICT (the optimistic path for new rows), else the upsert. */
static int prepare_insert(pgs_sink *s, pg_rel *r, bool plain, od_error *err) {
  const od_relation *rel = r->rel;
  int n = rel->ncolumns;
  od_sqlbuf *q = &r->bulk->sql;
  od_sqlbuf_reset(q);
  od_sqlbuf_add(q, "INSERT INTO ");
  od_sqlbuf_add(q, r->qtarget);
  /* The alias keeps EXCLUDED unambiguous when the table itself is called "excluded" (42P09). */
  od_sqlbuf_add(q, " AS odsync_target");
  pgs_add_columns(q, r);
  od_sqlbuf_add(q, " SELECT ");
  add_select(q, r, false, n);
  if (plain) {
    pgs_stmt *st = &r->bulk->plain;
    if (q->oom) return oom(s, r, err);
    snprintf(st->name, sizeof st->name, "odsync_%u", ++s->stmt_seq);
    int rc = send_prepare(s, r, "preparing the set-based insert", st->name, err);
    if (rc) st->name[0] = '\0';
    else s->stats.prepared++;
    return rc;
  }
  od_sqlbuf_add(q, " ON CONFLICT (");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(q, ", ");
    od_sqlbuf_ident(q, rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(q, ") DO ");
  if (r->nkey == n) {
    od_sqlbuf_add(q, "NOTHING");
  } else {
    od_sqlbuf_add(q, "UPDATE SET ");
    bool first = true;
    for (int i = 0; i < n; i++) {
      if (rel->columns[i].key) continue;
      if (!first) od_sqlbuf_add(q, ", ");
      first = false;
      od_sqlbuf_ident(q, rel->columns[i].name);
      od_sqlbuf_add(q, " = EXCLUDED.");
      od_sqlbuf_ident(q, rel->columns[i].name);
    }
  }
  if (q->oom) return oom(s, r, err);
  snprintf(r->bulk->ins.name, sizeof r->bulk->ins.name, "odsync_%u", ++s->stmt_seq);
  int rc = send_prepare(s, r, "preparing the set-based upsert", r->bulk->ins.name, err);
  if (rc) r->bulk->ins.name[0] = '\0';
  else s->stats.prepared++;
  return rc;
}

/* ---- parameters: one array per column, binary (bin_type) or a text literal ------------------- */

#define BIN_HDR 20 /* ndim, has-null flag, element type, length, lower bound */

static void put_be(char *o, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) o[i] = (char)(v & 0xff);
}

/* Append one element of a binary array of `oid`; false (nothing appended) when the text is not
 * what the type's output function writes (then the whole parameter goes as text). */
static bool bin_elem(od_sqlbuf *l, uint32_t oid, const char *v, uint32_t len) {
  if (!lit_reserve(l, (size_t)len + 12)) return false;
  char *o = l->p + l->len;
  int n;
  if (oid == OID_TEXT || oid == OID_VARCHAR) {
    put_be(o, len, 4);
    memcpy(o + 4, v, len);
    l->len += 4 + (size_t)len;
    return true;
  }
  if (oid == OID_BOOL) {
    if (len != 1 || (v[0] != 't' && v[0] != 'f')) return false;
    put_be(o, 1, 4);
    o[4] = v[0] == 't';
    l->len += 5;
    return true;
  }
  /* integers: an optional '-', then 1..19 digits, in range */
  n = oid == OID_INT8 ? 8 : oid == OID_INT4 ? 4 : 2;
  uint32_t i = v[0] == '-';
  if (len <= i || len - i > 19) return false;
  uint64_t m = 0;
  for (uint32_t k = i; k < len; k++) {
    if (v[k] < '0' || v[k] > '9') return false;
    m = m * 10 + (uint64_t)(v[k] - '0');
  }
  uint64_t lim = n == 8 ? (uint64_t)INT64_MAX : n == 4 ? (uint64_t)INT32_MAX : (uint64_t)INT16_MAX;
  if (m > lim + (i ? 1 : 0)) return false;
  put_be(o, (uint32_t)n, 4);
  put_be(o + 4, i ? (uint64_t)0 - m : m, n);
  l->len += 4 + (size_t)n;
  return true;
}

static void param_open(pgs_bulk *b, int p, int col, bool text) {
  od_sqlbuf *l = &b->lits[p];
  l->len = 0;
  b->pfmt[p] = !text && b->oid[col];
  if (!lit_reserve(l, BIN_HDR + 1)) return; /* the builder reports it */
  if (b->pfmt[p]) {
    memset(l->p, 0, BIN_HDR);
    l->len = BIN_HDR;
  } else {
    l->p[l->len++] = '{';
  }
}

/* The value at *pos (advanced) into parameter p. */
static bool param_elem(pgs_bulk *b, int p, int col, const char *arena, size_t *pos) {
  od_sqlbuf *l = &b->lits[p];
  if (!b->pfmt[p]) return lit_elem(l, b->delim[col], arena, pos);
  uint32_t len;
  memcpy(&len, arena + *pos, sizeof len);
  *pos += sizeof len;
  if (len == NULL_LEN) {
    if (!lit_reserve(l, 4)) return false;
    put_be(l->p + l->len, UINT32_MAX, 4);
    l->len += 4;
    l->p[7] = 1; /* has nulls */
    return true;
  }
  if (!b->failed[p] && !bin_elem(l, b->oid[col], arena + *pos, len)) b->failed[p] = true;
  *pos += len;
  return l->p != NULL;
}

static void skip_value(const char *arena, size_t *pos) {
  uint32_t len;
  memcpy(&len, arena + *pos, sizeof len);
  *pos += sizeof len + (len == NULL_LEN ? 0 : len);
}

/* Build the parameters of one statement: the key columns of the 'D' entries (keys), or every
 * column of the entries whose op is `op` (or 'I' too when `with_new`). A binary parameter with a
 * value that does not encode is built again as text (a second pass over those parameters only). */
static int params_build(pgs_sink *s, pg_rel *r, bool keys, uint8_t op, bool with_new, od_error *err) {
  pgs_bulk *b = r->bulk;
  int np = keys ? r->nkey : r->rel->ncolumns;
  uint32_t count = 0;
  for (int pass = 0; pass < 2; pass++) {
    bool any = false;
    for (int p = 0; p < np; p++) {
      if (pass == 0) b->failed[p] = false;
      if (pass == 0 || b->failed[p]) param_open(b, p, col_of(r, keys, p), pass == 1), any = true;
    }
    if (!any) break;
    count = 0;
    for (uint32_t e = 0; e < b->nent; e++) {
      uint8_t o = b->ents[e].op;
      if (o != op && !(with_new && o == 'I')) continue;
      count++;
      size_t pos = b->ents[e].off + (keys ? 0 : b->ents[e].klen);
      for (int p = 0; p < np; p++) {
        if (pass == 1 && !b->failed[p]) skip_value(b->arena, &pos);
        else if (!param_elem(b, p, col_of(r, keys, p), b->arena, &pos)) return oom(s, r, err);
      }
    }
  }
  for (int p = 0; p < np; p++) {
    od_sqlbuf *l = &b->lits[p];
    if (!l->p || !lit_reserve(l, 1)) return oom(s, r, err);
    if (b->pfmt[p]) {
      put_be(l->p, 1, 4);
      put_be(l->p + 8, b->oid[col_of(r, keys, p)], 4);
      put_be(l->p + 12, count, 4);
      put_be(l->p + 16, 1, 4);
    } else {
      l->p[l->len++] = '}';
      l->p[l->len] = '\0';
    }
    s->pvals[p] = l->p;
    b->plen[p] = (int)l->len;
  }
  return OD_OK;
}

/* Send st with the parameters params_build left in s->pvals. */
static int params_send(pgs_sink *s, pg_rel *r, const pgs_stmt *st, int np, uint8_t cmd, const char *what,
                       od_error *err) {
  pgs_bulk *b = r->bulk;
  if (!pgs_cmd_push(s, cmd, r, what, -1)) return oom(s, r, err);
  if (!PQsendQueryPrepared(s->conn, st->name, np, s->pvals, b->plen, b->pfmt, 0))
    return pgs_fail(s, r->target, what, NULL, err);
  return OD_OK;
}

/* Queue a parameterless statement; false when it could not be sent. */
static int utility(pgs_sink *s, pg_rel *r, const char *sql, od_error *err) {
  return pgs_send_utility(s, r, sql, sql, err);
}

/* Append the row whose values start at pos (every column) to b->copy in COPY's text format:
 * backslash, newline, carriage return and tab escaped, NULL as \N. */
static bool copy_row(pgs_bulk *b, int n, size_t pos) {
  od_sqlbuf *l = &b->copy;
  for (int i = 0; i < n; i++) {
    uint32_t len;
    memcpy(&len, b->arena + pos, sizeof len);
    pos += sizeof len;
    if (!lit_reserve(l, len == NULL_LEN ? 4 : 2 * (size_t)len + 2)) return false;
    char *o = l->p + l->len;
    if (i) *o++ = '\t';
    if (len == NULL_LEN) {
      *o++ = '\\';
      *o++ = 'N';
    } else {
      o = pgs_copy_escape(o, b->arena + pos, len);
      pos += len;
    }
    l->len = (size_t)(o - l->p);
  }
  if (!lit_reserve(l, 1)) return false;
  l->p[l->len++] = '\n';
  return true;
}

/* COPY the new rows ('I') into the target, outside pipeline mode (the caller has finished the
 * pipeline, after its SAVEPOINT odsync_new). On the server's refusal returns OD_OK and hands its
 * error result to *refused (the caller's to PQclear; the transaction then needs the savepoint
 * rolled back); another rc when the connection failed or memory ran out. */
static int copy_new(pgs_sink *s, pg_rel *r, PGresult **refused, od_error *err) {
  pgs_bulk *b = r->bulk;
  int n = r->rel->ncolumns;
  *refused = NULL;
  if (!b->copy_sql) {
    od_sqlbuf *q = &b->sql;
    od_sqlbuf_reset(q);
    od_sqlbuf_add(q, "COPY ");
    od_sqlbuf_add(q, r->qtarget);
    pgs_add_columns(q, r);
    od_sqlbuf_add(q, " FROM STDIN");
    if (q->oom || !(b->copy_sql = strdup(q->p))) return oom(s, r, err);
  }
  PGresult *res = PQexec(s->conn, b->copy_sql);
  s->stats.round_trips++;
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    if (PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
      *refused = res;
      return OD_OK;
    }
    int rc = pgs_fail(s, r->target, "starting COPY of new rows", res, err);
    PQclear(res);
    return rc;
  }
  PQclear(res);
  bool sent = true, nomem = false;
  b->copy.len = 0;
  for (uint32_t e = 0; e < b->nent && sent; e++) {
    if (b->ents[e].op != 'I') continue;
    if (!copy_row(b, n, b->ents[e].off + b->ents[e].klen)) {
      nomem = true;
      break;
    }
    if (b->copy.len >= PGS_COPY_PIECE) {
      sent = PQputCopyData(s->conn, b->copy.p, (int)b->copy.len) == 1;
      b->copy.len = 0;
    }
  }
  if (sent && !nomem && b->copy.len) sent = PQputCopyData(s->conn, b->copy.p, (int)b->copy.len) == 1;
  b->copy.len = 0;
  /* An early error of the server (a duplicate key among rows sent before) ends the COPY on its
   * side: ending ours fails then, and the results below carry the error. */
  if (sent) PQputCopyEnd(s->conn, nomem ? "odsync: out of memory" : NULL);
  while ((res = PQgetResult(s->conn)) != NULL) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COPY_IN) { /* still ours to end: end it as failed */
      PQclear(res);
      if (PQputCopyEnd(s->conn, "odsync: COPY abandoned") != 1) break;
      continue;
    }
    if (st != PGRES_COMMAND_OK && !*refused && PQresultErrorField(res, PG_DIAG_SQLSTATE)) *refused = res;
    else PQclear(res);
  }
  s->stats.round_trips++;
  if (PQstatus(s->conn) != CONNECTION_OK) {
    if (*refused) PQclear(*refused), *refused = NULL;
    return pgs_fail(s, r->target, "COPY of new rows", NULL, err);
  }
  if (nomem) {
    if (*refused) PQclear(*refused), *refused = NULL;
    return oom(s, r, err);
  }
  if (!sent && !*refused) return pgs_fail(s, r->target, "sending new rows (COPY)", NULL, err);
  return OD_OK;
}

/* The target refused COPY itself, not the rows: a view (COPY needs an INSTEAD OF trigger there,
 * INSERT does not), a feature this server lacks. */
static bool copy_unsupported(const char *state) {
  return state && (strncmp(state, "0A", 2) == 0 || strcmp(state, "42809") == 0);
}

/* The optimistic path for the new rows ('I'): a plain INSERT (no arbiter-index pre-check, no
 * speculative insertion) inside a savepoint, then a sync and the results read, so that a key
 * already on the target (23505: put there by a user, or by a snapshot) is known before anything
 * else goes out; then the run is rolled back to the savepoint and sent again as the upsert. Leaves
 * the connection in pipeline mode, as the caller had it (also on failure: the caller syncs). */
static int flush_new(pgs_sink *s, pg_rel *r, od_error *err) {
  pgs_bulk *b = r->bulk;
  int n = r->rel->ncolumns, rc;
  bool copy = s->copy_min_rows && b->nins >= s->copy_min_rows && !b->nocopy;
  PGresult *refused = NULL; /* COPY's error, when the server refused it */
  if (copy) {
    if ((rc = utility(s, r, "SAVEPOINT odsync_new", err))) return rc;
    rc = pgs_pipeline_finish(s, s->batch, err);
    if (!rc) rc = copy_new(s, r, &refused, err);
  } else {
    if (!b->plain.name[0] && (rc = prepare_insert(s, r, true, err))) return rc;
    if ((rc = params_build(s, r, false, 'I', false, err)) || (rc = utility(s, r, "SAVEPOINT odsync_new", err)) ||
        (rc = params_send(s, r, &b->plain, n, PGS_CMD_TRY_INSERT, "set-based insert", err)) ||
        (rc = utility(s, r, "RELEASE SAVEPOINT odsync_new", err)))
      return rc;
    s->try_conflict = false;
    rc = pgs_pipeline_finish(s, s->batch, err);
  }
  const char *state = refused ? PQresultErrorField(refused, PG_DIAG_SQLSTATE) : NULL;
  bool conflict = copy ? state && strcmp(state, "23505") == 0 : s->try_conflict;
  bool unsupported = refused && !conflict && copy_unsupported(state);
  s->try_conflict = false;
  if (refused && !conflict && !unsupported && !rc) rc = pgs_fail(s, r->target, "COPY of new rows", refused, err);
  if (unsupported)
    od_warn("postgres sink %s: table %s: the target refused COPY (%s, SQLSTATE %s): its new rows go as INSERT "
            "from now on", s->where, r->target, PQresultErrorField(refused, PG_DIAG_MESSAGE_PRIMARY), state);
  PQclear(refused);
  if (!PQenterPipelineMode(s->conn) && !rc) rc = pgs_fail(s, r->target, "entering pipeline mode", NULL, err);
  if (rc) return rc;
  if (unsupported) {
    b->nocopy = true;
    if ((rc = utility(s, r, "ROLLBACK TO SAVEPOINT odsync_new", err)) ||
        (rc = utility(s, r, "RELEASE SAVEPOINT odsync_new", err)))
      return rc;
    return flush_new(s, r, err); /* the plain INSERT, now */
  }
  if (!conflict) {
    s->stats.inserted += b->nins;
    if (!copy) return OD_OK;
    s->stats.copied += b->nins;
    return utility(s, r, "RELEASE SAVEPOINT odsync_new", err); /* goes with the next statements */
  }
  od_info("postgres sink %s: table %s: %u new rows met a key already on the target; applied as an upsert",
          s->where, r->target, b->nins);
  b->calm = PGS_CALM_FLUSHES; /* the next flushes of this table upsert right away */
  s->stats.updated += b->nins;
  if ((rc = utility(s, r, "ROLLBACK TO SAVEPOINT odsync_new", err)) ||
      (rc = utility(s, r, "RELEASE SAVEPOINT odsync_new", err)))
    return rc;
  /* After the plain INSERT, s->pvals, b->plen and b->pfmt still describe the parameters
   * params_build made; COPY made none. */
  if (copy && (rc = params_build(s, r, false, 'I', false, err))) return rc;
  if (!b->ins.name[0] && (rc = prepare_insert(s, r, false, err))) return rc;
  return params_send(s, r, &b->ins, n, PGS_CMD_OTHER, "set-based upsert (key already there)", err);
}

int pgs_bulk_flush(pgs_sink *s, pg_rel *r, od_error *err) {
  pgs_bulk *b = r->bulk;
  if (!b || !b->nent) return OD_OK;
  int n = r->rel->ncolumns, rc;
  if ((rc = pgs_send_begin(s, err))) return rc; /* an apply() sends BEGIN with its first statement */
  if (b->ndel) {
    if (!b->del.name[0] && (rc = prepare_delete(s, r, err))) return rc;
    if ((rc = params_build(s, r, true, 'D', false, err)) ||
        (rc = params_send(s, r, &b->del, r->nkey, PGS_CMD_OTHER, "set-based delete", err)))
      return rc;
    s->stats.deleted += b->ndel;
  }
  /* After a fallback, new rows go with the upserts for a while (one statement, no extra sync). */
  /* A mesh sink keeps the upsert: keys meet rows written at other nodes as a rule there, and the
   * extra sync of the optimistic path would hold its row locks across one more round trip. */
  /* A few new rows go with the upserts too: in the same round trip as the commit. */
  /* copy_min_rows below PGS_OPTIMISTIC_MIN_ROWS: runs that short take the optimistic path too (by COPY). */
  uint32_t opt_min = s->copy_min_rows && s->copy_min_rows < PGS_OPTIMISTIC_MIN_ROWS ? s->copy_min_rows
                                                                                  : PGS_OPTIMISTIC_MIN_ROWS;
  bool few = b->nins < opt_min, calm = b->calm != 0;
  bool optimistic = b->nins && !few && !calm && !s->mesh;
  if (b->nins && b->calm) b->calm--;
  if (b->nup || (b->nins && !optimistic)) {
    if (!b->ins.name[0] && (rc = prepare_insert(s, r, false, err))) return rc;
    if ((rc = params_build(s, r, false, 'U', !optimistic, err)) ||
        (rc = params_send(s, r, &b->ins, n, PGS_CMD_OTHER, "set-based upsert", err)))
      return rc;
    s->stats.updated += b->nup;
    /* New rows sent with the upsert count as inserts when only their number decided it. */
    if (!optimistic && few && !calm && !s->mesh) s->stats.inserted += b->nins;
    else if (!optimistic) s->stats.updated += b->nins;
  }
  if (optimistic && (rc = flush_new(s, r, err))) return rc;
  reset(b);
  return OD_OK;
}

int pgs_bulk_flush_all(pgs_sink *s, od_error *err) {
  OD_RELMAP_FOREACH(&s->rels, n) {
    int rc = pgs_bulk_flush(s, (pg_rel *)n, err);
    if (rc) return rc;
  }
  return OD_OK;
}

bool pgs_bulk_pending(const pgs_sink *s) {
  OD_RELMAP_FOREACH(&s->rels, n) {
    const pg_rel *r = (const pg_rel *)n;
    if (r->bulk && r->bulk->nent) return true;
  }
  return false;
}

int pgs_bulk_flush_now(pgs_sink *s, od_error *err) {
  if (!pgs_bulk_pending(s)) return OD_OK;
  if (!s->conn) return pgs_fail(s, NULL, "sending buffered changes", NULL, err);
  if (!PQenterPipelineMode(s->conn)) return pgs_fail(s, NULL, "entering pipeline mode", NULL, err);
  int rc = OD_OK;
  if (!s->begin_sent) {
    rc = pgs_send_utility(s, NULL, "BEGIN", "BEGIN", err);
    s->begin_sent = true;
  }
  if (!rc) rc = pgs_bulk_flush_all(s, err);
  od_error ignored;
  int frc = pgs_pipeline_finish(s, NULL, rc ? &ignored : err);
  return rc ? rc : frc;
}

void pgs_bulk_discard_all(pgs_sink *s) {
  OD_RELMAP_FOREACH(&s->rels, n) {
    pg_rel *r = (pg_rel *)n;
    if (r->bulk) reset(r->bulk);
  }
}

int pgs_bulk_forget(pgs_sink *s, pg_rel *r, od_error *err) {
  pgs_bulk *b = r->bulk;
  if (!b) return OD_OK;
  pgs_stmt *sts[] = {&b->del, &b->ins, &b->plain};
  for (int i = 0; i < 3; i++) {
    if (!sts[i]->name[0]) continue;
    char sql[48];
    snprintf(sql, sizeof sql, "DEALLOCATE %s", sts[i]->name);
    sts[i]->name[0] = '\0';
    PGresult *res = pgs_exec(s, r->target, "deallocating a statement of an older table version", sql, 0, NULL, err);
    if (!res) return err->code;
    PQclear(res);
  }
  return OD_OK;
}
