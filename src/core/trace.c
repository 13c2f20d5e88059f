/* trace.c — see trace.h. */
#include "core/trace.h"

#include <stdatomic.h>
#include <stddef.h>

#include "core/clock.h"

static od_trace_fn hook_fn;
static void *hook_ctx;
static atomic_uint_fast64_t threshold; /* sample when a random u64 is below it; 0: off */
static _Thread_local uint64_t rng;

void od_trace_set_exporter(od_trace_fn fn, void *ctx, double ratio) {
  hook_fn = fn;
  hook_ctx = ctx;
  if (!fn || !(ratio > 0)) atomic_store(&threshold, 0);
  else if (ratio >= 1) atomic_store(&threshold, UINT64_MAX);
  else atomic_store(&threshold, (uint64_t)(ratio * 18446744073709551615.0));
}

static uint64_t next_random(void) {
  if (!rng) rng = (uint64_t)od_mono_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&rng;
  rng ^= rng << 13; /* xorshift64 */
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

bool od_trace_sample(void) {
  uint64_t t = atomic_load_explicit(&threshold, memory_order_relaxed);
  if (!t) return false;
  return t == UINT64_MAX || next_random() < t;
}

void od_trace_submit(const od_trace_batch *b) {
  if (hook_fn) hook_fn(hook_ctx, b);
}
