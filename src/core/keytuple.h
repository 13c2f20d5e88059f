/* core/keytuple.h — key tuples of incremental snapshots (docs/SNAPSHOTS.md, "Incremental
 * snapshots"), whatever the key's types and number of columns:
 *   - the byte encoding of a row's key columns: per column a 4-byte little-endian length, then the
 *     column's text bytes. Unambiguous: two tuples encode alike iff every column's text is alike.
 *     Keys are NOT NULL, so a tuple without a text value in a key column has no encoding;
 *   - a hash set of encodings (the keys changed inside a chunk's window);
 *   - the progress mark: the text stored in the sink for the last key copied, with the key's column
 *     names and types and the source's text settings, so a resumed copy can check that it still
 *     means the same key. Format, every field length-prefixed (byte length, decimal):
 *       "K1 <len>:<text_form> <len>:<n> [<len>:<name> <len>:<type> <len>:<value>] x n"
 *     e.g. K1 0: 1:2 2:id 7:integer 2:42 4:name 4:text 3:abc
 * Owns: a set's slot table and a copy of every member's bytes (an arena, reset by od_keyset_clear);
 * a keybuf's bytes; a parsed mark's strings (freed by od_keymark_free). Never touches: sources,
 * sinks, threads (every object has one user at a time).
 */
#ifndef ODSYNC_CORE_KEYTUPLE_H
#define ODSYNC_CORE_KEYTUPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "odsync/change.h"
#include "odsync/snapshot.h"

/* ---- encoding -------------------------------------------------------------------------------- */

typedef struct od_keybuf {
  char *p;
  size_t len, cap;
} od_keybuf;

/* Encode columns cols[0..n) of tuple t into b (replacing what it held). 1: encoded; 0: t lacks a
 * text value in one of them (no tuple, too few columns, NULL, unchanged TOASTed or binary);
 * OD_ENOMEM. */
int od_key_encode(od_keybuf *b, const od_tuple *t, const uint16_t *cols, int n);
void od_keybuf_free(od_keybuf *b);

/* ---- the set --------------------------------------------------------------------------------- */

typedef struct od_keyset_slot {
  uint64_t hash;
  const char *key; /* NULL: empty slot; else in the set's arena */
  uint32_t len;
} od_keyset_slot;

typedef struct od_keyset {
  od_keyset_slot *slots;
  size_t cap, n; /* cap: a power of two (or 0), at most half full */
  od_arena bytes;
} od_keyset;

void od_keyset_init(od_keyset *s);
/* Add a copy of key[0..len) (no-op when present). OD_OK or OD_ENOMEM. */
int od_keyset_add(od_keyset *s, const void *key, size_t len);
bool od_keyset_has(const od_keyset *s, const void *key, size_t len);
size_t od_keyset_count(const od_keyset *s);
/* Empty the set, keeping its memory for the next window. */
void od_keyset_clear(od_keyset *s);
void od_keyset_free(od_keyset *s);

/* ---- the progress mark ----------------------------------------------------------------------- */

typedef struct od_keymark {
  char *form; /* the source's text settings the values were printed under */
  int n;      /* 1..OD_SNAP_KEY_MAX */
  char *names[OD_SNAP_KEY_MAX], *types[OD_SNAP_KEY_MAX], *values[OD_SNAP_KEY_MAX];
} od_keymark;

/* *out: a malloc'd mark text (the caller frees it). OD_OK, OD_EINVAL (n out of range), OD_ENOMEM. */
int od_keymark_format(const char *form, int n, const char *const *names, const char *const *types,
                      const char *const *values, char **out);
/* Parse a mark text into *m (every string malloc'd; od_keymark_free releases them, also after a
 * failure). OD_OK, OD_EINVAL (not a mark of this format), OD_ENOMEM. */
int od_keymark_parse(const char *text, od_keymark *m);
void od_keymark_free(od_keymark *m);
/* "(a, b) > (1, x)" for logs, values cut to 40 bytes. */
void od_keymark_describe(const od_keymark *m, char *out, size_t cap);

#endif
