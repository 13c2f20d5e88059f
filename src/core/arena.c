/* arena.c — see arena.h. */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct od_arena_block {
  od_arena_block *next;
  size_t size;
  size_t used;
  _Alignas(16) unsigned char data[];
};

void od_arena_init(od_arena *a, size_t block_size) {
  memset(a, 0, sizeof *a);
  a->block_size = block_size ? block_size : 64 * 1024;
}

static od_arena_block *block_new(size_t size) {
  od_arena_block *b = malloc(sizeof *b + size);
  if (!b) return NULL;
  b->next = NULL;
  b->size = size;
  b->used = 0;
  return b;
}

void *od_arena_alloc(od_arena *a, size_t size) {
  size = (size + 7) & ~(size_t)7;
  od_arena_block *b = a->head;
  if (!b || b->size - b->used < size) {
    /* Reuse a spare block when it is large enough; otherwise allocate. */
    od_arena_block **pp = &a->spare;
    b = NULL;
    while (*pp) {
      if ((*pp)->size >= size) {
        b = *pp;
        *pp = b->next;
        break;
      }
      pp = &(*pp)->next;
    }
    if (!b) {
      b = block_new(size > a->block_size ? size : a->block_size);
      if (!b) return NULL;
    }
    b->used = 0;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += size;
  a->used += size;
  return p;
}

char *od_arena_strndup(od_arena *a, const char *s, size_t len) {
  char *p = od_arena_alloc(a, len + 1);
  if (!p) return NULL;
  if (len) memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

void od_arena_reset(od_arena *a) {
  od_arena_block *b = a->head;
  while (b) {
    od_arena_block *next = b->next;
    /* Oversized one-off blocks are freed; standard blocks are kept for reuse. */
    if (b->size > a->block_size) {
      free(b);
    } else {
      b->next = a->spare;
      a->spare = b;
    }
    b = next;
  }
  a->head = NULL;
  a->used = 0;
}

void od_arena_destroy(od_arena *a) {
  od_arena_reset(a);
  od_arena_block *b = a->spare;
  while (b) {
    od_arena_block *next = b->next;
    free(b);
    b = next;
  }
  a->spare = NULL;
}
