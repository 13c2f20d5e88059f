/* sources/poll/poll_reconcile.c — see poll_reconcile.h. */
#include "sources/poll/poll_reconcile.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sqlbuf.h"
#include "core/adapter.h"

bool pr_numeric_type(const char *type_name) {
  return !strcmp(type_name, "smallint") || !strcmp(type_name, "integer") || !strcmp(type_name, "bigint");
}

/* The ordered key expressions of t: "(e1, e2, ...)". */
static void key_exprs(pq_table *t, od_sqlbuf *b) {
  od_sqlbuf_add(b, "(");
  int k = 0;
  for (int i = 0; i < t->rel.ncolumns; i++) {
    if (!t->rel.columns[i].key) continue;
    char q[200];
    pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
    if (k++) od_sqlbuf_add(b, ", ");
    if (pr_numeric_type(t->rel.columns[i].type_name)) {
      od_sqlbuf_add(b, q);
    } else {
      od_sqlbuf_add(b, "(concat(");
      od_sqlbuf_add(b, q);
      od_sqlbuf_add(b, ") COLLATE \"C\")"); /* the output function's text, as the rows were read (bpchar keeps its padding) */
    }
  }
  od_sqlbuf_add(b, ")");
}

/* A key as a row literal of the same shape: "('5'::bigint, 'a'::text)". */
static int key_literal(PGconn *c, pq_table *t, const pk_table *kt, const char *key, od_sqlbuf *b) {
  od_sqlbuf_add(b, "(");
  int k = 0;
  for (int i = 0; i < t->rel.ncolumns; i++) {
    if (!t->rel.columns[i].key) continue;
    const char *part = pk_key_part(kt, key, k);
    char *lit = PQescapeLiteral(c, part, strlen(part));
    if (!lit) return -1;
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_add(b, lit);
    od_sqlbuf_add(b, kt->numeric[k] ? "::bigint" : "::text");
    PQfreemem(lit);
    k++;
  }
  od_sqlbuf_add(b, ")");
  return 0;
}

/* " WHERE <range of chunk [lo, hi)>" (NULL bound: open). */
static int range_where(PGconn *c, pq_table *t, const pk_table *kt, const char *lo, const char *hi, od_sqlbuf *b) {
  od_sqlbuf_add(b, " WHERE true");
  if (lo) {
    od_sqlbuf_add(b, " AND ");
    key_exprs(t, b);
    od_sqlbuf_add(b, " >= ");
    if (key_literal(c, t, kt, lo, b)) return -1;
  }
  if (hi) {
    od_sqlbuf_add(b, " AND ");
    key_exprs(t, b);
    od_sqlbuf_add(b, " < ");
    if (key_literal(c, t, kt, hi, b)) return -1;
  }
  return 0;
}

static void hash_expr(pq_table *t, od_sqlbuf *b) {
  od_sqlbuf_add(b, "('x' || left(md5(concat_ws(chr(31)");
  for (int i = 0; i < t->rel.ncolumns; i++) {
    if (!t->rel.columns[i].key) continue;
    char q[200];
    pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
    od_sqlbuf_add(b, ", ");
    od_sqlbuf_add(b, q); /* concat_ws takes each value's output function text, as the rows were read */
  }
  od_sqlbuf_add(b, ")), 16))::bit(64)::bigint");
}

static int find_key(const pk_table *kt, char *const *keys, size_t n, const char *key) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = pk_key_cmp(kt, keys[mid], key);
    if (!c) return (int)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

static _Thread_local const pk_table *g_kt;
static int cmp_keys(const void *a, const void *b) { return pk_key_cmp(g_kt, *(char *const *)a, *(char *const *)b); }

/* The key columns of t, quoted, comma-separated. */
static void key_columns(pq_table *t, od_sqlbuf *b) {
  int k = 0;
  for (int i = 0; i < t->rel.ncolumns; i++) {
    if (!t->rel.columns[i].key) continue;
    char q[200];
    pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
    od_sqlbuf_add(b, k++ ? ", " : "");
    od_sqlbuf_add(b, q);
  }
}

