/* spool_codec.h — the compact binary form of one chunk of changes (core/queue.h) for a sink's spool.
 *
 * Owns: the byte layout of a spooled chunk (version 1) and the relation copies decoded from spools
 * written by an earlier session (od_spool_rels). A record is self-contained: it carries its
 * chunk's fields (transaction count, boundary, end position, commit time, marks), a table of the
 * relations its changes use (oid, version, names, columns: enough to rebuild an od_relation), and
 * the changes (op, old kind, truncate flags, index, transaction start, new and old tuples; every
 * value kind: NULL, unchanged TOAST, text, binary, any length). Lengths are LEB128 varints,
 * positions their stored text form (odsync/position.h), so a spool outlives a build's struct
 * layout.
 * Relations by reference within a session: each relation is written with the pointer it had and
 * the session number; decoding in the same session gives back that live pointer (the decoder's
 * relation cache outlives the session's queue and spools), so sinks see the same relation version
 * they would have seen from memory. A record from an earlier session gets a copy rebuilt from the
 * record, one per (pointer, version) for the life of the od_spool_rels.
 * Never touches: files, compression, checksums (core/spool.c), queues, sinks.
 */
#ifndef ODSYNC_SPOOL_CODEC_H
#define ODSYNC_SPOOL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/queue.h"
#include "odsync/error.h"

/* A growable byte buffer. Owns data (free with od_sbuf_free). */
typedef struct od_sbuf {
  uint8_t *data;
  size_t len, cap;
} od_sbuf;

int od_sbuf_reserve(od_sbuf *b, size_t more); /* OD_OK or OD_ENOMEM */
void od_sbuf_free(od_sbuf *b);

typedef struct od_spool_rels od_spool_rels;

od_spool_rels *od_spool_rels_new(void);
/* Frees every relation copy: only once no sink holds a pointer to one (after the sink is closed). */
void od_spool_rels_free(od_spool_rels *r);

/* Append the encoding of chunk c to out. `session` names the relation pointers' lifetime. */
int od_spool_encode(const od_chunk *c, uint64_t session, od_sbuf *out);

/* Decode n bytes into the clean chunk c (from od_queue_take_free: changes and values go into its
 * arena). Relations of `session` are the live pointers they were; others come from rels. OD_OK, or
 * OD_EIO (malformed) / OD_ENOMEM with err filled (the caller prefixes the file and offset). */
int od_spool_decode(const uint8_t *p, size_t n, uint64_t session, od_spool_rels *rels, od_chunk *c, od_error *err);

#endif
