/* position.c — see odsync/position.h. Owns nothing but the functions over od_pos values; kinds are
 * the sources' (found through the registry). Never touches I/O. */
#include "odsync/position.h"

#include <stdio.h>
#include <string.h>

#include "odsync/registry.h"

static int bytewise(const od_pos *a, const od_pos *b) {
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->data, b->data, n);
  if (c) return c < 0 ? -1 : 1;
  return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

int od_pos_compare(const od_pos *a, const od_pos *b) {
  bool an = od_pos_is_none(a), bn = od_pos_is_none(b);
  if (an || bn) return an && bn ? 0 : an ? -1 : 1;
  if (a->kind != b->kind) {
    int c = strcmp(a->kind->name, b->kind->name);
    return c < 0 ? -1 : 1;
  }
  return a->kind->compare ? a->kind->compare(a, b) : bytewise(a, b);
}

const char *od_pos_to_text(const od_pos *p, char *buf, size_t size) {
  if (!size) return buf;
  buf[0] = '\0';
  if (od_pos_is_none(p)) return buf;
  int n = snprintf(buf, size, "%s:", p->kind->name);
  if (n < 0 || (size_t)n >= size || p->kind->format(p, buf + n, size - (size_t)n) < 0) buf[0] = '\0';
  return buf;
}

const char *od_pos_display(const od_pos *p, char *buf, size_t size) {
  if (!size) return buf;
  if (od_pos_is_none(p)) {
    snprintf(buf, size, "none");
    return buf;
  }
  if (p->kind->format(p, buf, size) < 0) snprintf(buf, size, "?");
  return buf;
}

int od_pos_from_text(const char *text, od_pos *out, od_error *err) {
  *out = od_pos_none();
  if (!text || !*text) return OD_OK;
  const char *colon = strchr(text, ':');
  char name[32];
  size_t n = colon ? (size_t)(colon - text) : 0;
  if (!colon || n == 0 || n >= sizeof name)
    return OD_FAIL(err, OD_EINVAL, "position '%.80s' has no kind prefix (expected e.g. \"pg:0/16B3748\")", text);
  memcpy(name, text, n);
  name[n] = '\0';
  const od_pos_kind *kind = od_pos_kind_find(name);
  if (!kind)
    return OD_FAIL(err, OD_EINVAL, "position '%.80s': '%s' is not a position kind of any source this odsync knows",
                   text, name);
  od_pos p = {.kind = kind};
  if (kind->parse(colon + 1, &p) != OD_OK)
    return OD_FAIL(err, OD_EINVAL, "position '%.80s' is not a valid %s position", text, name);
  p.kind = kind;
  *out = p;
  return OD_OK;
}

od_pos od_pos_from_u64(const od_pos_kind *kind, uint64_t v) {
  od_pos p = {.kind = kind, .len = 8};
  for (int i = 7; i >= 0; i--) {
    p.data[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
  return p;
}

uint64_t od_pos_to_u64(const od_pos *p) {
  if (od_pos_is_none(p) || p->len != 8) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p->data[i];
  return v;
}

od_pos od_pos_legacy_lsn(uint64_t lsn) {
  const od_pos_kind *pg = od_pos_kind_find("pg");
  if (!lsn || !pg) return od_pos_none();
  return od_pos_from_u64(pg, lsn);
}