/* Of the ledger keys [from, to) not among the fetched src keys, mark live[] those the table still has
 * (SELECT ... WHERE (k1, k2) IN ((v1::type1, v2::type2), ...), by each key column's own equality). */
static int confirm_absent(PGconn *c, const char *where, pq_table *t, const pk_table *kt, char *const *src, size_t n,
                          size_t from, size_t to, bool *live, od_error *err) {
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "SELECT ");
  key_columns(t, &b);
  od_sqlbuf_add(&b, " FROM ");
  od_sqlbuf_add(&b, t->qname);
  od_sqlbuf_add(&b, " WHERE (");
  key_columns(t, &b);
  od_sqlbuf_add(&b, ") IN (");
  size_t cand = 0;
  for (size_t i = from; i < to; i++) {
    if (!kt->keys[i] || find_key(kt, src, n, kt->keys[i]) >= 0) continue;
    od_sqlbuf_add(&b, cand++ ? ", (" : "(");
    int part = 0;
    for (int col = 0; col < t->rel.ncolumns; col++) {
      if (!t->rel.columns[col].key) continue;
      const char *v = pk_key_part(kt, kt->keys[i], part);
      char *lit = PQescapeLiteral(c, v, strlen(v));
      if (!lit) {
        b.oom = true;
        break;
      }
      od_sqlbuf_add(&b, part++ ? ", " : "");
      od_sqlbuf_add(&b, lit);
      od_sqlbuf_add(&b, "::");
      od_sqlbuf_add(&b, t->rel.columns[col].type_name);
      PQfreemem(lit);
    }
    od_sqlbuf_add(&b, ")");
  }
  od_sqlbuf_add(&b, ")");
  if (b.oom) {
    od_sqlbuf_free(&b);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  if (!cand) {
    od_sqlbuf_free(&b);
    return OD_OK;
  }
  PGresult *r = pq_run(c, b.p, 0, NULL, where, err);
  od_sqlbuf_free(&b);
  if (!r) return err->code;
  for (int row = 0; row < PQntuples(r); row++) {
    char key[8192];
    size_t o = 0;
    for (int col = 0; col < PQnfields(r) && o < sizeof key; col++) {
      int len = PQgetlength(r, row, col);
      if (o + (size_t)len + 1 > sizeof key) {
        o = sizeof key;
        break;
      }
      memcpy(key + o, PQgetvalue(r, row, col), (size_t)len + 1);
      o += (size_t)len + 1;
    }
    if (o >= sizeof key) {
      /* Too long to compare here: keep every candidate (no delete this time; the chunk stays differing). */
      for (size_t i = 0; i < to - from; i++) live[i] = true;
      break;
    }
    for (size_t i = from; i < to; i++)
      if (kt->keys[i] && !pk_key_cmp(kt, kt->keys[i], key)) live[i - from] = true;
  }
  if (PQntuples(r) > 0)
    od_warn("%s: table %s: %d key(s) outside the key range their chunk was fetched by (a text form that does not "
            "sort the same on both sides?): kept, not deleted", where, t->display, PQntuples(r));
  PQclear(r);
  return OD_OK;
}

