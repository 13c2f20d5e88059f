/* sources/mysql/binlog_rows.c — WRITE/UPDATE/DELETE_ROWS events, row by row.
 *
 * Owns: the rows event layout (v1 and v2 post-headers, v2's extra data with MySQL's extra row info,
 * the column-present bitmaps, each image's NULL bitmap), MySQL's PARTIAL_UPDATE_ROWS (value_options and
 * partial bits before each after image; a JSON diff list is refused with the setting to change),
 * MariaDB's compressed variants (the rows part zlib-compressed
 * behind a one-byte header and its big-endian length), and turning each image into an od_tuple
 * whose values point into an my_valbuf.
 * Never touches: value formats (binlog_value.c), which table a table id means (the source).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sources/mysql/binlog.h"
#include "sources/mysql/binlog_bytes.h"

static bool is_compressed(uint8_t type) {
  return type >= MY_EV_WRITE_COMPRESSED_V1 && type <= MY_EV_DELETE_COMPRESSED_V2;
}

int my_inflate(const uint8_t *p, const uint8_t *end, uint8_t **out, size_t *out_len) {
  *out = NULL;
  if (p >= end || !(p[0] & 0x80)) return -1;
  int lenlen = p[0] & 7;
  if (lenlen < 1 || lenlen > 4 || end - p < 1 + lenlen) return -1;
  uLongf want = (uLongf)my_ube(p + 1, lenlen);
  if (want > (1u << 30)) return -1;
  uint8_t *buf = malloc(want ? want : 1);
  if (!buf) return -1;
  uLongf got = want;
  if (uncompress(buf, &got, p + 1 + lenlen, (uLong)(end - p - 1 - lenlen)) != Z_OK || got != want) {
    free(buf);
    return -1;
  }
  *out = buf;
  *out_len = want;
  return 0;
}

static int inflate_rows(my_rows *r, const my_event *ev, const uint8_t *p, const uint8_t *end, od_error *err) {
  size_t n;
  if (my_inflate(p, end, &r->inflated, &n) != 0)
    return OD_FAIL(err, OD_EPROTOCOL, "compressed rows event at offset %u: bad header or corrupt zlib data",
                   ev->log_pos);
  r->p = r->inflated;
  r->end = r->inflated + n;
  return OD_OK;
}

/* A v2 rows event's extra row info (MySQL): a list of typed items. NDB info is [0][length][format]
 * [length - 2 bytes] (skipped); partition info is [1][partition id, 2 bytes] and, for updates, the
 * source partition's id (2 bytes). An unknown item ends the reading (its length is unknown; the
 * extra data's total length is, so the rows are still found). -1 when an item is truncated. */
static int extra_info(my_rows *r, const uint8_t *p, const uint8_t *end) {
  while (p < end) {
    uint8_t tag = *p++;
    if (tag == 0) {
      if (p >= end || *p < 2 || (size_t)(end - p) < *p) return -1;
      r->ndb_info_len = *p;
      p += *p;
    } else if (tag == 1) {
      size_t need = r->op == OD_OP_UPDATE ? 4 : 2;
      if ((size_t)(end - p) < need) return -1;
      r->partition_id = my_u16(p);
      if (need == 4) r->source_partition_id = my_u16(p + 2);
      p += need;
    } else {
      return 0;
    }
  }
  return 0;
}

