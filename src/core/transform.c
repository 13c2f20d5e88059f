/* transform.c — see core/transform.h. */
#include "core/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/pii_guard.h"
#include "odsync/registry.h"

typedef struct rel_map {
  const od_relation *in, *out;
  bool identity;               /* no transform touches this table */
  const od_relation **stages;  /* stages[i]: what transform i receives; stages[nt] = out (owned array) */
  od_pii_rel *pii;             /* columns still checked by the PII guard, or NULL (owned by the guard) */
} rel_map;

typedef struct chain {
  od_sink base;      /* ops = &chain->ops */
  od_sink_ops ops;   /* the adapter's type and caps, our slots */
  od_sink *inner;
  od_transform **t;
  int nt;
  bool keeps_values; /* every transform keeps values as they are */
  rel_map *maps;
  size_t nmaps, cap;
  od_arena arena;
  struct chain_scratch { od_scratch s; od_arena *a; } scratch;
  od_change *out;
  size_t out_cap;
  od_pii_guard *guard;  /* pii.detect (core/pii_guard.h), or NULL */
} chain;

static void *scratch_alloc(od_scratch *s, size_t size) {
  return od_arena_alloc(((struct chain_scratch *)s)->a, size);
}

static int open_one(const od_config_section *sec, od_transform **out, od_error *err) {
  const od_transform_ops *ops = od_transform_find(sec->type);
  if (!ops)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.type '%s' is not a known transform (known: %s)", sec->file,
                   sec->line, sec->col, sec->path, sec->type ? sec->type : "", od_transform_types());
  return ops->open(sec, out, err);
}

int od_transforms_check(const od_pipeline_config *cfg, const od_sink_config *sk, od_error *err) {
  const od_transform_list *lists[2] = {&cfg->transforms, &sk->transforms};
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < lists[l]->n; i++) {
      od_transform *t = NULL;
      int rc = open_one(&lists[l]->items[i], &t, err);
      if (rc) return rc;
      t->ops->close(t);
    }
  return OD_OK;
}

/* ---- relations ------------------------------------------------------------------------------ */

static int map_rel(chain *c, const od_relation *in, const rel_map **out, od_error *err) {
  for (size_t i = c->nmaps; i-- > 0;)
    if (c->maps[i].in == in) {
      *out = &c->maps[i];
      return OD_OK;
    }
  if (in->previous) { /* outputs of older versions first, so an output's `previous` exists */
    const rel_map *prev;
    int rc = map_rel(c, in->previous, &prev, err);
    if (rc) return rc;
  }
  const od_relation **stages = calloc((size_t)c->nt + 1, sizeof *stages);
  if (!stages) return OD_FAIL(err, OD_ENOMEM, "transforms: out of memory");
  const od_relation *cur = in;
  for (int i = 0; i < c->nt; i++) {
    stages[i] = cur;
    const od_relation *next = cur;
    int rc = c->t[i]->ops->relation(c->t[i], cur, &next, err);
    if (rc) {
      free(stages);
      return od_error_prefix(err, "transform %s on %s.%s: ", c->t[i]->ops->type, in->schema, in->name);
    }
    cur = next;
  }
  stages[c->nt] = cur;
  od_pii_rel *pii = NULL;
  if (c->guard) {
    int rc = od_pii_guard_relation(c->guard, in, &pii, err);
    if (rc) {
      free(stages);
      return rc;
    }
  }
  if (c->nmaps == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    rel_map *m = realloc(c->maps, cap * sizeof *m);
    if (!m) {
      free(stages);
      return OD_FAIL(err, OD_ENOMEM, "transforms: out of memory");
    }
    c->maps = m;
    c->cap = cap;
  }
  c->maps[c->nmaps] = (rel_map){.in = in, .out = cur, .identity = cur == in, .stages = stages, .pii = pii};
  *out = &c->maps[c->nmaps++];
  return OD_OK;
}

