/* spool.h — a sink's durable local spool: an ordered log of records in segment files.
 *
 * Owns: one directory (<state_dir>/spool/<pipeline>.<sink>/ unless `spool.dir` says otherwise), its
 * segment files (<20-digit sequence>.spool), the in-memory index of their records, the write and
 * read cursors, and the byte budget (max_bytes over every segment on disk).
 * Records live in segment frames (common/segfile.h: "ODF2" header, CRC-32, AES-256-GCM sealing
 * with `encryption:` keys, the record's file and offset bound as associated data). Inside a frame,
 * little-endian: u32 meta_len | u32 raw_len | u8 codec | u8 flags | u16 0 | meta | body.
 * meta: the record's end position and its coverage base (text forms, u16 length each), so a
 * restart can index a spool without inflating it; body: the payload (core/spool_codec.h) compressed
 * by `codec` (0 none, 1 zstd, 2 lz4), compressed before it is sealed.
 * Durability: od_spool_append frames (buffered); od_spool_sync writes and fsyncs the segment (and the directory when a
 * segment was created) and only then counts the records as durable (od_spool_covered).
 * Torn tails: at open, a record cut short at the end of the last segment (a crash in the middle
 * of a write, never synced, so never acknowledged) is truncated with a warning. A record whose
 * checksum fails anywhere else is an error naming the file and byte offset; nothing is skipped.
 * Coverage: records carry flags: OD_SPOOL_EPISODE opens a run of consecutive chunks of the stream
 * (an "episode"); OD_SPOOL_BASE gives the position a sink must hold for the episode to continue it
 * without a gap (every transaction starting at or after base is in the episode, whole, up to its
 * last end); OD_SPOOL_END marks a record whose chunk ends a transaction at `end`.
 * Thread safety: one writer thread (append/sync), one reader thread (next/rewind/prune); the
 * index and counters are under the spool's mutex, so other threads may read sizes and coverage.
 * Never touches: what a record means (core/spool_codec.h), queues, sinks.
 */
#ifndef ODSYNC_SPOOL_H
#define ODSYNC_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spool_codec.h"
#include "odsync/error.h"
#include "odsync/position.h"

enum { OD_SPOOL_NONE = 0, OD_SPOOL_ZSTD = 1, OD_SPOOL_LZ4 = 2 };
enum { OD_SPOOL_EPISODE = 1, OD_SPOOL_BASE = 2, OD_SPOOL_END = 4 };

typedef struct od_spool_options {
  const char *dir;          /* the spool's own directory (created when missing) */
  uint64_t max_bytes;       /* bound over the segment files; a record always fits an empty spool */
  uint64_t segment_bytes;   /* a new segment starts past this (0: max_bytes / 16, 1..16 MiB) */
  int compression;          /* OD_SPOOL_NONE / ZSTD / LZ4 */
  const struct od_keyring *kr; /* encryption at rest (common/seal.h); borrowed, must outlive the spool; NULL: none */
} od_spool_options;

typedef struct od_spool_meta {
  uint8_t flags; /* OD_SPOOL_* */
  od_pos end;    /* with OD_SPOOL_END */
  od_pos base;   /* with OD_SPOOL_BASE */
} od_spool_meta;

typedef struct od_spool od_spool;

/* Open (and index) the spool in opt->dir, truncating a torn tail. The options are copied. */
int od_spool_open(const od_spool_options *opt, od_spool **out, od_error *err);
void od_spool_close(od_spool *s);

/* Append one record (body uncompressed; it is compressed here). OD_AGAIN when it does not fit the
 * byte budget (the spool is full: the caller waits, which is backpressure), unless `force` (the
 * caller checked the room before and must not lose the record). */
int od_spool_append(od_spool *s, const od_spool_meta *meta, const uint8_t *body, size_t len, bool force,
                    od_error *err);
/* Bytes left under the bound. */
uint64_t od_spool_room(od_spool *s);
/* Make every appended record durable (fsync). */
int od_spool_sync(od_spool *s, od_error *err);

/* The next unread durable record: OD_OK with *meta and the uncompressed body in *body (replaced),
 * OD_EOF when none is ready, OD_EIO when a record fails its checksum (err names file and offset). */
int od_spool_next(od_spool *s, od_spool_meta *meta, od_sbuf *body, od_error *err);
/* Read again from the oldest record still on disk. Returns how many records were read before (they
 * are unread again). */
uint64_t od_spool_rewind(od_spool *s);
/* Delete segments that were read whole and whose records all end at or before `held` (the sink's
 * durable checkpoint); when everything was read and is held, the last one too. The writer must not
 * append meanwhile (core/spool_feed.c holds its write lock). */
int od_spool_prune(od_spool *s, const od_pos *held, od_error *err);

/* Coverage: the position up to which the spool, together with a sink holding `held`, holds every
 * transaction: from held, each durable episode whose base the chain reaches extends it to its end
 * (the same walk as od_spool_recover, so a restart keeps all that was covered). */
od_pos od_spool_covered(od_spool *s, const od_pos *held);
/* After a restart: walk the episodes from the sink's checkpoint, keep those that continue it
 * without a gap, cut the spool before the first that does not (its chunks come again from the
 * source). *resume is where the stream must continue for this sink (>= checkpoint). Returns the
 * number of records kept (all unread). */
int od_spool_recover(od_spool *s, const od_pos *checkpoint, od_pos *resume, uint64_t *kept, od_error *err);

/* The checkpoint of a sink that went down (file `held`, fsync'd): while it is down it commits
 * nothing, so a session that starts while it is still unreachable may use this as its checkpoint.
 * Cleared (before it commits again) when the sink is back. read: false when there is none. */
int od_spool_write_held(od_spool *s, const od_pos *held, od_error *err);
bool od_spool_read_held(od_spool *s, od_pos *out);
int od_spool_clear_held(od_spool *s, od_error *err);

uint64_t od_spool_bytes(od_spool *s);    /* bytes on disk */
uint64_t od_spool_records(od_spool *s);  /* records on disk */
uint64_t od_spool_unread(od_spool *s);   /* durable records not read yet */
bool od_spool_empty(od_spool *s);        /* nothing on disk */
const char *od_spool_dir(const od_spool *s);
/* "zstd", "lz4", "none" <-> OD_SPOOL_*; -1 when unknown. */
int od_spool_codec_parse(const char *name);
const char *od_spool_codec_name(int codec);

#endif
