/* Unit tests for the arena allocator. */
#include "core/arena.h"
#include "test.h"

#include <stdint.h>

TEST(alloc_is_aligned_and_reused_after_reset) {
  od_arena a;
  od_arena_init(&a, 1024);
  void *p1 = od_arena_alloc(&a, 3);
  void *p2 = od_arena_alloc(&a, 5);
  CHECK(((uintptr_t)p1 & 7) == 0);
  CHECK(((uintptr_t)p2 & 7) == 0);
  CHECK((char *)p2 - (char *)p1 == 8);
  od_arena_reset(&a);
  CHECK_INT(a.used, 0);
  void *p3 = od_arena_alloc(&a, 3);
  CHECK(p3 == p1); /* the block was kept and reused */
  od_arena_destroy(&a);
}

TEST(oversized_allocations_get_their_own_block) {
  od_arena a;
  od_arena_init(&a, 64);
  char *big = od_arena_alloc(&a, 10000);
  CHECK(big != NULL);
  memset(big, 'x', 10000);
  char *s = od_arena_strndup(&a, "hello", 5);
  CHECK_STR(s, "hello");
  od_arena_destroy(&a);
}
