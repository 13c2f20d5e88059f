/* clickhouse_keyless.c — tables without a key in the ClickHouse sink (no primary key, or REPLICA
 * IDENTITY FULL without one): the source table is a multiset of rows, and two identical rows are
 * two copies that must stay two.
 *
 * Model: every change becomes signed rows — an insert (or snapshot row) +1 of its content, a
 * delete -1 of its before-image's content, an update -1 of the before-image and +1 of the
 * after-image. Each row carries
 *   _odsync_hash     a 64-bit hash of the content (every column's encoded field),
 *   _odsync_version  the version of its transaction (ch_row_version: the start position; 0 for
 *                    the initial snapshot),
 *   _odsync_seq      the row's place inside that version: 2 × the change's index in its source
 *                    transaction (+1 for an update's new image); for snapshot rows a running
 *                    number per table (ch_seq),
 *   _odsync_sign     +1 or -1,
 * in a ReplacingMergeTree ordered by (hash, version, seq). A replayed batch (after a crash before
 * the checkpoint) delivers the same changes with the same positions and indexes, so its rows have
 * the same sort key as the first delivery's and collapse under FINAL; two different changes never
 * share (version, seq). The number of copies of a content is sum(_odsync_sign) over its rows; the
 * view groups by every column (not by the hash: a hash collision cannot merge two contents) and
 * repeats each content that many times. No read-back: deltas need no stored count.
 *
 * A delete or update needs the before-image (REPLICA IDENTITY FULL): without it the row cannot be
 * named and the batch fails with an error saying so (PostgreSQL itself refuses UPDATE/DELETE on a
 * published table without replica identity, so this only happens with a misconfigured source).
 *
 * Owns: the rows it adds to the ch_rel's batch, the ch_seq list. Never touches: DDL, the HTTP
 * transport, the checkpoint.
 */
#include <stdlib.h>
#include <string.h>

#include "sinks/clickhouse_internal.h"

uint64_t ch_hash_field(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  return (h ^ 0x1f) * 0x100000001b3ull; /* field separator: ("ab","c") and ("a","bc") differ */
}

uint64_t ch_keyless_hash(const ch_rel *r, size_t row) {
  uint64_t h = CH_HASH_SEED;
  const ch_cell *c = &r->cells[row * r->ncol];
  for (uint16_t i = 0; i < r->ncol; i++) h = ch_hash_field(h, r->data.p + c[i].off, c[i].len);
  return h;
}

ch_seq *ch_keyless_seq(ch_sink *s, const ch_rel *r, od_error *err) {
  for (ch_seq *q = s->seqs; q; q = q->next_seq)
    if (!strcmp(q->table, r->table)) return q;
  ch_seq *q = calloc(1, sizeof *q);
  if (!q || !(q->table = strdup(r->table))) {
    free(q);
    OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: out of memory", s->http.name);
    return NULL;
  }
  q->next_seq = s->seqs;
  s->seqs = q;
  return q;
}

void ch_keyless_seqs_commit(ch_sink *s) {
  for (ch_seq *q = s->seqs; q; q = q->next_seq) q->committed = q->next;
}

void ch_keyless_seqs_rollback(ch_sink *s) {
  for (ch_seq *q = s->seqs; q; q = q->next_seq) q->next = q->committed;
}

void ch_keyless_seqs_free(ch_sink *s) {
  while (s->seqs) {
    ch_seq *n = s->seqs->next_seq;
    free(s->seqs->table);
    free(s->seqs);
    s->seqs = n;
  }
}

static bool usable(const od_tuple *t, uint16_t i) {
  return t && i < t->ncolumns && t->values[i].kind != OD_VALUE_UNCHANGED;
}

/* One signed row of `img` (missing columns NULL; unchanged values from `fill`, the before-image). */
static int add_image(ch_sink *s, ch_rel *r, const od_tuple *img, const od_tuple *fill, uint64_t version,
                     uint64_t seq, int sign, od_error *err) {
  size_t row;
  int rc = ch_row_new(s, r, version, false, &row, err);
  if (rc) return rc;
  r->rows[row].seq = seq;
  r->rows[row].sign = (int8_t)sign;
  static const od_value null = {.kind = OD_VALUE_NULL};
  for (uint16_t i = 0; i < r->ncol && !rc; i++) {
    const od_value *v = &null;
    if (usable(img, i))
      v = &img->values[i];
    else if (i < img->ncolumns && usable(fill, i))
      v = &fill->values[i];
    else if (i < img->ncolumns) /* unchanged and no before-image to take it from */
      return OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s (no key): column %s came unchanged (TOAST) "
                     "without a full before-image; set REPLICA IDENTITY FULL on the source table",
                     s->http.name, r->table, r->rel->columns[i].name);
    rc = ch_put_value(s, r, row, i, v, err);
  }
  return rc;
}

int ch_keyless_change(ch_sink *s, ch_rel *r, const od_change *c, od_error *err) {
  uint64_t version, seq;
  int rc = ch_row_version(s, c, &version, err);
  if (rc) return rc;
  if (c->op != OD_OP_INSERT && c->op != OD_OP_READ && c->old_kind != 'O')
    return OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s has no key and a %s came without the whole "
                   "before-image, so the row it changes cannot be found; set REPLICA IDENTITY FULL on the "
                   "source table (then re-copy it with odsync snapshot)", s->http.name, r->table,
                   c->op == OD_OP_DELETE ? "delete" : "update");
  if (c->txn_start && !od_pos_is_none(c->txn_start)) {
    seq = (uint64_t)c->index * 2;
  } else { /* a snapshot row: the table's running number */
    ch_seq *q = ch_keyless_seq(s, r, err);
    if (!q) return OD_ENOMEM;
    seq = q->next++;
  }
  switch (c->op) {
  case OD_OP_INSERT:
  case OD_OP_READ:
    return add_image(s, r, &c->newtup, NULL, version, seq, +1, err);
  case OD_OP_DELETE:
    return add_image(s, r, &c->oldtup, NULL, version, seq, -1, err);
  case OD_OP_UPDATE:
    rc = add_image(s, r, &c->oldtup, NULL, version, seq, -1, err);
    return rc ? rc : add_image(s, r, &c->newtup, &c->oldtup, version, seq + 1, +1, err);
  default:
    return OD_OK;
  }
}
