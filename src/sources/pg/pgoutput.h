/* pgoutput.h — decoder of PostgreSQL's pgoutput logical replication messages (protocol v1).
 *
 * Owns: the relation cache (every od_relation version it ever built, freed by
 * od_pgoutput_free) and the type cache (Type messages: OID -> schema.name).
 * Input: one message = the payload of an XLogData ('w') CopyData message, after its 25-byte
 * header. Output: calls on an od_change_handler. Values passed to handler->change point into
 * the input buffer or into decoder scratch space, valid only during that call.
 * Never touches: sockets, libpq, the queue, sinks.
 */
#ifndef ODSYNC_PGOUTPUT_H
#define ODSYNC_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "odsync/change.h"
#include "odsync/error.h"
#include "odsync/source.h"
#include "sources/pg/pg_position.h"

/* The relation's row identity as sinks read it (od_relation.match_full_row): its key columns identify a
 * row unless REPLICA IDENTITY FULL stands in for a missing primary key. */
static inline void od_pg_set_identity(od_relation *rel) {
  rel->match_full_row = rel->replica_identity == 'f' && !rel->has_primary_key;
}

typedef struct od_pgoutput od_pgoutput;

od_pgoutput *od_pgoutput_new(void);
void od_pgoutput_free(od_pgoutput *d);

/* Decode one message and call the handler. Returns OD_OK, the handler's non-zero status, or
 * OD_EPROTOCOL (message truncated, unknown message type, change for an unknown relation OID, …)
 * with a message naming the message type, the offset and the relation when known. */
int od_pgoutput_decode(od_pgoutput *d, const char *buf, size_t len, const od_change_handler *h,
                       od_error *err);
/* The same for a buffer the caller owns and does not read again: text values are made
 * NUL-terminated in place (each moved one byte back over its length field) instead of being
 * copied into the decoder's scratch, so a large value is not held a second time. The buffer's
 * bytes are changed; the values handed to the handler point into it. */
int od_pgoutput_decode_inplace(od_pgoutput *d, char *buf, size_t len, const od_change_handler *h,
                               od_error *err);

/* Current version of a relation, NULL when never seen. */
const od_relation *od_pgoutput_relation(const od_pgoutput *d, uint32_t oid);
/* "schema.name" of a type announced by a Type message, NULL when unknown (built-in types are
 * never announced). */
const char *od_pgoutput_type_name(const od_pgoutput *d, uint32_t oid);
/* True between Begin and Commit. */
bool od_pgoutput_in_transaction(const od_pgoutput *d);
/* Forget an open transaction (call after the connection was lost or a handler failed mid-way,
 * before streaming again). The relation and type caches are kept. */
void od_pgoutput_reset(od_pgoutput *d);

#endif
