/* common/segfile.h — append-only segment files of framed records: the one on-disk layer under the
 * sinks' spools (core/spool.c) and the http source's journal (sources/http/http_journal.c).
 *
 * Owns: the segment files of one directory (<20-digit id><suffix>, e.g. 00000000000000000007.spool),
 * the frame of a record, the write buffer and the descriptor of the segment being appended, and
 * the sealing of every frame when a keyring is given (encryption at rest, common/seal.h).
 * Never touches: what a payload means (its callers' headers), which segments may be deleted (the
 * caller decides and calls od_segfile_remove), the keyring's lifetime (borrowed), locking between
 * threads (see below). It logs one thing (core/log.h, part of the adapter API): a torn tail cut.
 *
 * Frame (format 2, little-endian), 16 bytes then the stored payload:
 *   "ODF2" | u8 flags (1: sealed) | u8 0 | u16 0 | u32 stored_len | u32 crc32 (zlib) of the 12
 *   bytes before it and the stored payload | stored payload
 * A sealed frame stores od_seal(kr, "<directory's base name>/<file name>", offset, payload): the
 * record's place (its directory, segment file and byte offset) is associated data, so a record
 * moved to another offset (two records swapped, one dropped from the middle, one duplicated) or
 * to another segment or spool does not authenticate. Nonces are 96 random bits per record
 * (RAND_bytes); docs/SECURITY.md argues why they do not repeat under one key.
 * With a keyring every frame must be sealed (a plain frame is refused: it was written before
 * encryption was turned on, or planted); without one a sealed frame is refused naming its key id.
 * Format 1 files (the spool's "ODS1" and the journal's "ODJ1" records, before this module) are
 * refused with a message saying so: drain them with the odsync that wrote them, or remove them.
 *
 * Errors while scanning (od_segfile_scan): a frame cut short at the end of the LAST segment (a
 * crash in the middle of a write, never synced, so never acknowledged) is cut off with a warning;
 * anything else — a checksum mismatch, a record that does not authenticate, a short frame in an
 * earlier segment — fails with OD_EIO naming the file and byte offset. Nothing is skipped.
 * What a frame cannot see: records cut from the END of a segment at a frame boundary (the callers
 * check continuity where they can: the journal's sequences, the sink checkpoint for the spool).
 *
 * Threads: one writer (append / flush / roll / resume), any number of readers each with its own
 * od_segfile_reader (od_segfile_read only uses the immutable options). remove/truncate/close_active
 * must not run while the writer appends (the callers hold their own write lock).
 */
#ifndef ODSYNC_COMMON_SEGFILE_H
#define ODSYNC_COMMON_SEGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/error.h"

#define OD_SEGFILE_FRAME 16 /* frame header bytes */
#define OD_SEGFILE_MAX_PAYLOAD (512u << 20)

typedef struct od_keyring od_keyring;
typedef struct od_segfile od_segfile;

typedef struct od_segfile_opts {
  const char *dir;        /* created (mode 0700) when missing */
  const char *suffix;     /* file name suffix with its dot, e.g. ".spool" */
  const char *what;       /* prefixes messages: "spool", "http journal" */
  const od_keyring *kr;   /* borrowed, may be NULL; non-NULL: every frame is sealed */
} od_segfile_opts;

/* A growable byte buffer owned by its user (free p). */
typedef struct od_segbuf {
  uint8_t *p;
  size_t len, cap;
} od_segbuf;

/* A reader's open segment (fd -1 when none). */
typedef struct od_segfile_reader {
  int fd;
  uint64_t id;
} od_segfile_reader;
#define OD_SEGFILE_READER_INIT {.fd = -1, .id = 0}
void od_segfile_reader_close(od_segfile_reader *r);

/* Called by od_segfile_scan for each good record in order: its segment, offset, frame size and
 * payload (plaintext, valid during the call). Nonzero stops the scan and is returned. */
typedef int (*od_segfile_visit)(void *ctx, uint64_t id, uint64_t off, uint32_t frame_size, const uint8_t *payload,
                                size_t len, od_error *err);

