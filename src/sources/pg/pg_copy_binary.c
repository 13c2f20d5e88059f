/* pg_copy_binary.c — splitting a message of PostgreSQL's COPY binary format (see pg_copy_binary.h).
 *
 * The format (PostgreSQL docs, "COPY", File Formats / Binary Format): a header — the 11-byte
 * signature "PGCOPY\n\377\r\n\0", a 32-bit flags field (bit 16: OIDs included, which COPY
 * (SELECT ...) never sets), a 32-bit header-extension length and that many bytes — then per row a
 * 16-bit field count and per field a 32-bit length (-1: NULL) followed by that many bytes of the
 * type's send form; a field count of -1 ends the data. All integers are in network byte order.
 * The server sends the header together with the first row, each row in a message of its own, and
 * the trailer in a message of its own (or with the header when there are no rows).
 * Owns nothing; never touches connections.
 */
#include "sources/pg/pg_copy_binary.h"

#include <stdint.h>
#include <string.h>

static const char SIGNATURE[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int od_pg_copy_split_binary(const char *msg, size_t len, bool *header, od_value *out, int max) {
  const unsigned char *p = (const unsigned char *)msg, *end = p + len;
  if (*header) {
    if (len < 19 || memcmp(p, SIGNATURE, sizeof SIGNATURE) != 0) return -1;
    uint32_t flags = get32(p + 11), ext = get32(p + 15);
    if (flags & (UINT32_C(1) << 16)) return -1; /* OIDs: not produced by COPY (SELECT ...) */
    p += 19;
    if ((size_t)(end - p) < ext) return -1;
    p += ext;
    *header = false;
  }
  if (end - p < 2) return -1;
  int16_t nf = (int16_t)((uint16_t)p[0] << 8 | p[1]);
  p += 2;
  if (nf == -1) return p == end ? 0 : -1;
  if (nf < 0) return -1;
  if (nf > max) return max + 1;
  for (int i = 0; i < nf; i++) {
    if (end - p < 4) return -1;
    int32_t flen = (int32_t)get32(p);
    p += 4;
    if (flen == -1) {
      out[i] = (od_value){.data = NULL, .len = 0, .kind = OD_VALUE_NULL};
      continue;
    }
    if (flen < 0 || end - p < flen) return -1;
    out[i] = (od_value){.data = (const char *)p, .len = (uint32_t)flen, .kind = OD_VALUE_BINARY};
    p += flen;
  }
  return p == end ? nf : -1;
}
