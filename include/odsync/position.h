/* odsync/position.h — the source position: an opaque, bounded value that the source defines.
 *
 * A position says how far into a source's change stream something is: a PostgreSQL WAL LSN, a
 * MariaDB GTID list with its binlog file:offset, a bus offset, a poll watermark, an ingest sequence.
 * The core never looks inside one: it compares, copies, prints and parses positions through the
 * od_pos_kind that made them. Sinks store a position as its text form ("pg:0/16B3748") in the same
 * atomic write as the data (their checkpoint) and hand it back unchanged.
 *
 * The transaction rule every source follows (what makes the skip rule of the pipeline one line):
 * each source transaction occupies a half-open interval [start, end) of its kind's order; a later
 * transaction's start is >= an earlier one's end, and start < end. A sink whose checkpoint is c
 * holds exactly the transactions with start < c. Idle positions (heartbeats) lie between
 * transactions. PostgreSQL: start = the commit record's LSN (final_lsn), end = just past it.
 *
 * Ownership: od_pos is a plain value (no pointers but its kind, which is static); copy it freely.
 * Never touches: I/O, sinks, sources' connections.
 */
#ifndef ODSYNC_POSITION_H
#define ODSYNC_POSITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/error.h"

#define OD_POS_MAX 96        /* encoded bytes at most */
#define OD_POS_TEXT_MAX 256  /* text form at most, "kind:" prefix and NUL included */

typedef struct od_pos_kind od_pos_kind;

typedef struct od_pos {
  const od_pos_kind *kind; /* NULL: no position ("nothing yet") */
  uint16_t len;            /* bytes of data in use */
  uint8_t data[OD_POS_MAX];
} od_pos;

/* What a source defines for its positions (one static instance per source type). */
struct od_pos_kind {
  const char *name; /* [a-z0-9_]+, stable: the prefix of the stored text form, e.g. "pg" */
  /* Order of two positions of this kind: <0, 0, >0. NULL: bytewise (memcmp, then length), which
   * is right for big-endian counters (od_pos_from_u64). */
  int (*compare)(const od_pos *a, const od_pos *b);
  /* The body of the text form (after "name:"), NUL-terminated; returns its length, or -1 when it
   * does not fit. Must round-trip through parse. */
  int (*format)(const od_pos *p, char *buf, size_t size);
  /* Parse a body made by format into *out (out->kind is set by the caller). OD_OK or OD_EINVAL. */
  int (*parse)(const char *body, od_pos *out);
  /* Optional: a 64-bit number that grows with the position (for sinks that version rows by
   * position, e.g. ClickHouse's ReplacingMergeTree). NULL: the kind has none. */
  uint64_t (*version)(const od_pos *p);
};

static inline bool od_pos_is_none(const od_pos *p) { return !p || !p->kind; }
static inline od_pos od_pos_none(void) { od_pos p = {0}; return p; }

/* Order. "No position" is below every position; positions of different kinds are ordered by their
 * kinds' names (the pipeline refuses to mix kinds before it compares). */
int od_pos_compare(const od_pos *a, const od_pos *b);
static inline bool od_pos_lt(const od_pos *a, const od_pos *b) { return od_pos_compare(a, b) < 0; }
static inline bool od_pos_le(const od_pos *a, const od_pos *b) { return od_pos_compare(a, b) <= 0; }
static inline bool od_pos_eq(const od_pos *a, const od_pos *b) { return od_pos_compare(a, b) == 0; }

/* "pg:0/16B3748" (the stored form); "" for no position. Returns buf. */
const char *od_pos_to_text(const od_pos *p, char *buf, size_t size);
/* The body alone, for people: "0/16B3748"; "none" for no position. Returns buf. */
const char *od_pos_display(const od_pos *p, char *buf, size_t size);
/* Parse the stored form. "" (or NULL) is no position. The kind is looked up among the registered
 * sources' kinds (registry.h). OD_OK, or OD_EINVAL with a message naming the text. */
int od_pos_from_text(const char *text, od_pos *out, od_error *err);

/* Counters: 8 bytes big-endian, so bytewise order is numeric order. */
od_pos od_pos_from_u64(const od_pos_kind *kind, uint64_t v);
uint64_t od_pos_to_u64(const od_pos *p); /* 0 when p is none or not 8 bytes */

/* Checkpoints and marks written before positions were opaque held a PostgreSQL LSN as an integer:
 * the "pg" position of that LSN (none for 0). Sinks use it to read such rows after an upgrade. */
od_pos od_pos_legacy_lsn(uint64_t lsn);

#endif
