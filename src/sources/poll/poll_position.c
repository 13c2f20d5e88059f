/* sources/poll/poll_position.c — see poll_position.h. */
#include "sources/poll/poll_position.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

od_pos od_pgpoll_pos(char mode, uint64_t v) {
  od_pos p = {0};
  p.kind = &od_pgpoll_position;
  p.len = 9;
  p.data[0] = (uint8_t)mode;
  for (int i = 0; i < 8; i++) p.data[1 + i] = (uint8_t)(v >> (56 - 8 * i));
  return p;
}

od_pos od_pgpoll_pos_seq(char mode, uint64_t v, uint64_t seq) {
  od_pos p = od_pgpoll_pos(mode, v);
  if (!seq) return p;
  p.len = 17;
  for (int i = 0; i < 8; i++) p.data[9 + i] = (uint8_t)(seq >> (56 - 8 * i));
  return p;
}

uint64_t od_pgpoll_seq(const od_pos *p) {
  if (!p || p->kind != &od_pgpoll_position || p->len != 17) return 0;
  uint64_t x = 0;
  for (int i = 0; i < 8; i++) x = (x << 8) | p->data[9 + i];
  return x;
}

bool od_pgpoll_get(const od_pos *p, char *mode, uint64_t *v) {
  if (!p || p->kind != &od_pgpoll_position || (p->len != 9 && p->len != 17)) return false;
  uint64_t x = 0;
  for (int i = 0; i < 8; i++) x = (x << 8) | p->data[1 + i];
  *mode = (char)p->data[0];
  *v = x;
  return true;
}

static int poll_format(const od_pos *p, char *buf, size_t size) {
  char mode;
  uint64_t v;
  if (!od_pgpoll_get(p, &mode, &v)) return -1;
  uint64_t seq = od_pgpoll_seq(p);
  int n = seq ? snprintf(buf, size, "%s:%" PRIu64 "+%" PRIu64, mode == 'x' ? "xmin" : mode == 'i' ? "load" : "ts", v, seq)
              : snprintf(buf, size, "%s:%" PRIu64, mode == 'x' ? "xmin" : mode == 'i' ? "load" : "ts", v);
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int parse_u64(const char *s, uint64_t *out) {
  if (!*s || *s == '-' || *s == '+') return OD_EINVAL;
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end) return OD_EINVAL;
  *out = v;
  return OD_OK;
}

static int poll_parse_one(const char *body, od_pos *out) {
  uint64_t v;
  if (!strncmp(body, "xmin:", 5) && !parse_u64(body + 5, &v)) {
    *out = od_pgpoll_pos('x', v);
    return OD_OK;
  }
  if (!strncmp(body, "load:", 5) && !parse_u64(body + 5, &v)) {
    *out = od_pgpoll_pos('i', v);
    return OD_OK;
  }
  if (!strncmp(body, "ts:", 3) && !parse_u64(body + 3, &v)) {
    *out = od_pgpoll_pos('t', v);
    return OD_OK;
  }
  return OD_EINVAL;
}

/* "<mode>:<v>" or "<mode>:<v>+<seq>". */
static int poll_parse(const char *body, od_pos *out) {
  const char *plus = strchr(body, '+');
  if (!plus) return poll_parse_one(body, out);
  char head[64];
  uint64_t seq;
  if ((size_t)(plus - body) >= sizeof head || parse_u64(plus + 1, &seq) || !seq) return OD_EINVAL;
  memcpy(head, body, (size_t)(plus - body));
  head[plus - body] = '\0';
  int rc = poll_parse_one(head, out);
  if (rc) return rc;
  char mode = 'i';
  uint64_t v = 0;
  if (!od_pgpoll_get(out, &mode, &v) || mode == 'i') return OD_EINVAL;
  *out = od_pgpoll_pos_seq(mode, v, seq);
  return OD_OK;
}

/* Grows with the position: the horizon, then the reconciliation transactions at one horizon
 * (up to 1023 of them apart; a µs timestamp times 1024 still fits in 64 bits). */
static uint64_t poll_version(const od_pos *p) {
  char mode;
  uint64_t v = 0, seq = od_pgpoll_seq(p);
  od_pgpoll_get(p, &mode, &v);
  return v * 1024 + (seq < 1023 ? seq : 1023);
}

const od_pos_kind od_pgpoll_position = {
    .name = "pgpoll", .compare = NULL, .format = poll_format, .parse = poll_parse, .version = poll_version};

static int trig_format(const od_pos *p, char *buf, size_t size) {
  int n = snprintf(buf, size, "%" PRIu64, od_pos_to_u64(p));
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int trig_parse(const char *body, od_pos *out) {
  uint64_t v;
  if (parse_u64(body, &v)) return OD_EINVAL;
  *out = od_pos_from_u64(&od_pgtrig_position, v);
  return OD_OK;
}

static uint64_t trig_version(const od_pos *p) { return od_pos_to_u64(p); }

const od_pos_kind od_pgtrig_position = {
    .name = "pgtrig", .compare = NULL, .format = trig_format, .parse = trig_parse, .version = trig_version};
