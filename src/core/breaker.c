/* breaker.c — see core/breaker.h. */
#include "core/breaker.h"


od_breaker_config od_breaker_defaults(void) {
  return (od_breaker_config){.failures = 5, .error_rate = 0.5, .min_attempts = 10, .window_ms = 60000,
                             .cooldown_ms = 30000};
}

void od_breaker_init(od_breaker *b, const od_breaker_config *cfg) {
  *b = (od_breaker){.cfg = *cfg, .state = OD_BREAKER_CLOSED};
  if (b->cfg.failures < 1) b->cfg = od_breaker_defaults();
  pthread_mutex_init(&b->lock, NULL);
}

void od_breaker_destroy(od_breaker *b) { pthread_mutex_destroy(&b->lock); }

/* Under the lock. */
static void set_state(od_breaker *b, int state, int64_t now) {
  if (b->state == state) return;
  b->state = state;
  b->transitions++;
  if (state == OD_BREAKER_OPEN) b->opened_at = now;
  if (state == OD_BREAKER_CLOSED) {
    b->consecutive = 0;
    b->win_ok = b->win_fail = 0;
    b->window_start = now;
  }
  if (b->state_out) atomic_store(b->state_out, state);
  if (b->transitions_out) atomic_store(b->transitions_out, b->transitions);
}

static void roll_window(od_breaker *b, int64_t now) {
  if (now - b->window_start >= (int64_t)b->cfg.window_ms * 1000) {
    b->window_start = now;
    b->win_ok = b->win_fail = 0;
  }
}

void od_breaker_success(od_breaker *b, int64_t now) {
  pthread_mutex_lock(&b->lock);
  roll_window(b, now);
  b->win_ok++;
  b->consecutive = 0;
  if (b->state != OD_BREAKER_CLOSED) set_state(b, OD_BREAKER_CLOSED, now);
  pthread_mutex_unlock(&b->lock);
}

void od_breaker_failure(od_breaker *b, int64_t now) {
  pthread_mutex_lock(&b->lock);
  roll_window(b, now);
  b->win_fail++;
  b->consecutive++;
  if (b->state == OD_BREAKER_HALF_OPEN) {
    set_state(b, OD_BREAKER_OPEN, now);
  } else if (b->state == OD_BREAKER_CLOSED) {
    uint32_t total = b->win_ok + b->win_fail;
    bool rate = b->cfg.error_rate > 0 && total >= (uint32_t)b->cfg.min_attempts &&
                (double)b->win_fail >= b->cfg.error_rate * (double)total;
    if (b->consecutive >= b->cfg.failures || rate) set_state(b, OD_BREAKER_OPEN, now);
  } else {
    b->opened_at = now; /* a failure while open (not through allow): the cool-down starts over */
  }
  pthread_mutex_unlock(&b->lock);
}

bool od_breaker_allow(od_breaker *b, int64_t now) {
  pthread_mutex_lock(&b->lock);
  if (b->state == OD_BREAKER_OPEN && now - b->opened_at >= (int64_t)b->cfg.cooldown_ms * 1000)
    set_state(b, OD_BREAKER_HALF_OPEN, now);
  bool ok = b->state != OD_BREAKER_OPEN;
  pthread_mutex_unlock(&b->lock);
  return ok;
}

long od_breaker_wait_ms(od_breaker *b, int64_t now) {
  pthread_mutex_lock(&b->lock);
  long left = 0;
  if (b->state == OD_BREAKER_OPEN) {
    int64_t until = b->opened_at + (int64_t)b->cfg.cooldown_ms * 1000;
    left = until > now ? (long)((until - now + 999) / 1000) : 0;
  }
  pthread_mutex_unlock(&b->lock);
  return left;
}

int od_breaker_state(od_breaker *b) {
  pthread_mutex_lock(&b->lock);
  int s = b->state;
  pthread_mutex_unlock(&b->lock);
  return s;
}

const char *od_breaker_state_name(int state) {
  switch (state) {
    case OD_BREAKER_CLOSED: return "closed";
    case OD_BREAKER_OPEN: return "open";
    case OD_BREAKER_HALF_OPEN: return "half_open";
  }
  return "?";
}
