/* pg_stream.c — see pg_stream.h. Message formats: PostgreSQL's "Logical Replication Message
 * Formats", protocol version 2: Stream Start 'S' xid u32, first-segment u8; Stream Stop 'E';
 * Stream Commit 'c' xid u32, flags u8, commit LSN u64, end LSN u64, commit time i64; Stream Abort
 * 'A' xid u32, subtransaction xid u32. Inside a block, Insert/Update/Delete/Truncate/Relation/
 * Type/Message carry the xid of the (sub)transaction that made them right after the type byte;
 * Origin carries none. Integers big-endian.
 *
 * Aborted subtransactions. PostgreSQL's own apply worker truncates its spool file at the first
 * change of the aborted subtransaction. That is right for PostgreSQL because a streamed transaction's
 * changes come in WAL order and subtransactions nest: between the first change of subtransaction S
 * and S's abort record, every change was made by S or by a subtransaction S started (itself aborted
 * with S, and listed in S's abort record). Here the kept records of S are skipped by xid at replay
 * instead (each aborted subtransaction that had changes streamed gets its own Stream Abort, the
 * released children of a rolled-back savepoint included), which needs no ordering argument — with
 * one exception that truncation gets wrong: a Relation or Type message is sent once per top-level
 * transaction, carrying the xid of whichever subtransaction first needed it, and later changes of
 * other subtransactions rely on it; such records are kept whatever aborts (OD_PG_XACT_KEEP).
 */
#include "sources/pg/pg_stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/segfile.h"

struct od_pg_stream {
  od_pg_xact_store *store;
  bool in_block;
  uint32_t block_xid;        /* top-level xid of the open block */
  bool replaying;
  uint32_t rxid;             /* the Stream Commit being replayed */
  char commit[26];           /* its Commit message: 'C', flags, commit LSN, end LSN, time */
  od_segbuf scratch;
};

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *name_of(char t) {
  switch (t) {
  case 'S': return "Stream Start";
  case 'E': return "Stream Stop";
  case 'c': return "Stream Commit";
  case 'A': return "Stream Abort";
  case 'B': return "Begin";
  case 'C': return "Commit";
  case 'I': return "Insert";
  case 'U': return "Update";
  case 'D': return "Delete";
  case 'T': return "Truncate";
  case 'R': return "Relation";
  case 'Y': return "Type";
  case 'M': return "Message";
  case 'O': return "Origin";
  }
  return "unknown";
}