int my_rows_begin(const my_format *f, const my_event *ev, my_rows *r, od_error *err) {
  memset(r, 0, sizeof *r);
  switch (ev->type) {
    case MY_EV_WRITE_V1: case MY_EV_WRITE_V2: case MY_EV_WRITE_COMPRESSED_V1: case MY_EV_WRITE_COMPRESSED_V2:
      r->op = OD_OP_INSERT;
      break;
    case MY_EV_UPDATE_V1: case MY_EV_UPDATE_V2: case MY_EV_UPDATE_COMPRESSED_V1: case MY_EV_UPDATE_COMPRESSED_V2:
      r->op = OD_OP_UPDATE;
      break;
    case MY_EV_MYSQL_PARTIAL_UPDATE:
      r->op = OD_OP_UPDATE;
      r->partial = true;
      break;
    case MY_EV_DELETE_V1: case MY_EV_DELETE_V2: case MY_EV_DELETE_COMPRESSED_V1: case MY_EV_DELETE_COMPRESSED_V2:
      r->op = OD_OP_DELETE;
      break;
    default:
      return OD_FAIL(err, OD_EINVAL, "event type %u is not a rows event", ev->type);
  }
  r->partition_id = r->source_partition_id = -1;
  bool v2 = (ev->type >= MY_EV_WRITE_V2 && ev->type <= MY_EV_DELETE_V2) ||
            (ev->type >= MY_EV_WRITE_COMPRESSED_V2 && ev->type <= MY_EV_DELETE_COMPRESSED_V2) || r->partial;
  size_t ph = f->post_header[ev->type];
  if (!ph) ph = v2 && !is_compressed(ev->type) ? 10 : 8;
  const uint8_t *p = ev->body, *end = ev->body + ev->body_len;
  if (ev->body_len < ph) goto bad;
  r->table_id = ph == 6 ? my_u32(p) : my_u48(p);
  r->flags = my_u16(p + (ph == 6 ? 4 : 6));
  p += ph;
  if (v2 && ph == 8) { /* extra data length is part of the body when the post-header says 8 */
    if (end - p < 2) goto bad;
    size_t extra = my_u16(p);
    if (extra < 2 || (size_t)(end - p) < extra) goto bad;
    if (extra_info(r, p + 2, p + extra) != 0) goto bad;
    p += extra;
  } else if (v2 && ph == 10) {
    size_t extra = my_u16(ev->body + 8);
    if (extra < 2 || (size_t)(end - p) < extra - 2) goto bad;
    if (extra_info(r, p, p + extra - 2) != 0) goto bad;
    p += extra - 2;
  }
  uint64_t n;
  if (!my_packed(&p, end, &n) || n == 0 || n > 4096) goto bad;
  r->ncols = (int)n;
  size_t nb = (n + 7) / 8;
  if ((size_t)(end - p) < nb) goto bad;
  r->present_before = r->present_after = p;
  p += nb;
  if (r->op == OD_OP_UPDATE) {
    if ((size_t)(end - p) < nb) goto bad;
    r->present_after = p;
    p += nb;
  }
  if (is_compressed(ev->type)) return inflate_rows(r, ev, p, end, err);
  r->p = p;
  r->end = end;
  return OD_OK;
bad:
  return OD_FAIL(err, OD_EPROTOCOL, "rows event type %u at offset %u is malformed", ev->type, ev->log_pos);
}

void my_rows_end(my_rows *r) {
  free(r->inflated);
  r->inflated = NULL;
}

static int grow(my_valbuf *vb, int n) {
  if (vb->cap_vals >= n) return 0;
  od_value *v = realloc(vb->vals, (size_t)n * sizeof *v);
  if (!v) return -1;
  vb->vals = v;
  size_t *o = realloc(vb->offs, (size_t)n * sizeof *o);
  if (!o) return -1;
  vb->offs = o;
  vb->cap_vals = n;
  return 0;
}

typedef struct diff_note {
  int n;
  int op;
  char path[64];
} diff_note;

static void note_diff(void *ctx, int op, const char *path, size_t path_len, const uint8_t *value, size_t value_len) {
  (void)value;
  (void)value_len;
  diff_note *d = ctx;
  if (d->n++ == 0) {
    d->op = op;
    snprintf(d->path, sizeof d->path, "%.*s", (int)(path_len < 60 ? path_len : 60), path);
  }
}

/* A JSON column sent as a diff list (PARTIAL_UPDATE_ROWS): its structure is checked, then refused —
 * odsync writes whole values, and the diff applies to MySQL's binary JSON of the before image. */
static int partial_json(my_rows *r, const my_table *t, const my_column *c, od_error *err) {
  static const char *const ops[] = {"REPLACE", "INSERT", "REMOVE"};
  diff_note d = {0};
  size_t used;
  if (my_json_diffs_parse(r->p, r->end, &used, note_diff, &d) != 0)
    return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: column %s: malformed JSON diff list in a PARTIAL_UPDATE_ROWS event",
                   t->db, t->name, c->name ? c->name : "?");
  return OD_FAIL(err, OD_EUNSUPPORTED,
                 "table %s.%s: column %s: a partial JSON update (%d diff%s, the first %s %s): odsync writes whole "
                 "values; set binlog_row_value_options='' (the default) on the MySQL server so the binlog carries "
                 "the whole document",
                 t->db, t->name, c->name ? c->name : "?", d.n, d.n == 1 ? "" : "s", d.n ? ops[d.op] : "-",
                 d.n ? d.path : "-");
}

/* partial_bits (PARTIAL_UPDATE_ROWS' after image, else NULL): one bit per JSON column of the before
 * image, in column order; a set bit means that column's value is a JSON diff list. */
