/* arena.h — bump allocator in linked blocks, reset without freeing.
 *
 * Owns: its blocks. Memory handed out is valid until od_arena_reset() or od_arena_destroy().
 * Used for everything a chunk of changes carries, so applying a batch never calls malloc per row.
 * Never touches: anything outside its blocks. Not thread-safe (one owner at a time).
 */
#ifndef ODSYNC_ARENA_H
#define ODSYNC_ARENA_H

#include <stddef.h>

typedef struct od_arena_block od_arena_block;

typedef struct od_arena {
  od_arena_block *head;   /* block being filled */
  od_arena_block *spare;  /* blocks kept by reset, reused before malloc */
  size_t block_size;      /* default size of new blocks */
  size_t used;            /* bytes handed out since the last reset */
} od_arena;

void od_arena_init(od_arena *a, size_t block_size);
/* NULL on out-of-memory. Aligned to 8 bytes. */
void *od_arena_alloc(od_arena *a, size_t size);
/* Copy len bytes and add a NUL terminator. NULL on out-of-memory. */
char *od_arena_strndup(od_arena *a, const char *s, size_t len);
void od_arena_reset(od_arena *a);
void od_arena_destroy(od_arena *a);

#endif
