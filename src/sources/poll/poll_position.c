/* sources/poll/poll_position.c — see poll_position.h. */
#include "sources/poll/poll_position.h"

#include <ctype.h>
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
  if (!p || p->kind != &od_pgpoll_position || p->len != 17 || p->data[0] == 'i') return 0;
  uint64_t x = 0;
  for (int i = 0; i < 8; i++) x = (x << 8) | p->data[9 + i];
  return x;
}

od_pos od_pgpoll_load_pos(uint64_t seq, uint64_t horizon, uint16_t table, const char *key, size_t keylen) {
  od_pos p = od_pgpoll_pos('i', seq);
  if (keylen == 0 || keylen > OD_PGPOLL_LOAD_KEY_MAX) return p;
  for (int i = 0; i < 8; i++) p.data[9 + i] = (uint8_t)(horizon >> (56 - 8 * i));
  p.data[17] = (uint8_t)(table >> 8);
  p.data[18] = (uint8_t)table;
  memcpy(p.data + 19, key, keylen);
  p.len = (uint16_t)(19 + keylen);
  return p;
}

bool od_pgpoll_load_resume(const od_pos *p, uint64_t *horizon, uint16_t *table, const uint8_t **key, size_t *keylen) {
  if (!p || p->kind != &od_pgpoll_position || p->len < 20 || p->data[0] != 'i') return false;
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h = (h << 8) | p->data[9 + i];
  *horizon = h;
  *table = (uint16_t)(p->data[17] << 8 | p->data[18]);
  *key = p->data + 19;
  *keylen = (size_t)p->len - 19;
  return true;
}

bool od_pgpoll_get(const od_pos *p, char *mode, uint64_t *v) {
  if (!p || p->kind != &od_pgpoll_position || (p->len != 9 && p->len != 17 && (p->len < 20 || p->data[0] != 'i')))
    return false;
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
  uint64_t seq = od_pgpoll_seq(p), h;
  uint16_t table;
  const uint8_t *key;
  size_t keylen;
  if (od_pgpoll_load_resume(p, &h, &table, &key, &keylen)) { /* load:<k>@<horizon>/<table>/<key hex> */
    int n = snprintf(buf, size, "load:%" PRIu64 "@%" PRIu64 "/%u/", v, h, (unsigned)table);
    if (n < 0 || (size_t)n + 2 * keylen >= size) return -1;
    for (size_t i = 0; i < keylen; i++) n += snprintf(buf + n, size - (size_t)n, "%02x", key[i]);
    return n;
  }
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

static int parse_load_resume(const char *body, od_pos *out) {
  char *end = NULL;
  if (strncmp(body, "load:", 5) || body[5] < '0' || body[5] > '9') return OD_EINVAL;
  unsigned long long seq = strtoull(body + 5, &end, 10);
  if (*end != '@' || end[1] < '0' || end[1] > '9') return OD_EINVAL;
  unsigned long long h = strtoull(end + 1, &end, 10);
  if (*end != '/' || end[1] < '0' || end[1] > '9') return OD_EINVAL;
  unsigned long table = strtoul(end + 1, &end, 10);
  if (*end != '/' || table > 65535) return OD_EINVAL;
  const char *hex = end + 1;
  size_t n = strlen(hex);
  if (!n || n % 2 || n / 2 > OD_PGPOLL_LOAD_KEY_MAX) return OD_EINVAL;
  uint8_t key[OD_PGPOLL_LOAD_KEY_MAX];
  for (size_t i = 0; i < n / 2; i++) {
    unsigned b;
    if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
        sscanf(hex + 2 * i, "%2x", &b) != 1)
      return OD_EINVAL;
    key[i] = (uint8_t)b;
  }
  *out = od_pgpoll_load_pos(seq, h, (uint16_t)table, (const char *)key, n / 2);
  return OD_OK;
}

/* "<mode>:<v>", "<mode>:<v>+<seq>" or "load:<k>@<horizon>/<table>/<key hex>". */
static int poll_parse(const char *body, od_pos *out) {
  if (strchr(body, '@')) return parse_load_resume(body, out);
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