static int read_image(my_rows *r, const my_table *t, const uint8_t *present, const uint8_t *partial_bits,
                      my_valbuf *vb, od_value *vals, size_t *offs, od_error *err) {
  int json_k = 0;
  int npresent = 0;
  for (int i = 0; i < r->ncols; i++) npresent += my_bit(present, i);
  size_t nb = (size_t)(npresent + 7) / 8;
  if ((size_t)(r->end - r->p) < nb)
    return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: row image truncated (NULL bitmap)", t->db, t->name);
  const uint8_t *nulls = r->p;
  r->p += nb;
  int k = 0;
  for (int i = 0; i < r->ncols; i++) {
    vals[i].data = NULL;
    vals[i].len = 0;
    bool partial = false; /* counted over the before image's JSON columns, whether or not in this one */
    if (partial_bits && t->cols[i].type == MY_T_JSON && my_bit(r->present_before, i))
      partial = my_bit(partial_bits, json_k++);
    if (!my_bit(present, i)) {
      vals[i].kind = OD_VALUE_UNCHANGED;
      continue;
    }
    if (my_bit(nulls, k++)) {
      vals[i].kind = OD_VALUE_NULL;
      continue;
    }
    if (partial) return partial_json(r, t, &t->cols[i], err);
    uint32_t len;
    int rc = my_value_decode(t, &t->cols[i], &r->p, r->end, vb, &offs[i], &len, err);
    if (rc != OD_OK) return rc;
    vals[i].kind = OD_VALUE_TEXT;
    vals[i].len = len;
  }
  return OD_OK;
}

/* PARTIAL_UPDATE_ROWS: before each after image, value_options (packed; bit 0 PARTIAL_JSON_UPDATES)
 * and, when that bit is set, the partial bits (one per JSON column of the before image). */
static int value_options(my_rows *r, const my_table *t, const uint8_t **partial_bits, od_error *err) {
  uint64_t opts;
  if (!my_packed(&r->p, r->end, &opts))
    return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: PARTIAL_UPDATE_ROWS row truncated (value_options)", t->db, t->name);
  if (!(opts & 1)) return OD_OK;
  int njson = 0;
  for (int i = 0; i < r->ncols; i++) njson += t->cols[i].type == MY_T_JSON && my_bit(r->present_before, i);
  size_t nb = (size_t)(njson + 7) / 8;
  if ((size_t)(r->end - r->p) < nb)
    return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: PARTIAL_UPDATE_ROWS row truncated (partial bits)", t->db, t->name);
  *partial_bits = r->p;
  r->p += nb;
  return OD_OK;
}

int my_rows_next(my_rows *r, const my_table *t, my_valbuf *vb, od_tuple *before, od_tuple *after, od_error *err) {
  before->ncolumns = after->ncolumns = 0;
  before->values = after->values = NULL;
  if (r->p >= r->end) return 0;
  if (r->ncols != t->ncols)
    return OD_FAIL(err, OD_EPROTOCOL, "table %s.%s: rows event has %d columns, its table map %d", t->db, t->name,
                   r->ncols, t->ncols);
  if (grow(vb, 2 * r->ncols) != 0) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  vb->len = 0;
  od_value *bv = vb->vals, *av = vb->vals + r->ncols;
  size_t *bo = vb->offs, *ao = vb->offs + r->ncols;
  int rc;
  if (r->op != OD_OP_INSERT && (rc = read_image(r, t, r->present_before, NULL, vb, bv, bo, err)) != OD_OK) return rc;
  const uint8_t *partial_bits = NULL;
  if (r->partial && (rc = value_options(r, t, &partial_bits, err)) != OD_OK) return rc;
  if (r->op != OD_OP_DELETE && (rc = read_image(r, t, r->present_after, partial_bits, vb, av, ao, err)) != OD_OK)
    return rc;
  /* The buffer is final now: point the values into it. */
  for (int i = 0; i < r->ncols; i++) {
    if (r->op != OD_OP_INSERT && bv[i].kind == OD_VALUE_TEXT) bv[i].data = vb->buf + bo[i];
    if (r->op != OD_OP_DELETE && av[i].kind == OD_VALUE_TEXT) av[i].data = vb->buf + ao[i];
  }
  if (r->op != OD_OP_INSERT) {
    before->ncolumns = (uint16_t)r->ncols;
    before->values = bv;
  }
  if (r->op != OD_OP_DELETE) {
    after->ncolumns = (uint16_t)r->ncols;
    after->values = av;
  }
  return 1;
}