/* Rows of the chunk [from, to) of the ledger differ: fetch the source's rows in its key range. */
static int fetch_chunk(PGconn *c, const char *where, pq_table *t, pk_ledger *l, int ti, size_t from, size_t to,
                       const char *lo, const char *hi, const od_pos *end, const pr_emit *emit, pr_stats *st,
                       od_error *err) {
  pk_table *kt = &l->tables[ti];
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "SELECT ");
  for (int i = 0; i < t->rel.ncolumns; i++) {
    char q[200];
    pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
    if (i) od_sqlbuf_add(&b, ", ");
    od_sqlbuf_add(&b, q);
  }
  od_sqlbuf_add(&b, " FROM ");
  od_sqlbuf_add(&b, t->qname);
  if (range_where(c, t, kt, lo, hi, &b) || b.oom) {
    od_sqlbuf_free(&b);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  PGresult *r = pq_run(c, b.p, 0, NULL, where, err);
  od_sqlbuf_free(&b);
  if (!r) return err->code;
  int n = PQntuples(r), rc = OD_OK;
  /* The source's keys of the range, as key blocks, sorted. */
  char **src = calloc((size_t)n + 1, sizeof *src);
  if (!src) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; i < n && !rc; i++) {
    size_t size = 0;
    for (int col = 0; col < t->rel.ncolumns; col++)
      if (t->rel.columns[col].key) size += (size_t)PQgetlength(r, i, col) + 1;
    char *k = malloc(size + sizeof(int));
    if (!k) {
      rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
      break;
    }
    char *o = k;
    for (int col = 0; col < t->rel.ncolumns; col++) {
      if (!t->rel.columns[col].key) continue;
      size_t m = (size_t)PQgetlength(r, i, col);
      memcpy(o, PQgetvalue(r, i, col), m);
      o[m] = '\0';
      o += m + 1;
    }
    memcpy(o, &i, sizeof i); /* the row number rides behind the key */
    src[i] = k;
  }
  if (!rc) {
    g_kt = kt;
    qsort(src, (size_t)n, sizeof *src, cmp_keys);
  }
  /* A source row the ledger lacks: deliver it (first: the walk below empties ledger slots). */
  for (int i = 0; i < n && !rc; i++) {
    if (find_key(kt, kt->keys + from, to - from, src[i]) >= 0) continue;
    int row;
    const char *p = src[i];
    for (int k = 0; k < kt->nparts; k++) p += strlen(p) + 1;
    memcpy(&row, p, sizeof row);
    rc = emit->row(emit->ctx, t, r, row, err);
    st->upserts++;
  }
  /* A ledger key the source lacks: delete it — after asking the table by equality on the key's own
   * types, so that no difference between the two sides' orders can ever delete a live row. */
  bool *live = calloc(to - from + 1, sizeof *live);
  if (!rc && !live) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (!rc) rc = confirm_absent(c, where, t, kt, src, (size_t)n, from, to, live, err);
  for (size_t i = from; i < to && !rc; i++) {
    if (!kt->keys[i] || live[i - from] || find_key(kt, src, (size_t)n, kt->keys[i]) >= 0) continue;
    if ((rc = emit->del(emit->ctx, t, kt, kt->keys[i], err))) break;
    rc = pk_remove(l, ti, i, end, err);
    st->deletes++;
  }
  free(live);
  for (int i = 0; src && i < n; i++) free(src[i]);
  free(src);
  PQclear(r);
  return rc;
}

/* Count and checksum of every chunk of a one-column key in one query:
 * SELECT width_bucket(<key expr>, ARRAY[<bound 1>, ...]), count(*), bit_xor(<hash>) ... GROUP BY 1
 * (bucket j is chunk j: 0 below the first bound). *cnts and *sums (nchunks each) are the caller's. */
static int bucket_sums(PGconn *c, const char *where, pq_table *t, const pk_table *kt, char *const *bounds,
                       size_t nchunks, long long **cnts, long long **sums, od_error *err) {
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "SELECT width_bucket(");
  key_exprs(t, &b);
  od_sqlbuf_add(&b, ", ARRAY[");
  for (size_t j = 1; j < nchunks; j++) {
    char *lit = PQescapeLiteral(c, bounds[j], strlen(bounds[j]));
    if (!lit) {
      b.oom = true;
      break;
    }
    if (j > 1) od_sqlbuf_add(&b, ", ");
    od_sqlbuf_add(&b, lit);
    PQfreemem(lit);
  }
  od_sqlbuf_add(&b, kt->numeric[0] ? "]::bigint[]), count(*), coalesce(bit_xor(" : "]::text[]), count(*), coalesce(bit_xor(");
  hash_expr(t, &b);
  od_sqlbuf_add(&b, "), 0) FROM ");
  od_sqlbuf_add(&b, t->qname);
  od_sqlbuf_add(&b, " GROUP BY 1");
  *cnts = calloc(nchunks, sizeof **cnts);
  *sums = calloc(nchunks, sizeof **sums);
  if (b.oom || !*cnts || !*sums) {
    od_sqlbuf_free(&b);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  PGresult *r = pq_run(c, b.p, 0, NULL, where, err);
  od_sqlbuf_free(&b);
  if (!r) return err->code;
  for (int i = 0; i < PQntuples(r); i++) {
    long long j = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    if (j < 0 || (size_t)j >= nchunks) continue; /* cannot happen: buckets are 0..nchunks-1 */
    (*cnts)[j] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    (*sums)[j] = strtoll(PQgetvalue(r, i, 2), NULL, 10);
  }
  PQclear(r);
  return OD_OK;
}

