/* sources/mysql/mytrig_position.c — the position kind "mytrig" of `type: mariadb_trigger`
 * (see mytrig.h). Owns nothing. Never touches I/O. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "sources/mysql/mytrig.h"

static int mt_format(const od_pos *p, char *buf, size_t size) {
  int n = snprintf(buf, size, "%" PRIu64, od_pos_to_u64(p));
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int mt_parse(const char *body, od_pos *out) {
  if (!*body || *body == '-' || *body == '+') return OD_EINVAL;
  char *end = NULL;
  unsigned long long v = strtoull(body, &end, 10);
  if (*end) return OD_EINVAL;
  *out = od_pos_from_u64(&od_mytrig_position, v);
  return OD_OK;
}

static uint64_t mt_version(const od_pos *p) { return od_pos_to_u64(p); }

const od_pos_kind od_mytrig_position = {
    .name = "mytrig", .compare = NULL, .format = mt_format, .parse = mt_parse, .version = mt_version};
