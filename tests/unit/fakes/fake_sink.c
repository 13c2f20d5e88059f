/* fake_sink.c — see fakes.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakes.h"
#include "odsync/registry.h"

void fake_source_reset_acks(void);

#define STORES_MAX 8

static fake_store *stores[STORES_MAX];
static int nstores;
static pthread_mutex_t stores_mu = PTHREAD_MUTEX_INITIALIZER;

fake_store *fake_store_get(const char *name) {
  pthread_mutex_lock(&stores_mu);
  fake_store *st = NULL;
  for (int i = 0; i < nstores && !st; i++)
    if (!strcmp(stores[i]->name, name)) st = stores[i];
  if (!st && nstores < STORES_MAX && (st = calloc(1, sizeof *st))) {
    snprintf(st->name, sizeof st->name, "%s", name);
    pthread_mutex_init(&st->mu, NULL);
    stores[nstores++] = st;
  }
  pthread_mutex_unlock(&stores_mu);
  return st;
}

void fake_reset(void) {
  pthread_mutex_lock(&stores_mu);
  for (int i = 0; i < nstores; i++) {
    for (int r = 0; r <= FAKE_ROWS_MAX; r++) {
      free(stores[i]->rows[r]);
      free(stores[i]->secret[r]);
    }
    pthread_mutex_destroy(&stores[i]->mu);
    free(stores[i]);
  }
  nstores = 0;
  pthread_mutex_unlock(&stores_mu);
  fake_source_reset_acks();
}

/* A change kept until commit (values copied). */
typedef struct pending {
  uint8_t op;
  long id;
  char *v, *secret;
  bool keep_secret;
  int ncolumns;
  const od_relation *rel;
} pending;

typedef struct fake_sink {
  od_sink base;
  fake_store *st;
  bool in_txn;
  pending *p;
  size_t np, cap;
} fake_sink;

static const char *const keys[] = {"store", "fail_commit_at", "retriable", "down_opens", NULL};

static void drop_pending(fake_sink *s) {
  for (size_t i = 0; i < s->np; i++) {
    free(s->p[i].v);
    free(s->p[i].secret);
  }
  s->np = 0;
}