static int bad(od_error *err, char t, size_t at, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int bad(od_error *err, char t, size_t at, size_t len, const char *fmt, ...) {
  char detail[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  unsigned char u = (unsigned char)t;
  if (u >= 0x20 && u < 0x7f)
    return OD_FAIL(err, OD_EPROTOCOL, "pgoutput v2 %s message ('%c'): %s at byte offset %zu of %zu", name_of(t), u,
                   detail, at, len);
  return OD_FAIL(err, OD_EPROTOCOL, "pgoutput v2 %s message (0x%02x): %s at byte offset %zu of %zu", name_of(t), u,
                 detail, at, len);
}

int od_pg_stream_open(const od_pg_xact_store_opts *o, od_pg_stream **out, od_error *err) {
  od_pg_stream *st = calloc(1, sizeof *st);
  if (!st) return OD_FAIL(err, OD_ENOMEM, "streamed transactions: out of memory");
  int rc = od_pg_xact_store_open(o, &st->store, err);
  if (rc) {
    free(st);
    return rc;
  }
  *out = st;
  return OD_OK;
}

void od_pg_stream_free(od_pg_stream *st) {
  if (!st) return;
  od_pg_xact_store_free(st->store);
  free(st->scratch.p);
  free(st);
}

void od_pg_stream_reset(od_pg_stream *st) {
  od_pg_xact_store_reset(st->store);
  st->in_block = false;
  st->replaying = false;
}

bool od_pg_stream_replaying(const od_pg_stream *st) { return st->replaying; }

bool od_pg_stream_busy(const od_pg_stream *st) {
  od_pg_xact_stats s;
  od_pg_xact_store_stats(st->store, &s);
  return st->in_block || st->replaying || s.open > 0;
}

void od_pg_stream_stats(const od_pg_stream *st, od_pg_xact_stats *out) { od_pg_xact_store_stats(st->store, out); }

/* A message inside a block: keep it (without its xid) in the block's transaction. */
static int keep(od_pg_stream *st, od_pgoutput *d, const char *buf, size_t len, const od_change_handler *h,
                od_error *err) {
  char t = buf[0];
  const unsigned char *u = (const unsigned char *)buf;
  switch (t) {
  case 'O': /* Origin follows Stream Start and has no xid */
    return od_pg_xact_store_append(st->store, st->block_xid, st->block_xid, buf, len, err);
  case 'I':
  case 'U':
  case 'D':
  case 'T':
  case 'R':
  case 'Y':
  case 'M':
    break;
  default:
    return bad(err, t, 0, len, "inside the Stream Start/Stop block of xid %u (only changes, Relation, Type, "
               "Message and Origin messages belong there)", st->block_xid);
  }
  if (len < 5) return bad(err, t, 1, len, "message truncated while reading xid (streamed xid %u)", st->block_xid);
  uint32_t xid = be32(u + 1);
  if (xid == 0) return bad(err, t, 1, len, "invalid xid 0 inside the block of xid %u", st->block_xid);
  if (t == 'M') {
    if (len < 6) return bad(err, t, 5, len, "message truncated while reading flags (xid %u)", xid);
    if (!(u[5] & 1)) { /* not transactional: delivered at once, as outside a stream (decoded from one piece) */
      st->scratch.len = 0;
      if (od_segbuf_reserve(&st->scratch, len - 4))
        return OD_FAIL(err, OD_ENOMEM, "streamed transactions: out of memory (%zu bytes)", len);
      st->scratch.p[0] = (uint8_t)t;
      memcpy(st->scratch.p + 1, buf + 5, len - 5);
      int rc = od_pgoutput_decode(d, (const char *)st->scratch.p, len - 4, h, err);
      od_segbuf_release_above(&st->scratch, (size_t)1 << 20);
      return rc;
    }
  }
  /* Kept as the type byte and the body past the xid, in two pieces: no joined copy of a large value. */
  uint32_t tag = (t == 'R' || t == 'Y') ? OD_PG_XACT_KEEP : xid;
  return od_pg_xact_store_append2(st->store, st->block_xid, tag, buf, 1, buf + 5, len - 5, err);
}

static int start_replay(od_pg_stream *st, od_pgoutput *d, const char *buf, size_t len, const od_change_handler *h,
                        od_error *err) {
  const unsigned char *u = (const unsigned char *)buf;
  if (len < 5) return bad(err, 'c', 1, len, "message truncated while reading xid");
  uint32_t xid = be32(u + 1);
  if (len != 30)
    return bad(err, 'c', len < 30 ? len : 30, len, "%s (xid %u): 30 bytes expected", len < 30 ? "message truncated"
               : "unexpected trailing bytes", xid);
  if (st->in_block) return bad(err, 'c', 0, len, "xid %u committed inside the block of xid %u", xid, st->block_xid);
  int rc = od_pg_xact_store_replay(st->store, xid, err);
  if (rc) return rc;
  /* Begin: final (commit) LSN, commit time, xid; Commit: flags, commit LSN, end LSN, commit time. */
  char begin[21];
  begin[0] = 'B';
  memcpy(begin + 1, buf + 6, 8);
  memcpy(begin + 9, buf + 22, 8);
  memcpy(begin + 17, buf + 1, 4);
  st->commit[0] = 'C';
  memcpy(st->commit + 1, buf + 5, 25);
  st->replaying = true;
  st->rxid = xid;
  if ((rc = od_pgoutput_decode(d, begin, sizeof begin, h, err)))
    return od_error_prefix(err, "replaying streamed transaction %u: ", xid);
  return OD_OK;
}

int od_pg_stream_pump(od_pg_stream *st, od_pgoutput *d, const od_change_handler *h, int max, od_error *err) {
  if (!st->replaying) return OD_OK;
  for (int i = 0; i < max; i++) {
    char *msg;
    size_t len;
    int rc = od_pg_xact_store_next(st->store, &msg, &len, err);
    if (rc < 0) return rc;
    if (rc == 0) {
      st->replaying = false;
      od_pg_xact_store_end_replay(st->store);
      rc = od_pgoutput_decode(d, st->commit, sizeof st->commit, h, err);
      return rc ? od_error_prefix(err, "replaying streamed transaction %u: ", st->rxid) : OD_OK;
    }
    if ((rc = od_pgoutput_decode_inplace(d, msg, len, h, err))) /* a record is read once */
      return od_error_prefix(err, "replaying streamed transaction %u: ", st->rxid);
  }
  return OD_OK;
}

int od_pg_stream_route(od_pg_stream *st, od_pgoutput *d, const char *buf, size_t len, const od_change_handler *h,
                       bool *handled, od_error *err) {
  *handled = true;
  if (len == 0) return OD_FAIL(err, OD_EPROTOCOL, "pgoutput: empty message (no type byte) at byte offset 0");
  if (st->replaying)
    return OD_FAIL(err, OD_EINVAL, "streamed transactions: a message arrived while xid %u is being replayed", st->rxid);
  const unsigned char *u = (const unsigned char *)buf;
  char t = buf[0];
  switch (t) {
  case 'S': {
    if (len != 6) return bad(err, t, len < 6 ? len : 6, len, "6 bytes expected");
    uint32_t xid = be32(u + 1);
    if (st->in_block)
      return bad(err, t, 0, len, "xid %u started while the block of xid %u is open (no Stream Stop)", xid,
                 st->block_xid);
    if (xid == 0) return bad(err, t, 1, len, "invalid xid 0");
    bool first = u[5] != 0;
    if (first) {
      int rc = od_pg_xact_store_begin(st->store, xid, err);
      if (rc) return rc;
    } else if (!od_pg_xact_store_has(st->store, xid)) {
      return bad(err, t, 5, len, "a later segment of xid %u, whose first segment was not received on this "
                 "connection", xid);
    }
    st->in_block = true;
    st->block_xid = xid;
    return OD_OK;
  }
  case 'E':
    if (len != 1) return bad(err, t, 1, len, "unexpected trailing bytes");
    if (!st->in_block) return bad(err, t, 0, len, "without a Stream Start");
    st->in_block = false;
    return OD_OK;
  case 'c':
    return start_replay(st, d, buf, len, h, err);
  case 'A': {
    if (len != 9) return bad(err, t, len < 9 ? len : 9, len, "9 bytes expected (protocol version 2)");
    if (st->in_block) return bad(err, t, 0, len, "inside the block of xid %u", st->block_xid);
    return od_pg_xact_store_abort(st->store, be32(u + 1), be32(u + 5), err);
  }
  }
  if (st->in_block) return keep(st, d, buf, len, h, err);
  *handled = false;
  return OD_OK;
}
