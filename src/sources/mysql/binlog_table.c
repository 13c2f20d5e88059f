/* sources/mysql/binlog_table.c — TABLE_MAP events: a table's binlog id and its columns.
 *
 * Owns: parsing of the table map (database, table, column types, per-type metadata, nullability)
 * and of its optional metadata (binlog_row_metadata=MINIMAL|FULL: signedness, character sets,
 * column names, ENUM/SET labels, primary key), and freeing what it allocates.
 * Never touches: row images (binlog_rows.c), information_schema (the source fills the gaps).
 */
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/binlog.h"
#include "sources/mysql/binlog_bytes.h"

enum { OPT_SIGNEDNESS = 1, OPT_DEFAULT_CHARSET, OPT_COLUMN_CHARSET, OPT_COLUMN_NAME, OPT_SET_STR_VALUE,
       OPT_ENUM_STR_VALUE, OPT_GEOMETRY_TYPE, OPT_SIMPLE_PRIMARY_KEY, OPT_PRIMARY_KEY_WITH_PREFIX,
       OPT_ENUM_AND_SET_DEFAULT_CHARSET, OPT_ENUM_AND_SET_COLUMN_CHARSET };

void my_table_free(my_table *t) {
  if (!t) return;
  for (int i = 0; i < t->ncols; i++) {
    my_column *c = &t->cols[i];
    free(c->name);
    free(c->column_type);
    for (int k = 0; k < c->nlabels; k++) free(c->labels[k]);
    free(c->labels);
  }
  free(t->cols);
  free(t->db);
  free(t->name);
  free(t);
}

