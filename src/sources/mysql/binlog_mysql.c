/* sources/mysql/binlog_mysql.c — the events MySQL writes and MariaDB does not.
 *
 * Owns: GTID_LOG_EVENT / ANONYMOUS_GTID_LOG_EVENT bodies (MySQL 5.6 to 8.x: flags, uuid, GNO, the
 * logical clock, commit timestamps, transaction length, server versions, commit ticket) and MySQL's
 * JSON diff list (a PARTIAL_UPDATE_ROWS value). PREVIOUS_GTIDS bodies are GTID sets in their binary
 * form (mysql_gtidset.c, mysql_gtidset_decode); v2 extra row info and PARTIAL_UPDATE_ROWS framing are
 * binlog_rows.c's. Layouts are MySQL's documented ones (libbinlogevents, control_events.h /
 * rows_event.h); all integers little-endian. None of this has met a real MySQL server here (there is
 * none in Debian): tests/unit/test_binlog_mysql.c builds the bytes from those layouts.
 * Never touches: connections, positions, the stream's transaction logic.
 */
#include <string.h>

#include "sources/mysql/binlog.h"
#include "sources/mysql/binlog_bytes.h"

#define GTID_POST_HEADER_56 25 /* flags(1) uuid(16) gno(8) */
#define GTID_POST_HEADER 42    /* ... lt_type(1) last_committed(8) sequence_number(8) */
#define LOGICAL_TIMESTAMP_TYPECODE 2
#define COMMIT_TS_FLAG (1ULL << 55) /* in the 7-byte immediate timestamp: the original one follows */
#define SERVER_VERSION_FLAG (1U << 31)

int my_mysql_gtid_parse(const my_format *f, const my_event *ev, my_mysql_gtid *out, od_error *err) {
  memset(out, 0, sizeof *out);
  if (ev->type != MY_EV_MYSQL_GTID && ev->type != MY_EV_MYSQL_ANON_GTID)
    return OD_FAIL(err, OD_EINVAL, "event type %u is not a MySQL GTID event", ev->type);
  out->anonymous = ev->type == MY_EV_MYSQL_ANON_GTID;
  const uint8_t *p = ev->body, *end = ev->body + ev->body_len;
  if (ev->body_len < GTID_POST_HEADER_56)
    return OD_FAIL(err, OD_EPROTOCOL, "MySQL GTID event at offset %u: %zu bytes, shorter than its post-header",
                   ev->log_pos, ev->body_len);
  out->flags = p[0];
  memcpy(out->uuid, p + 1, 16);
  out->gno = my_u64(p + 17);
  if (!out->anonymous && (out->gno == 0 || out->gno > (uint64_t)INT64_MAX))
    return OD_FAIL(err, OD_EPROTOCOL, "MySQL GTID event at offset %u: transaction number %llu is out of range",
                   ev->log_pos, (unsigned long long)out->gno);
  /* The post-header is as long as the writer's FORMAT_DESCRIPTION says (25 before 5.7); without one,
   * the body tells. */
  size_t ph = f && f->post_header[ev->type] ? f->post_header[ev->type]
                                             : (ev->body_len >= GTID_POST_HEADER ? GTID_POST_HEADER : GTID_POST_HEADER_56);
  if (ph > ev->body_len)
    return OD_FAIL(err, OD_EPROTOCOL, "MySQL GTID event at offset %u: post-header of %zu bytes in a %zu-byte body",
                   ev->log_pos, ph, ev->body_len);
  if (ph >= GTID_POST_HEADER) {
    if (p[25] != LOGICAL_TIMESTAMP_TYPECODE)
      return OD_FAIL(err, OD_EPROTOCOL, "MySQL GTID event at offset %u: logical clock type %u (expected %u)",
                     ev->log_pos, p[25], LOGICAL_TIMESTAMP_TYPECODE);
    out->has_logical_clock = true;
    out->last_committed = (int64_t)my_u64(p + 26);
    out->sequence_number = (int64_t)my_u64(p + 34);
  }
  p += ph;
  /* The body: each field is there only if the writer knew it, in this order. */
  if (end - p >= 7) {
    uint64_t ts = my_ule(p, 7);
    p += 7;
    out->has_commit_ts = true;
    out->immediate_commit_ts = ts & ~COMMIT_TS_FLAG;
    out->original_commit_ts = out->immediate_commit_ts;
    if (ts & COMMIT_TS_FLAG) {
      if (end - p < 7) goto truncated;
      out->original_commit_ts = my_ule(p, 7);
      p += 7;
    }
    if (p < end) {
      if (!my_packed(&p, end, &out->transaction_length)) goto truncated;
      out->has_length = true;
    }
    if (end - p >= 4) {
      uint32_t v = my_u32(p);
      p += 4;
      out->has_server_version = true;
      out->immediate_server_version = v & ~SERVER_VERSION_FLAG;
      out->original_server_version = out->immediate_server_version;
      if (v & SERVER_VERSION_FLAG) {
        if (end - p < 4) goto truncated;
        out->original_server_version = my_u32(p);
        p += 4;
      }
    }
    if (end - p >= 8) {
      out->has_ticket = true;
      out->commit_group_ticket = my_u64(p);
      p += 8;
    }
  }
  if (p != end)
    return OD_FAIL(err, OD_EPROTOCOL, "MySQL GTID event at offset %u: %zu bytes left after its last field",
                   ev->log_pos, (size_t)(end - p));
  return OD_OK;
truncated:
  return OD_FAIL(err, OD_EPROTOCOL, "MySQL GTID event at offset %u: truncated body", ev->log_pos);
}

int my_json_diffs_parse(const uint8_t *p, const uint8_t *end, size_t *used, my_json_diff_fn fn, void *ctx) {
  if (end - p < 4) return -1;
  uint32_t total = my_u32(p);
  const uint8_t *q = p + 4;
  if ((size_t)(end - q) < total) return -1;
  const uint8_t *stop = q + total;
  while (q < stop) {
    int op = *q++;
    if (op > 2) return -1;
    uint64_t plen, vlen = 0;
    if (!my_packed(&q, stop, &plen) || plen == 0 || plen > (uint64_t)(stop - q)) return -1;
    const char *path = (const char *)q;
    q += plen;
    const uint8_t *value = NULL;
    if (op != 2) {
      if (!my_packed(&q, stop, &vlen) || vlen == 0 || vlen > (uint64_t)(stop - q)) return -1;
      value = q;
      q += vlen;
    }
    if (fn) fn(ctx, op, path, (size_t)plen, value, (size_t)vlen);
  }
  *used = 4 + (size_t)total;
  return 0;
}
