/* pg_stream.h — streaming of in-progress transactions (pgoutput protocol v2, `streaming 'on'`):
 * routes the messages of the replication stream either to the decoder at once (everything outside
 * Stream Start/Stop blocks, as in protocol v1) or into the streamed transaction's store
 * (pg_xact_store.h), and at Stream Commit replays the stored transaction through the same decoder
 * (pgoutput.c) as an ordinary one: a Begin with the commit's LSN, time and xid, the kept messages in
 * their order, a Commit with the commit's LSN, end LSN and time.
 *
 * Owns: the store; which streamed transaction the current block belongs to; the Stream Commit being
 * replayed; a scratch buffer (a message without its v2 xid).
 * Never touches: sockets, libpq, positions or acknowledgements (pg_source.c: a streamed
 * transaction reaches the handler only at its commit, so nothing of it can move the flush
 * position before its Commit is durable in every sink, as for any transaction).
 * The replay is incremental (od_pg_stream_pump, a bounded number of messages per call) so that the
 * caller keeps sending standby status (the walsender's wal_sender_timeout) while a huge transaction
 * is replayed; no message may be read from the stream until the replay has ended.
 * Pointer ownership: the decoder and handler are borrowed for each call.
 */
#ifndef ODSYNC_PG_STREAM_H
#define ODSYNC_PG_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "sources/pg/pg_xact_store.h"
#include "sources/pg/pgoutput.h"

typedef struct od_pg_stream od_pg_stream;

int od_pg_stream_open(const od_pg_xact_store_opts *o, od_pg_stream **out, od_error *err);
void od_pg_stream_free(od_pg_stream *st);
/* Forget every streamed transaction and the replay (a new connection streams them again). */
void od_pg_stream_reset(od_pg_stream *st);

/* One message (the payload of an XLogData message). Stream Start/Stop/Commit/Abort and the
 * messages inside a block are handled here (*handled = true); a Stream Commit starts a replay
 * that od_pg_stream_pump carries on. Anything else is left to the caller (*handled = false), which
 * decodes it with od_pgoutput_decode. Errors: OD_EPROTOCOL naming the message, the offset and the
 * xid (a truncated message, a block never closed, a commit of an unknown xid, ...); the store's
 * (a spill file that cannot be written: OD_EIO, retriable). */
int od_pg_stream_route(od_pg_stream *st, od_pgoutput *d, const char *buf, size_t len, const od_change_handler *h,
                       bool *handled, od_error *err);
/* True while a committed streamed transaction is being replayed: call pump before reading on. */
bool od_pg_stream_replaying(const od_pg_stream *st);
/* Replay up to `max` messages (the Commit when they are all through). */
int od_pg_stream_pump(od_pg_stream *st, od_pgoutput *d, const od_change_handler *h, int max, od_error *err);
/* True while a block is open, a streamed transaction is open or a replay is in progress: the
 * stream is then not "idle" (no idle position is reported). */
bool od_pg_stream_busy(const od_pg_stream *st);
void od_pg_stream_stats(const od_pg_stream *st, od_pg_xact_stats *out);

#endif