static char *dupn(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

static bool is_numeric(const my_column *c) {
  switch (c->type) {
    case MY_T_TINY: case MY_T_SHORT: case MY_T_INT24: case MY_T_LONG: case MY_T_LONGLONG:
    case MY_T_NEWDECIMAL: case MY_T_FLOAT: case MY_T_DOUBLE: case MY_T_DECIMAL:
      return true;
    default:
      return false;
  }
}

static bool is_enum_set(const my_column *c) { return c->real_type == MY_T_ENUM || c->real_type == MY_T_SET; }

static bool is_character(const my_column *c) {
  switch (c->type) {
    case MY_T_STRING: return !is_enum_set(c);
    case MY_T_VAR_STRING: case MY_T_VARCHAR: case MY_T_BLOB: case MY_T_TINY_BLOB: case MY_T_MEDIUM_BLOB:
    case MY_T_LONG_BLOB:
      return true;
    default:
      return false;
  }
}

/* Column metadata of the table map: how many bytes each type has, and what they mean. */
static int read_meta(my_column *c, const uint8_t **p, const uint8_t *end) {
  const uint8_t *q = *p;
  switch (c->type) {
    case MY_T_FLOAT: case MY_T_DOUBLE: case MY_T_BLOB: case MY_T_TINY_BLOB: case MY_T_MEDIUM_BLOB:
    case MY_T_LONG_BLOB: case MY_T_GEOMETRY: case MY_T_JSON: case MY_T_TIMESTAMP2: case MY_T_DATETIME2:
    case MY_T_TIME2:
      if (end - q < 1) return -1;
      c->length = q[0];
      *p = q + 1;
      return 0;
    case MY_T_VARCHAR: case MY_T_VAR_STRING:
      if (end - q < 2) return -1;
      c->length = my_u16(q);
      *p = q + 2;
      return 0;
    case MY_T_BIT:
      if (end - q < 2) return -1;
      c->length = (uint32_t)q[1] * 8 + q[0];
      *p = q + 2;
      return 0;
    case MY_T_NEWDECIMAL:
      if (end - q < 2) return -1;
      c->precision = q[0];
      c->scale = q[1];
      *p = q + 2;
      return 0;
    case MY_T_STRING: case MY_T_ENUM: case MY_T_SET: {
      if (end - q < 2) return -1;
      uint8_t b0 = q[0], b1 = q[1];
      /* CHAR(n) longer than 255 bytes keeps the length's high bits, inverted, in bits 4-5. */
      if ((b0 & 0x30) != 0x30) {
        c->real_type = b0 | 0x30;
        c->length = (uint32_t)(((b0 & 0x30) ^ 0x30) << 4) | b1;
      } else {
        c->real_type = b0;
        c->length = b1;
      }
      if (c->type != MY_T_STRING) c->real_type = c->type;
      *p = q + 2;
      return 0;
    }
    default:
      return 0;
  }
}

static int set_labels(my_column *c, const uint8_t **p, const uint8_t *end) {
  uint64_t n, len;
  if (!my_packed(p, end, &n) || n > 65535) return -1;
  c->labels = calloc(n ? n : 1, sizeof *c->labels);
  if (!c->labels) return -1;
  for (uint64_t k = 0; k < n; k++) {
    if (!my_packed(p, end, &len) || (uint64_t)(end - *p) < len) return -1;
    if (!(c->labels[k] = dupn(*p, len))) return -1;
    c->nlabels++;
    *p += len;
  }
  return 0;
}

/* Charset TLVs: a default collation then (index, collation) exceptions, or one per column. */
static int read_charsets(my_table *t, bool enumset, bool per_column, const uint8_t *p, const uint8_t *end) {
  uint64_t def = 0, v, idx;
  if (!per_column && !my_packed(&p, end, &def)) return -1;
  int k = 0;
  for (int i = 0; i < t->ncols; i++) {
    my_column *c = &t->cols[i];
    if (enumset ? !is_enum_set(c) : !is_character(c)) continue;
    if (per_column) {
      if (!my_packed(&p, end, &v)) return -1;
      c->charset = (uint8_t)my_charset_of_collation((unsigned)v);
    } else {
      c->charset = (uint8_t)my_charset_of_collation((unsigned)def);
    }
    k++;
  }
  while (!per_column && p < end) {
    if (!my_packed(&p, end, &idx) || !my_packed(&p, end, &v)) return -1;
    int seen = 0;
    for (int i = 0; i < t->ncols; i++) {
      my_column *c = &t->cols[i];
      if (enumset ? !is_enum_set(c) : !is_character(c)) continue;
      if ((uint64_t)seen++ == idx) c->charset = (uint8_t)my_charset_of_collation((unsigned)v);
    }
  }
  (void)k;
  return 0;
}

static int read_optional(my_table *t, const uint8_t *p, const uint8_t *end) {
  bool names = false;
  while (p < end) {
    uint8_t type = *p++;
    uint64_t len;
    if (!my_packed(&p, end, &len) || (uint64_t)(end - p) < len) return -1;
    const uint8_t *v = p, *vend = p + len;
    p = vend;
    switch (type) {
      case OPT_SIGNEDNESS: {
        int k = 0;
        for (int i = 0; i < t->ncols; i++) {
          if (!is_numeric(&t->cols[i])) continue;
          if (k / 8 >= (int)len) return -1;
          t->cols[i].is_unsigned = v[k / 8] >> (7 - k % 8) & 1;
          k++;
        }
        break;
      }
      case OPT_DEFAULT_CHARSET: case OPT_COLUMN_CHARSET:
        if (read_charsets(t, false, type == OPT_COLUMN_CHARSET, v, vend) != 0) return -1;
        break;
      case OPT_ENUM_AND_SET_DEFAULT_CHARSET: case OPT_ENUM_AND_SET_COLUMN_CHARSET:
        if (read_charsets(t, true, type == OPT_ENUM_AND_SET_COLUMN_CHARSET, v, vend) != 0) return -1;
        break;
      case OPT_COLUMN_NAME:
        for (int i = 0; i < t->ncols; i++) {
          uint64_t n;
          if (!my_packed(&v, vend, &n) || (uint64_t)(vend - v) < n) return -1;
          if (!(t->cols[i].name = dupn(v, n))) return -1;
          v += n;
        }
        names = true;
        break;
      case OPT_SET_STR_VALUE: case OPT_ENUM_STR_VALUE:
        for (int i = 0; i < t->ncols; i++) {
          my_column *c = &t->cols[i];
          if (c->real_type != (type == OPT_SET_STR_VALUE ? MY_T_SET : MY_T_ENUM)) continue;
          if (set_labels(c, &v, vend) != 0) return -1;
        }
        break;
      case OPT_SIMPLE_PRIMARY_KEY: case OPT_PRIMARY_KEY_WITH_PREFIX:
        while (v < vend) {
          uint64_t idx, prefix;
          if (!my_packed(&v, vend, &idx) || idx >= (uint64_t)t->ncols) return -1;
          if (type == OPT_PRIMARY_KEY_WITH_PREFIX && !my_packed(&v, vend, &prefix)) return -1;
          t->cols[idx].key = true;
          t->has_key = true;
        }
        break;
      default:
        break; /* geometry types, visibility, ...: not needed */
    }
  }
  t->full_metadata = names;
  return 0;
}

int my_table_map_parse(const my_format *f, const my_event *ev, my_table **out, od_error *err) {
  size_t ph = f->post_header[MY_EV_TABLE_MAP] ? f->post_header[MY_EV_TABLE_MAP] : 8;
  const uint8_t *p = ev->body, *end = ev->body + ev->body_len;
  if (ev->body_len < ph + 2) return OD_FAIL(err, OD_EPROTOCOL, "TABLE_MAP event too short");
  my_table *t = calloc(1, sizeof *t);
  if (!t) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  t->id = ph == 6 ? my_u32(p) : my_u48(p);
  p += ph;
  uint64_t n;
  size_t dl = *p++;
  if ((size_t)(end - p) < dl + 2) goto bad;
  t->db = dupn(p, dl);
  p += dl + 1;
  size_t tl = *p++;
  if ((size_t)(end - p) < tl + 1) goto bad;
  t->name = dupn(p, tl);
  p += tl + 1;
  if (!t->db || !t->name) goto oom;
  if (!my_packed(&p, end, &n) || n == 0 || n > 4096 || (uint64_t)(end - p) < n) goto bad;
  t->ncols = (int)n;
  if (!(t->cols = calloc(n, sizeof *t->cols))) goto oom;
  for (int i = 0; i < t->ncols; i++) {
    t->cols[i].type = p[i];
    t->cols[i].real_type = p[i];
  }
  p += n;
  uint64_t mlen;
  if (!my_packed(&p, end, &mlen) || (uint64_t)(end - p) < mlen) goto bad;
  const uint8_t *m = p, *mend = p + mlen;
  for (int i = 0; i < t->ncols; i++)
    if (read_meta(&t->cols[i], &m, mend) != 0) goto bad;
  p = mend;
  size_t nb = (size_t)(t->ncols + 7) / 8;
  if ((size_t)(end - p) < nb) goto bad;
  for (int i = 0; i < t->ncols; i++) t->cols[i].nullable = my_bit(p, i);
  p += nb;
  if (read_optional(t, p, end) != 0) goto bad;
  *out = t;
  return OD_OK;
bad:
  OD_FAIL(err, OD_EPROTOCOL, "TABLE_MAP event at offset %u (table %s.%s) is malformed", ev->log_pos,
          t->db ? t->db : "?", t->name ? t->name : "?");
  my_table_free(t);
  return OD_EPROTOCOL;
oom:
  my_table_free(t);
  return OD_FAIL(err, OD_ENOMEM, "out of memory");
}