int pr_reconcile_table(PGconn *c, const char *where, pq_table *t, pk_ledger *l, int ti, long chunk_rows,
                       const od_pos *end, const pr_emit *emit, pr_stats *st, od_error *err) {
  pk_table *kt = &l->tables[ti];
  int rc = pk_normalize(kt, err);
  if (rc) return rc;
  size_t n = kt->n, per = (size_t)(chunk_rows > 0 ? chunk_rows : 1);
  size_t nchunks = n ? (n + per - 1) / per : 1;
  /* The bounds are copied: pk_remove empties slots of kt->keys while the walk goes on. */
  char **bounds = calloc(nchunks + 1, sizeof *bounds);
  if (!bounds) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (size_t j = 1; j < nchunks && !rc; j++) {
    const char *k = kt->keys[j * per];
    size_t size = 0;
    const char *p = k;
    for (int i = 0; i < kt->nparts; i++) p += strlen(p) + 1;
    size = (size_t)(p - k);
    if (!(bounds[j] = malloc(size))) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
    else memcpy(bounds[j], k, size);
  }
  od_sqlbuf head = {0};
  od_sqlbuf_add(&head, "SELECT count(*), coalesce(bit_xor(");
  hash_expr(t, &head);
  od_sqlbuf_add(&head, "), 0) FROM ");
  od_sqlbuf_add(&head, t->qname);
  if (head.oom && !rc) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  /* A one-column key: every chunk's count and checksum in one pass (width_bucket over the bounds). */
  long long *cnts = NULL, *sums = NULL;
  if (!rc && kt->nparts == 1 && nchunks > 1) rc = bucket_sums(c, where, t, kt, bounds, nchunks, &cnts, &sums, err);
  for (size_t j = 0; j < nchunks && !rc; j++) {
    size_t from = j * per, to = from + per < n ? from + per : n;
    int64_t sum = 0;
    for (size_t i = from; i < to; i++) sum ^= pk_key_hash(kt, kt->keys[i]);
    if (cnts) {
      st->chunks++;
      if (cnts[j] == (long long)(to - from) && sums[j] == (long long)sum) continue;
      st->fetched++;
      rc = fetch_chunk(c, where, t, l, ti, from, to, bounds[j], bounds[j + 1], end, emit, st, err);
      continue;
    }
    od_sqlbuf q = {0};
    od_sqlbuf_add(&q, head.p);
    if (range_where(c, t, kt, bounds[j], bounds[j + 1], &q) || q.oom) {
      free(q.p);
      rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
      break;
    }
    PGresult *r = pq_run(c, q.p, 0, NULL, where, err);
    free(q.p);
    if (!r) {
      rc = err->code;
      break;
    }
    long long cnt = strtoll(PQgetvalue(r, 0, 0), NULL, 10), xsum = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    st->chunks++;
    if (cnt == (long long)(to - from) && xsum == (long long)sum) continue;
    st->fetched++;
    rc = fetch_chunk(c, where, t, l, ti, from, to, bounds[j], bounds[j + 1], end, emit, st, err);
  }
  pk_compact_keys(kt);
  free(cnts);
  free(sums);
  free(head.p);
  for (size_t j = 0; j <= nchunks; j++) free(bounds[j]);
  free(bounds);
  return rc;
}