static int fk_open(const od_config_section *cfg, const char *name, od_sink **out, od_error *err) {
  (void)name;
  const char *store;
  long fail_at, down;
  bool retriable;
  int rc;
  if ((rc = od_config_check_keys(cfg, keys, err)) || (rc = od_config_require_string(cfg, "store", &store, err)) ||
      (rc = od_config_int(cfg, "fail_commit_at", 0, 0, 1000000, &fail_at, err)) ||
      (rc = od_config_bool(cfg, "retriable", true, &retriable, err)) ||
      (rc = od_config_int(cfg, "down_opens", 0, 0, 1000000, &down, err)))
    return rc;
  fake_sink *s = calloc(1, sizeof *s);
  if (!s || !(s->st = fake_store_get(store))) {
    free(s);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  s->base.ops = &fake_sink_ops;
  pthread_mutex_lock(&s->st->mu);
  if (s->st->failed_once && s->st->down_opens > s->st->opens_refused) {
    s->st->opens_refused++;
    pthread_mutex_unlock(&s->st->mu);
    free(s);
    return OD_FAIL_RETRY(err, OD_ECONNECT, "fake sink: store is down");
  }
  s->st->down_opens = (uint64_t)down;
  s->st->fail_commit_at = (uint64_t)fail_at;
  s->st->fail_retriable = retriable;
  pthread_mutex_unlock(&s->st->mu);
  *out = &s->base;
  return OD_OK;
}

static int fk_read_position(od_sink *base, od_pos *out, od_error *err) {
  (void)err;
  fake_sink *s = (fake_sink *)base;
  pthread_mutex_lock(&s->st->mu);
  *out = s->st->checkpoint;
  pthread_mutex_unlock(&s->st->mu);
  return OD_OK;
}

static int fk_begin(od_sink *base, od_error *err) {
  fake_sink *s = (fake_sink *)base;
  if (s->in_txn) return OD_FAIL(err, OD_EINVAL, "fake sink: begin inside a transaction");
  s->in_txn = true;
  return OD_OK;
}

static char *text_of(const od_value *v) {
  return v->kind == OD_VALUE_TEXT ? strndup(v->data, v->len) : NULL;
}

static int fk_apply(od_sink *base, const od_change *ch, size_t n, od_error *err) {
  fake_sink *s = (fake_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "fake sink: apply outside a transaction");
  for (size_t i = 0; i < n; i++) {
    const od_change *c = &ch[i];
    if (!c->rel) continue;
    if (s->np == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 64;
      pending *p = realloc(s->p, cap * sizeof *p);
      if (!p) return OD_FAIL(err, OD_ENOMEM, "out of memory");
      s->p = p;
      s->cap = cap;
    }
    const od_tuple *t = c->op == OD_OP_DELETE ? &c->oldtup : &c->newtup;
    pending *p = &s->p[s->np++];
    *p = (pending){.op = c->op, .ncolumns = c->rel->ncolumns, .rel = c->rel};
    p->id = t->ncolumns ? strtol(t->values[0].data, NULL, 10) : 0;
    if (c->op != OD_OP_DELETE && t->ncolumns > 1) p->v = text_of(&t->values[1]);
    if (c->op != OD_OP_DELETE && t->ncolumns > 2) {
      p->keep_secret = t->values[2].kind == OD_VALUE_UNCHANGED;
      p->secret = text_of(&t->values[2]);
    }
    if (p->id < 1 || p->id > FAKE_ROWS_MAX) return OD_FAIL(err, OD_ESINK, "fake sink: id %ld out of range", p->id);
  }
  return OD_OK;
}

static int commit_with(fake_sink *s, const od_pos *pos, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "fake sink: commit without begin");
  fake_store *st = s->st;
  pthread_mutex_lock(&st->mu);
  st->commits++;
  if (st->fail_commit_at && st->commits == st->fail_commit_at && !st->failed_once) {
    st->failed_once = true;
    bool retriable = st->fail_retriable;
    pthread_mutex_unlock(&st->mu);
    return retriable ? OD_FAIL_RETRY(err, OD_ESINK, "fake sink %s: injected failure at commit %llu", st->name,
                                     (unsigned long long)st->commits)
                     : OD_FAIL(err, OD_ESINK, "fake sink %s: injected fatal failure", st->name);
  }
  for (size_t i = 0; i < s->np; i++) {
    pending *p = &s->p[i];
    st->changes++;
    st->ncolumns_seen = p->ncolumns;
    size_t o = 0;
    st->names_seen[0] = '\0';
    for (int c = 0; c < p->ncolumns && o < sizeof st->names_seen; c++) {
      o += (size_t)snprintf(st->names_seen + o, sizeof st->names_seen - o, "%s%s", c ? "," : "", p->rel->columns[c].name);
      if (c < 3) st->types_seen[c] = p->rel->columns[c].type_oid;
    }
    if (p->op == OD_OP_DELETE) {
      if (!st->rows[p->id]) st->losses++;
      free(st->rows[p->id]);
      free(st->secret[p->id]);
      st->rows[p->id] = st->secret[p->id] = NULL;
      continue;
    }
    if (p->op == OD_OP_INSERT && st->rows[p->id]) st->duplicates++;
    if (p->op == OD_OP_UPDATE && !st->rows[p->id]) st->losses++;
    free(st->rows[p->id]);
    st->rows[p->id] = p->v;
    p->v = NULL;
    if (!p->keep_secret) {
      free(st->secret[p->id]);
      st->secret[p->id] = p->secret;
      p->secret = NULL;
    }
  }
  if (pos) st->checkpoint = *pos;
  pthread_mutex_unlock(&st->mu);
  drop_pending(s);
  s->in_txn = false;
  return OD_OK;
}

static int fk_commit(od_sink *base, const od_pos *pos, od_error *err) { return commit_with((fake_sink *)base, pos, err); }
static int fk_commit_data(od_sink *base, od_error *err) { return commit_with((fake_sink *)base, NULL, err); }

static void fk_rollback(od_sink *base) {
  fake_sink *s = (fake_sink *)base;
  drop_pending(s);
  s->in_txn = false;
}

static void fk_close(od_sink *base) {
  fake_sink *s = (fake_sink *)base;
  drop_pending(s);
  free(s->p);
  free(s);
}

const od_sink_ops fake_sink_ops = {
    .type = "fakesink",
    .caps = OD_SINK_ATOMIC_CHECKPOINT,
    .max_writers = 1,
    .open = fk_open,
    .read_position = fk_read_position,
    .begin = fk_begin,
    .apply = fk_apply,
    .commit = fk_commit,
    .commit_data = fk_commit_data,
    .rollback = fk_rollback,
    .close = fk_close,
};

void fake_register(void) {
  static bool done;
  if (done) return;
  done = true;
  od_registry_add_source(&fake_source_ops);
  od_registry_add_sink(&fake_sink_ops);
}
