/* sources/mysql/binlog_event.c — framing of binlog events and the small ones.
 *
 * Owns: the 19-byte common header, the CRC32 trailer, FORMAT_DESCRIPTION, ROTATE, GTID,
 * GTID_LIST, XID and QUERY bodies. Layouts are the MariaDB server's (sql/log_event.h); all
 * integers little-endian.
 * Never touches: table maps and rows (binlog_table.c, binlog_rows.c), connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sources/mysql/binlog.h"
#include "sources/mysql/binlog_bytes.h"

/* The binlog's CRC32 is zlib's (the IEEE polynomial, reflected); zlib's is table-sliced, several
 * times faster than a byte-at-a-time loop, and checking every event is on the hot path. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) { /* zlib takes a uInt length */
    uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, step);
    p += step;
    n -= step;
  }
  return (uint32_t)c;
}

void my_format_init(my_format *f, bool checksum) {
  memset(f, 0, sizeof *f);
  f->checksum = checksum;
  f->header_len = MY_HEADER_LEN;
  f->post_header[MY_EV_QUERY] = 13;
  f->post_header[MY_EV_ROTATE] = 8;
  f->post_header[MY_EV_FORMAT] = 84;
  f->post_header[MY_EV_TABLE_MAP] = 8;
  for (int t = MY_EV_WRITE_V1; t <= MY_EV_DELETE_V1; t++) f->post_header[t] = 8;
  for (int t = MY_EV_WRITE_V2; t <= MY_EV_DELETE_V2; t++) f->post_header[t] = 10;
  for (int t = MY_EV_WRITE_COMPRESSED_V1; t <= MY_EV_DELETE_COMPRESSED_V1; t++) f->post_header[t] = 8;
  for (int t = MY_EV_WRITE_COMPRESSED_V2; t <= MY_EV_DELETE_COMPRESSED_V2; t++) f->post_header[t] = 10;
  f->post_header[MY_EV_QUERY_COMPRESSED] = 13;
  f->post_header[MY_EV_GTID] = 19;
}

int my_event_parse(const my_format *f, const uint8_t *buf, size_t len, my_event *ev, od_error *err) {
  if (len < MY_HEADER_LEN)
    return OD_FAIL(err, OD_EPROTOCOL, "binlog event of %zu bytes is shorter than its header", len);
  ev->timestamp = my_u32(buf);
  ev->type = buf[4];
  ev->server_id = my_u32(buf + 5);
  ev->size = my_u32(buf + 9);
  ev->log_pos = my_u32(buf + 13);
  ev->flags = my_u16(buf + 17);
  if (ev->size != len)
    return OD_FAIL(err, OD_EPROTOCOL, "binlog event type %u at offset %u: header says %u bytes, got %zu",
                   ev->type, ev->log_pos, ev->size, len);
  size_t hl = f->header_len ? f->header_len : MY_HEADER_LEN;
  size_t tail = f->checksum ? 4 : 0;
  if (len < hl + tail)
    return OD_FAIL(err, OD_EPROTOCOL, "binlog event type %u at offset %u: %zu bytes, too short", ev->type,
                   ev->log_pos, len);
  if (tail) {
    uint32_t want = my_u32(buf + len - 4), got = crc32_of(buf, len - 4);
    if (want != got)
      return OD_FAIL(err, OD_EPROTOCOL,
                     "binlog event type %u at offset %u: checksum mismatch (CRC32 %08x, computed %08x)",
                     ev->type, ev->log_pos, want, got);
  }
  ev->body = buf + hl;
  ev->body_len = len - hl - tail;
  return OD_OK;
}

