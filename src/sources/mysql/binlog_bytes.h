/* sources/mysql/binlog_bytes.h — reading the integers of binlog events (internal).
 *
 * Owns: little-endian and big-endian loads, MySQL's packed ("length-encoded") integers, bitmaps.
 * Never touches: anything but the bytes it is given.
 */
#ifndef ODSYNC_MYSQL_BINLOG_BYTES_H
#define ODSYNC_MYSQL_BINLOG_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline uint16_t my_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t my_u24(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16; }
static inline uint32_t my_u32(const uint8_t *p) { return my_u24(p) | (uint32_t)p[3] << 24; }
static inline uint64_t my_u48(const uint8_t *p) { return my_u32(p) | (uint64_t)my_u16(p + 4) << 32; }
static inline uint64_t my_u64(const uint8_t *p) { return my_u32(p) | (uint64_t)my_u32(p + 4) << 32; }
/* Little-endian unsigned of n bytes (n <= 8). */
static inline uint64_t my_ule(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
/* Big-endian unsigned of n bytes (n <= 8). */
static inline uint64_t my_ube(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* A packed integer at *p (moved past it); false when it runs past end or is the NULL marker. */
static inline bool my_packed(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  const uint8_t *q = *p;
  if (q >= end) return false;
  int n;
  if (*q < 0xfb) { *out = *q; *p = q + 1; return true; }
  if (*q == 0xfc) n = 2;
  else if (*q == 0xfd) n = 3;
  else if (*q == 0xfe) n = 8;
  else return false;
  if (end - q < 1 + n) return false;
  *out = my_ule(q + 1, n);
  *p = q + 1 + n;
  return true;
}

static inline bool my_bit(const uint8_t *bitmap, int i) { return bitmap[i / 8] >> (i % 8) & 1; }

#endif
