/* pos_cell.h — one od_pos shared between threads (a writer publishes, readers copy), e.g. the
 * position a sink holds durably. Owns its mutex; od_pos_cell_init before use, destroy after. */
#ifndef ODSYNC_POS_CELL_H
#define ODSYNC_POS_CELL_H

#include <pthread.h>

#include "odsync/position.h"

typedef struct od_pos_cell {
  pthread_mutex_t mu;
  od_pos pos;
} od_pos_cell;

static inline void od_pos_cell_init(od_pos_cell *c) {
  pthread_mutex_init(&c->mu, NULL);
  c->pos = od_pos_none();
}
static inline void od_pos_cell_destroy(od_pos_cell *c) { pthread_mutex_destroy(&c->mu); }
static inline void od_pos_cell_set(od_pos_cell *c, const od_pos *p) {
  pthread_mutex_lock(&c->mu);
  c->pos = *p;
  pthread_mutex_unlock(&c->mu);
}
static inline od_pos od_pos_cell_get(od_pos_cell *c) {
  pthread_mutex_lock(&c->mu);
  od_pos p = c->pos;
  pthread_mutex_unlock(&c->mu);
  return p;
}

#endif
