/* writers.c — see writers.h. */
#include "core/writers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct writer {
  od_writers *pool;
  od_sink *sink;
  pthread_t thread;
  bool started;
  const od_change *changes;
  size_t n;
  bool has_job;
  int rc;
  od_error err;
} writer;

struct od_writers {
  pthread_mutex_t lock;
  pthread_cond_t job_ready, job_done;
  int n;
  int busy;
  bool stopping;
  writer *w;
};

static int run_job(writer *me) {
  od_sink *s = me->sink;
  int rc = s->ops->begin(s, &me->err);
  if (rc) return rc;
  if ((rc = s->ops->apply(s, me->changes, me->n, &me->err)) || (rc = s->ops->commit_data(s, &me->err))) {
    s->ops->rollback(s);
    return rc;
  }
  return OD_OK;
}

static void *writer_main(void *arg) {
  writer *me = arg;
  od_writers *p = me->pool;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!me->has_job && !p->stopping) pthread_cond_wait(&p->job_ready, &p->lock);
    if (!me->has_job) break;
    pthread_mutex_unlock(&p->lock);
    int rc = run_job(me);
    pthread_mutex_lock(&p->lock);
    me->rc = rc;
    me->has_job = false;
    if (--p->busy == 0) pthread_cond_broadcast(&p->job_done);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

int od_writers_start(od_writers **out, int (*open)(void *ctx, od_sink **out, od_error *err), void *open_ctx,
                     const od_pipeline_config *cfg, int n, od_error *err) {
  od_writers *p = calloc(1, sizeof *p);
  if (!p || !(p->w = calloc((size_t)n, sizeof *p->w))) {
    free(p);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->job_ready, NULL);
  pthread_cond_init(&p->job_done, NULL);
  p->n = n;
  for (int i = 0; i < n; i++) {
    writer *me = &p->w[i];
    me->pool = p;
    int rc = open(open_ctx, &me->sink, err);
    if (rc) {
      od_writers_stop(p);
      return od_error_prefix(err, "pipeline %s: opening parallel writer %d: ", cfg->name, i + 1);
    }
    if (pthread_create(&me->thread, NULL, writer_main, me) != 0) {
      od_writers_stop(p);
      return OD_FAIL(err, OD_ENOMEM, "pipeline %s: cannot start writer thread %d", cfg->name, i + 1);
    }
    me->started = true;
  }
  *out = p;
  return OD_OK;
}

void od_writers_run(od_writers *p, od_change *const *lists, const size_t *counts) {
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < p->n; i++) {
    writer *me = &p->w[i];
    me->rc = OD_OK;
    if (!counts[i]) continue;
    me->changes = lists[i];
    me->n = counts[i];
    me->has_job = true;
    p->busy++;
  }
  pthread_cond_broadcast(&p->job_ready);
  pthread_mutex_unlock(&p->lock);
}

int od_writers_wait(od_writers *p, od_error *err) {
  pthread_mutex_lock(&p->lock);
  while (p->busy) pthread_cond_wait(&p->job_done, &p->lock);
  int rc = OD_OK;
  for (int i = 0; i < p->n && !rc; i++) {
    if (p->w[i].rc) {
      rc = p->w[i].rc;
      if (err) *err = p->w[i].err;
    }
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

void od_writers_stop(od_writers *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->stopping = true;
  pthread_cond_broadcast(&p->job_ready);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < p->n; i++) {
    if (p->w[i].started) pthread_join(p->w[i].thread, NULL);
    if (p->w[i].sink) p->w[i].sink->ops->close(p->w[i].sink);
  }
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->job_ready);
  pthread_cond_destroy(&p->job_done);
  free(p->w);
  free(p);
}