/* Rewrite n changes into c->out; *m = how many are kept. */
static int rewrite(chain *c, const od_change *in, size_t n, size_t *m, od_error *err) {
  if (c->out_cap < n) {
    od_change *o = realloc(c->out, n * sizeof *o);
    if (!o) return OD_FAIL(err, OD_ENOMEM, "transforms: out of memory");
    c->out = o;
    c->out_cap = n;
  }
  od_arena_reset(&c->arena);
  size_t k = 0;
  const od_relation *last_in = NULL;
  const rel_map *map = NULL;
  for (size_t i = 0; i < n; i++) {
    const od_change *ch = &in[i];
    if (!ch->rel) { /* logical messages pass unchanged */
      c->out[k++] = *ch;
      continue;
    }
    if (ch->rel != last_in) {
      int rc = map_rel(c, ch->rel, &map, err);
      if (rc) return rc;
      last_in = ch->rel;
    }
    if (map->pii) {
      int rc = od_pii_guard_change(c->guard, map->pii, ch, err);
      if (rc) return rc;
    }
    if (map->identity) {
      c->out[k++] = *ch;
      continue;
    }
    /* Stage by stage through two buffers, the last stage writing into the output slot; the values
     * arrays copied for this change may be rewritten in place by later stages (od_scratch.reuse). */
    memset(c->scratch.s.owned, 0, sizeof c->scratch.s.owned);
    c->scratch.s.nowned = 0;
    od_change buf[2];
    const od_change *cur = ch;
    bool keep = true;
    for (int t = 0; t < c->nt && keep; t++) {
      const od_relation *rel_in = map->stages[t], *rel_out = map->stages[t + 1];
      if (rel_out == rel_in) continue;
      od_change *next = &buf[cur == &buf[0]];
      int rc = c->t[t]->ops->change(c->t[t], rel_out, cur, next, &c->scratch.s, &keep, err);
      if (rc) return od_error_prefix(err, "transform %s on %s.%s: ", c->t[t]->ops->type, rel_in->schema, rel_in->name);
      cur = next;
    }
    if (keep) c->out[k++] = *cur;
  }
  *m = k;
  return OD_OK;
}

/* ---- the chain's sink slots ------------------------------------------------------------------ */

#define INNER(s) (((chain *)(s))->inner)

static int ch_read_position(od_sink *s, od_pos *out, od_error *err) {
  return INNER(s)->ops->read_position(INNER(s), out, err);
}
static int ch_begin(od_sink *s, od_error *err) { return INNER(s)->ops->begin(INNER(s), err); }
static int ch_apply(od_sink *s, const od_change *changes, size_t n, od_error *err) {
  chain *c = (chain *)s;
  size_t m;
  int rc = rewrite(c, changes, n, &m, err);
  if (rc) return rc;
  return m ? c->inner->ops->apply(c->inner, c->out, m, err) : OD_OK;
}
static int ch_commit(od_sink *s, const od_pos *pos, od_error *err) {
  return INNER(s)->ops->commit(INNER(s), pos, err);
}
static int ch_commit_data(od_sink *s, od_error *err) { return INNER(s)->ops->commit_data(INNER(s), err); }
static void ch_rollback(od_sink *s) { INNER(s)->ops->rollback(INNER(s)); }
/* Transforms never rename tables: the inner sink's targets are the chain's. */
static int ch_check_tables(od_sink *s, int n, const char *const *schemas, const char *const *names, const bool *keyed,
                           void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx, od_error *err) {
  return INNER(s)->ops->check_tables(INNER(s), n, schemas, names, keyed, problem, ctx, err);
}
static int ch_resnapshot_table(od_sink *s, const char *schema, const char *name, bool *recreate, od_error *err) {
  return INNER(s)->ops->resnapshot_table(INNER(s), schema, name, recreate, err);
}
static int ch_set_mark(od_sink *s, const char *key, uint64_t v, od_error *err) {
  return INNER(s)->ops->set_mark(INNER(s), key, v, err);
}
static int ch_get_mark(od_sink *s, const char *key, uint64_t *out, od_error *err) {
  return INNER(s)->ops->get_mark(INNER(s), key, out, err);
}
static int ch_set_text_mark(od_sink *s, const char *key, const char *text, od_error *err) {
  return INNER(s)->ops->set_text_mark(INNER(s), key, text, err);
}
static int ch_get_text_mark(od_sink *s, const char *key, char **out, od_error *err) {
  return INNER(s)->ops->get_text_mark(INNER(s), key, out, err);
}
static int ch_savepoint(od_sink *s, int op, od_error *err) { return INNER(s)->ops->savepoint(INNER(s), op, err); }
static int ch_put_dead_letter(od_sink *s, const od_dead_letter *dl, od_error *err) {
  return INNER(s)->ops->put_dead_letter(INNER(s), dl, err);
}
static int ch_list_dead_letters(od_sink *s, const char *pipeline, int64_t id,
                                int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err) {
  return INNER(s)->ops->list_dead_letters(INNER(s), pipeline, id, each, ctx, err);
}
static int ch_drop_dead_letter(od_sink *s, int64_t id, bool *found, od_error *err) {
  return INNER(s)->ops->drop_dead_letter(INNER(s), id, found, err);
}
static int ch_load_prepare(od_sink *s, const od_relation *rel, const char *binary_format, bool *binary,
                           od_error *err) {
  chain *c = (chain *)s;
  const rel_map *m;
  int rc = map_rel(c, rel, &m, err);
  if (rc) return rc;
  /* Rewritten values are text; values only moved or dropped may stay binary. */
  const char *fmt = m->identity || c->keeps_values ? binary_format : NULL;
  return c->inner->ops->load_prepare(c->inner, m->out, fmt, binary, err);
}
static int ch_load(od_sink *s, const od_change *rows, size_t n, od_error *err) {
  chain *c = (chain *)s;
  size_t m;
  int rc = rewrite(c, rows, n, &m, err);
  if (rc) return rc;
  return m ? c->inner->ops->load(c->inner, c->out, m, err) : OD_OK;
}
static int ch_load_finish(od_sink *s, const od_relation *rel, od_error *err) {
  chain *c = (chain *)s;
  const rel_map *m;
  int rc = map_rel(c, rel, &m, err);
  return rc ? rc : c->inner->ops->load_finish(c->inner, m->out, err);
}