int od_segfile_open(const od_segfile_opts *o, od_segfile **out, od_error *err);
/* Closes the active segment (what was not flushed is lost) and frees. NULL is ignored. */
void od_segfile_close(od_segfile *sf);
const char *od_segfile_dir(const od_segfile *sf);
void od_segfile_path(const od_segfile *sf, uint64_t id, char *buf, size_t size);

/* The segment ids on disk, ascending; *ids malloc'd (caller frees), NULL when none. */
int od_segfile_list(od_segfile *sf, uint64_t **ids, size_t *n, od_error *err);
/* Check every frame of segment `id`, call `visit` per record; `last`: a torn tail is cut (else it
 * is an error). *size gets the bytes of good frames (the segment's length afterwards). */
int od_segfile_scan(od_segfile *sf, uint64_t id, bool last, od_segfile_visit visit, void *ctx, uint64_t *size,
                    od_error *err);

/* The writer. resume: append to segment `id` (which has `size` good bytes, from a scan).
 * roll: flush, then start the new, empty segment `id` (created; fsync of the directory at the
 * next flush). close_active: forget the active segment (after it was removed or cut). */
int od_segfile_resume(od_segfile *sf, uint64_t id, uint64_t size, od_error *err);
int od_segfile_roll(od_segfile *sf, uint64_t id, od_error *err);
void od_segfile_close_active(od_segfile *sf);
bool od_segfile_has_active(const od_segfile *sf);
uint64_t od_segfile_active_id(const od_segfile *sf);
/* Bytes of the active segment including what is buffered. */
uint64_t od_segfile_active_size(const od_segfile *sf);
/* Frame (and seal) one record at the end of the active segment into the write buffer; *off and
 * *frame_size say where it will be. Nothing is written before od_segfile_flush. */
int od_segfile_append(od_segfile *sf, const void *payload, size_t len, uint64_t *off, uint32_t *frame_size,
                      od_error *err);
/* The same with the payload given in pieces, framed as one record (no copy of the pieces but into
 * the write buffer; with a keyring they are joined first, for the seal). */
typedef struct od_segpart {
  const void *p;
  size_t len;
} od_segpart;
int od_segfile_append_parts(od_segfile *sf, const od_segpart *parts, size_t nparts, uint64_t *off,
                            uint32_t *frame_size, od_error *err);
/* Drop what was appended since the last flush (a group that failed half-way). */
void od_segfile_discard(od_segfile *sf);
/* Frame size of a payload of len bytes with the current key. */
size_t od_segfile_frame_size(const od_segfile *sf, size_t len);
/* Write the buffer (a buffer grown past 4 MiB by a large record is then freed); with `sync` fdatasync it (and the directory when a segment was created). On a
 * failed write the segment is cut back to its last good frame and the buffer dropped (retriable). */
int od_segfile_flush(od_segfile *sf, bool sync, od_error *err);

/* Read the frame at (id, off) into *payload (plaintext); *frame_size its size on disk. `limit` is
 * the segment's known length (a frame past it is an error). What *payload held before is freed first,
 * whatever the outcome (so that two large records are never held at once). */
int od_segfile_read(const od_segfile *sf, od_segfile_reader *r, uint64_t id, uint64_t off, uint64_t limit,
                    od_segbuf *payload, uint32_t *frame_size, od_error *err);

/* Delete a segment file (ENOENT is fine); cut one at `off` (fsync'd). */
int od_segfile_remove(od_segfile *sf, uint64_t id, od_error *err);
int od_segfile_truncate(od_segfile *sf, uint64_t id, uint64_t off, od_error *err);
/* fsync the directory. */
int od_segfile_sync_dir(od_segfile *sf, od_error *err);

int od_segbuf_reserve(od_segbuf *b, size_t need);
/* Free the buffer when it grew past `keep` (a large record passed: its size is not held for good). */
void od_segbuf_release_above(od_segbuf *b, size_t keep);

#endif