int my_format_parse(my_format *f, const uint8_t *buf, size_t len, od_error *err) {
  /* binlog_version(2) server_version(50) create_timestamp(4) header_length(1) post-header
   * lengths(n) checksum_alg(1) crc(4) */
  if (len < MY_HEADER_LEN + 57 + 5 || buf[4] != MY_EV_FORMAT)
    return OD_FAIL(err, OD_EPROTOCOL, "FORMAT_DESCRIPTION event of %zu bytes is malformed", len);
  const uint8_t *b = buf + MY_HEADER_LEN;
  uint8_t alg = buf[len - 5];
  my_format nf;
  my_format_init(&nf, alg == 1);
  if (alg != 0 && alg != 1)
    return OD_FAIL(err, OD_EUNSUPPORTED, "binlog checksum algorithm %u is not supported (CRC32 or NONE)", alg);
  memcpy(nf.server_version, b + 2, 50);
  nf.server_version[50] = '\0';
  nf.header_len = b[56];
  if (nf.header_len < MY_HEADER_LEN)
    return OD_FAIL(err, OD_EPROTOCOL, "FORMAT_DESCRIPTION: header length %u < 19", nf.header_len);
  size_t n = len - MY_HEADER_LEN - 57 - 5;
  for (size_t i = 0; i < n && i < 255; i++) nf.post_header[i + 1] = b[57 + i];
  if (alg == 1) {
    uint32_t want = my_u32(buf + len - 4), got = crc32_of(buf, len - 4);
    if (want != got)
      return OD_FAIL(err, OD_EPROTOCOL, "FORMAT_DESCRIPTION: checksum mismatch (CRC32 %08x, computed %08x)",
                     want, got);
  }
  *f = nf;
  return OD_OK;
}

int my_rotate_parse(const my_event *ev, my_rotate *out, od_error *err) {
  if (ev->body_len < 8) return OD_FAIL(err, OD_EPROTOCOL, "ROTATE event too short");
  out->pos = my_u64(ev->body);
  size_t n = ev->body_len - 8;
  if (n == 0 || n >= sizeof out->file)
    return OD_FAIL(err, OD_EPROTOCOL, "ROTATE event: binlog file name of %zu bytes", n);
  memcpy(out->file, ev->body + 8, n);
  out->file[n] = '\0';
  return OD_OK;
}

int my_gtid_parse(const my_event *ev, my_gtid *out, od_error *err) {
  if (ev->body_len < 13) return OD_FAIL(err, OD_EPROTOCOL, "GTID event too short");
  out->seq = my_u64(ev->body);
  out->domain = my_u32(ev->body + 8);
  out->flags = ev->body[12];
  out->server = ev->server_id;
  return OD_OK;
}

int my_gtid_list_parse(const my_event *ev, my_gtid *out, int cap, int *n, od_error *err) {
  if (ev->body_len < 4) return OD_FAIL(err, OD_EPROTOCOL, "GTID_LIST event too short");
  uint32_t count = my_u32(ev->body) & 0x0FFFFFFF;
  if (ev->body_len < 4 + (size_t)count * 16) return OD_FAIL(err, OD_EPROTOCOL, "GTID_LIST event truncated");
  for (uint32_t i = 0; i < count && (int)i < cap; i++) {
    const uint8_t *p = ev->body + 4 + i * 16;
    out[i].domain = my_u32(p);
    out[i].server = my_u32(p + 4);
    out[i].seq = my_u64(p + 8);
    out[i].flags = 0;
  }
  *n = (int)count;
  return OD_OK;
}

int my_xid_parse(const my_event *ev, uint64_t *xid, od_error *err) {
  if (ev->body_len < 8) return OD_FAIL(err, OD_EPROTOCOL, "XID event too short");
  *xid = my_u64(ev->body);
  return OD_OK;
}

int my_query_parse(const my_format *f, const my_event *ev, my_query *out, od_error *err) {
  size_t ph = f->post_header[ev->type] ? f->post_header[ev->type] : 13;
  if (ev->body_len < ph) return OD_FAIL(err, OD_EPROTOCOL, "QUERY event too short");
  size_t db_len = ev->body[8];
  size_t status_len = my_u16(ev->body + 11);
  size_t off = ph + status_len;
  if (off + db_len + 1 > ev->body_len) return OD_FAIL(err, OD_EPROTOCOL, "QUERY event truncated");
  out->db = (const char *)ev->body + off;
  out->db_len = db_len;
  off += db_len + 1;
  out->sql = (const char *)ev->body + off;
  out->sql_len = ev->body_len - off;
  out->inflated = NULL;
  if (ev->type == MY_EV_QUERY_COMPRESSED) {
    size_t n;
    if (my_inflate(ev->body + off, ev->body + ev->body_len, &out->inflated, &n) != 0)
      return OD_FAIL(err, OD_EPROTOCOL, "compressed QUERY event at offset %u: bad header or corrupt zlib data",
                     ev->log_pos);
    out->sql = (const char *)out->inflated;
    out->sql_len = n;
  }
  return OD_OK;
}

void my_query_free(my_query *q) {
  free(q->inflated);
  q->inflated = NULL;
}

uint64_t my_event_table_id(const my_format *f, const my_event *ev) {
  (void)f;
  if (ev->body_len < 6) return 0;
  return my_u48(ev->body);
}
