/* pg_position.c — see pg_position.h. */
#include "sources/pg/pg_position.h"

#include <stdio.h>
#include <stdlib.h>

static int pg_pos_format(const od_pos *p, char *buf, size_t size) {
  od_lsn lsn = od_pos_to_u64(p);
  int n = snprintf(buf, size, OD_LSN_FMT, OD_LSN_ARGS(lsn));
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int pg_pos_parse(const char *body, od_pos *out) {
  char *end = NULL;
  unsigned long hi = strtoul(body, &end, 16);
  if (end == body || *end != '/' || hi > 0xffffffffUL) return OD_EINVAL;
  const char *lo_at = end + 1;
  unsigned long lo = strtoul(lo_at, &end, 16);
  if (end == lo_at || *end || lo > 0xffffffffUL) return OD_EINVAL;
  *out = od_pos_from_u64(&od_pg_position, ((uint64_t)hi << 32) | lo);
  return OD_OK;
}

static uint64_t pg_pos_version(const od_pos *p) { return od_pos_to_u64(p); }

const od_pos_kind od_pg_position = {
    .name = "pg",
    .compare = NULL, /* bytewise: big-endian LSNs */
    .format = pg_pos_format,
    .parse = pg_pos_parse,
    .version = pg_pos_version,
};

od_pos od_pg_pos(od_lsn lsn) { return lsn ? od_pos_from_u64(&od_pg_position, lsn) : od_pos_none(); }

od_lsn od_pg_lsn(const od_pos *p) { return od_pos_to_u64(p); }