static int ch_durable(od_sink *s, bool poll, od_pos *out, od_error *err) {
  return INNER(s)->ops->durable(INNER(s), poll, out, err);
}

static void ch_close(od_sink *s) {
  chain *c = (chain *)s;
  if (c->inner) c->inner->ops->close(c->inner);
  for (int i = 0; i < c->nt; i++) c->t[i]->ops->close(c->t[i]);
  free(c->t);
  for (size_t i = 0; i < c->nmaps; i++) free(c->maps[i].stages);
  free(c->maps);
  free(c->out);
  od_arena_destroy(&c->arena);
  od_pii_guard_free(c->guard);
  free(c);
}

int od_sink_open_chain(const od_pipeline_config *cfg, const od_sink_config *sk, const od_sink_ops *ops,
                       const char *name, od_sink **out, od_error *err) {
  int nt = cfg->transforms.n + sk->transforms.n;
  if (nt == 0 && cfg->pii.detect == OD_PII_OFF) return ops->open(&sk->section, name, out, err);
  chain *c = calloc(1, sizeof *c);
  if (!c || !(c->t = calloc((size_t)nt, sizeof *c->t))) {
    free(c);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  }
  od_arena_init(&c->arena, 64 * 1024);
  c->scratch = (struct chain_scratch){.s = {.alloc = scratch_alloc, .reuse = true}, .a = &c->arena};
  c->keeps_values = true;
  const od_transform_list *lists[2] = {&cfg->transforms, &sk->transforms};
  int rc = od_pii_guard_new(cfg, sk, &c->guard, err);
  for (int l = 0; l < 2 && !rc; l++)
    for (int i = 0; i < lists[l]->n && !rc; i++) {
      rc = open_one(&lists[l]->items[i], &c->t[c->nt], err);
      if (rc) break;
      /* nt counts every transform, also after one that rewrites values */
      c->keeps_values = c->t[c->nt]->ops->keeps_values && c->keeps_values;
      c->nt++;
    }
  if (!rc) rc = ops->open(&sk->section, name, &c->inner, err);
  if (rc) {
    ch_close(&c->base);
    return rc;
  }
  c->ops = *c->inner->ops; /* type, caps (the instance's: a sink may drop one by config), max_writers; every slot
                            below forwards */
  c->ops.read_position = ch_read_position;
  c->ops.begin = ch_begin;
  c->ops.apply = ch_apply;
  c->ops.commit = ch_commit;
  c->ops.commit_data = ch_commit_data;
  c->ops.rollback = ch_rollback;
  c->ops.close = ch_close;
  if (c->ops.caps & OD_SINK_MARKS) {
    c->ops.set_mark = ch_set_mark;
    c->ops.get_mark = ch_get_mark;
  }
  if (c->ops.caps & OD_SINK_TEXT_MARKS) {
    c->ops.set_text_mark = ch_set_text_mark;
    c->ops.get_text_mark = ch_get_text_mark;
  }
  if (c->ops.caps & OD_SINK_TABLE_OWNERSHIP) {
    c->ops.check_tables = ch_check_tables;
    c->ops.resnapshot_table = ch_resnapshot_table;
  }
  if (c->ops.caps & OD_SINK_DEAD_LETTERS) {
    c->ops.savepoint = ch_savepoint;
    c->ops.put_dead_letter = ch_put_dead_letter;
    c->ops.list_dead_letters = ch_list_dead_letters;
    c->ops.drop_dead_letter = ch_drop_dead_letter;
  }
  if (c->ops.caps & OD_SINK_BULK_LOAD) {
    c->ops.load_prepare = ch_load_prepare;
    c->ops.load = ch_load;
    c->ops.load_finish = ch_load_finish;
  }
  if (c->ops.caps & OD_SINK_DEFERRED_DURABILITY) c->ops.durable = ch_durable;
  c->base.ops = &c->ops;
  *out = &c->base;
  return OD_OK;
}
