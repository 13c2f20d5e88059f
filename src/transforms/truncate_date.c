/* truncate_date.c — the truncate_date transform: date and timestamp columns reach the sink cut down
 * to a unit (year, month, day, hour or minute; default day), e.g. a birth date kept to its year.
 *
 *   transforms:
 *     - { type: truncate_date, columns: [birth_date], unit: year }   # 1984-07-12 -> 1984-01-01
 *
 * Works on the ISO text form PostgreSQL writes (DateStyle ISO): date, timestamp, timestamptz. A
 * timestamptz is cut in the offset the value was written in, and the offset is kept; fractional
 * seconds go; "infinity"/"-infinity" and BC dates pass with the same rule. The column keeps its type.
 * A column of another type, or a key column, is refused when the table is first seen (the error
 * names table and column). Owns: its unit. Never touches: unselected columns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "transforms/rewrite.h"

enum unit { YEAR, MONTH, DAY, HOUR, MINUTE };

typedef struct trunc_date {
  tx_rewrite r;
  enum unit unit;
} trunc_date;

extern const od_transform_ops od_transform_truncate_date;
static const char *const keys[] = {"unit", NULL};

static int td_open(tx_rewrite *r, const od_config_section *cfg, od_error *err) {
  const char *u;
  int rc = od_config_string(cfg, "unit", "day", &u, err);
  if (rc) return rc;
  static const char *const names[] = {"year", "month", "day", "hour", "minute"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(u, names[i])) {
      ((trunc_date *)r)->unit = (enum unit)i;
      return OD_OK;
    }
  const od_config_entry *e = od_config_find(cfg, "unit");
  return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.unit: '%s' is not a unit (year, month, day, hour, minute)", cfg->file,
                 e->line, e->col, cfg->path, u);
}

static int td_column(tx_rewrite *r, const od_relation *rel, const od_column *c, od_error *err) {
  (void)r;
  if (c->type_oid == OD_PGT_DATE || c->type_oid == OD_PGT_TIMESTAMP || c->type_oid == OD_PGT_TIMESTAMPTZ)
    return OD_OK;
  char type[160];
  if (c->type_name[0]) snprintf(type, sizeof type, "%s", c->type_name);
  else snprintf(type, sizeof type, "oid %u", (unsigned)c->type_oid);
  return OD_FAIL(err, OD_ECONFIG, "column %s of %s.%s is of type %s; truncate_date takes date, timestamp or "
                 "timestamptz columns", c->name, rel->schema, rel->name, type);
}

static bool digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

static int td_value(tx_rewrite *r, const od_column *c, const od_value *in, od_value *out, od_scratch *s,
                    od_error *err) {
  (void)c;
  enum unit u = ((trunc_date *)r)->unit;
  const char *v = in->data;
  size_t n = in->len, y = 0;
  if (!n || v[0] < '0' || v[0] > '9') { /* infinity, -infinity */
    *out = *in;
    return OD_OK;
  }
  while (y < n && v[y] >= '0' && v[y] <= '9') y++;
  /* YYYY-MM-DD at v[0..y+6) */
  if (y < 4 || n < y + 6 || v[y] != '-' || v[y + 3] != '-' || !digits(v + y + 1, 2) || !digits(v + y + 4, 2))
    return OD_FAIL(err, OD_EINVAL, "truncate_date: the value is not an ISO date/time (is the source's DateStyle ISO?)");
  char *o = s->alloc(s, n + 1);
  if (!o) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  size_t d = y + 6, k;
  memcpy(o, v, d);
  if (u == YEAR) memcpy(o + y + 1, "01-01", 5);
  if (u == MONTH) memcpy(o + y + 4, "01", 2);
  k = d;
  size_t i = d;
  if (i + 9 <= n && v[i] == ' ' && digits(v + i + 1, 2) && v[i + 3] == ':' && digits(v + i + 4, 2) &&
      v[i + 6] == ':' && digits(v + i + 7, 2)) { /* " HH:MM:SS[.ffffff]" */
    memcpy(o + k, v + i, 9);
    if (u <= DAY) memcpy(o + k + 1, "00:00:00", 8);
    if (u == HOUR) memcpy(o + k + 4, "00:00", 5);
    if (u == MINUTE) memcpy(o + k + 7, "00", 2);
    k += 9;
    i += 9;
    if (i < n && v[i] == '.') /* fractional seconds go */
      for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
      }
  }
  memcpy(o + k, v + i, n - i); /* offset, " BC" */
  k += n - i;
  o[k] = '\0';
  *out = (od_value){.data = o, .len = (uint32_t)k, .kind = OD_VALUE_TEXT};
  return OD_OK;
}

static const tx_rewrite_kind kind = {
    .ops = &od_transform_truncate_date,
    .size = sizeof(trunc_date),
    .keys = keys,
    .key_allowed = false,
    .to_text = false,
    .open = td_open,
    .column = td_column,
    .value = td_value,
};

static int open_td(const od_config_section *cfg, od_transform **out, od_error *err) {
  return tx_rewrite_open(cfg, &kind, out, err);
}

const od_transform_ops od_transform_truncate_date = {
    .type = "truncate_date",
    .keeps_values = false,
    .open = open_td,
    .relation = tx_rewrite_relation,
    .change = tx_rewrite_change,
    .close = tx_rewrite_close,
};
