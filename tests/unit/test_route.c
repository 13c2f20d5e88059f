/* Unit tests for the batch router of the parallel apply (causal and eventual). */
#include "core/route.h"
#include "test.h"

static od_column kcols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "v", .type_oid = 25}};
static od_relation keyed_rel = {.oid = 1, .schema = "public", .name = "k", .replica_identity = 'd',
                                .ncolumns = 2, .columns = kcols, .version = 1, .has_primary_key = true};
static od_column lcols[] = {{.name = "a", .type_oid = 23}, {.name = "b", .type_oid = 25}};
static od_relation keyless_rel = {.oid = 2, .schema = "public", .name = "l", .replica_identity = 'f',
                                  .ncolumns = 2, .columns = lcols, .version = 1};
static od_relation other_rel = {.oid = 3, .schema = "public", .name = "o", .replica_identity = 'd',
                                .ncolumns = 2, .columns = kcols, .version = 1, .has_primary_key = true};

static od_queue q;

/* Append one change; `txn_start` marks the first change of a transaction (index 0). */
static void add(od_chunk *c, int op, const od_relation *rel, int id, bool txn_start, char old_kind, int old_id) {
  static uint32_t index;
  od_change *ch = od_chunk_add(c);
  index = txn_start ? 0 : index + 1;
  ch->op = (uint8_t)op;
  ch->rel = rel;
  ch->index = index;
  od_value *v = od_arena_alloc(&c->arena, 2 * sizeof *v);
  char *txt = od_arena_alloc(&c->arena, 16);
  int n = snprintf(txt, 16, "%d", id);
  v[0] = (od_value){.data = txt, .len = (uint32_t)n, .kind = OD_VALUE_TEXT};
  v[1] = (od_value){.data = "x", .len = 1, .kind = OD_VALUE_TEXT};
  od_tuple t = {2, v};
  if (op == OD_OP_DELETE) {
    ch->oldtup = t;
    ch->old_kind = 'K';
  } else {
    ch->newtup = t;
  }
  if (old_kind) {
    od_value *o = od_arena_alloc(&c->arena, 2 * sizeof *o);
    char *ot = od_arena_alloc(&c->arena, 16);
    int m = snprintf(ot, 16, "%d", old_id);
    o[0] = (od_value){.data = ot, .len = (uint32_t)m, .kind = OD_VALUE_TEXT};
    o[1] = v[1];
    ch->oldtup = (od_tuple){2, o};
    ch->old_kind = old_kind;
  }
}

static int writer_of(od_router *r, const od_relation *rel, const char *id) {
  for (int w = 0; w < r->nwriters; w++)
    for (size_t i = 0; i < r->counts[w]; i++) {
      const od_change *c = &r->lists[w][i];
      const od_tuple *t = c->op == OD_OP_DELETE ? &c->oldtup : &c->newtup;
      if (c->rel == rel && t->ncolumns && strcmp(t->values[0].data, id) == 0) return w;
    }
  return -1;
}

static size_t total(od_router *r) {
  size_t n = 0;
  for (int w = 0; w < r->nwriters; w++) n += r->counts[w];
  return n;
}

TEST(eventual_keeps_each_key_on_one_writer_in_order) {
  od_queue_init(&q, 1000, 1 << 20, 1);
  od_chunk *c = od_queue_take_free(&q);
  for (int t = 0; t < 50; t++) {
    add(c, OD_OP_INSERT, &keyed_rel, t, true, 0, 0);
    add(c, OD_OP_UPDATE, &keyed_rel, t, false, 0, 0);
    add(c, OD_OP_DELETE, &keyed_rel, t, false, 0, 0);
  }
  od_router r;
  od_error err = {0};
  CHECK_INT(od_router_init(&r, 4), OD_OK);
  CHECK_INT(od_route_batch(&r, OD_ROUTE_EVENTUAL, &c, 1, 0, OD_ROUTE_ALL, NULL, NULL, &err), OD_OK);
  CHECK_INT(total(&r), 150);
  int used = 0;
  for (int w = 0; w < 4; w++) {
    used += r.counts[w] > 0;
    /* per key: insert, update, delete in that order, all on this writer */
    for (size_t i = 0; i + 2 < r.counts[w] + 2 && i < r.counts[w]; i += 3) {
      CHECK_INT(r.lists[w][i].op, OD_OP_INSERT);
      CHECK_INT(r.lists[w][i + 1].op, OD_OP_UPDATE);
      CHECK_INT(r.lists[w][i + 2].op, OD_OP_DELETE);
      CHECK_STR(r.lists[w][i].newtup.values[0].data, r.lists[w][i + 2].oldtup.values[0].data);
    }
  }
  CHECK(used >= 3); /* 50 keys spread over the writers */
  od_router_free(&r);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
}

TEST(keyless_truncated_and_key_changing_tables_go_to_the_carrier) {
  od_queue_init(&q, 1000, 1 << 20, 1);
  od_chunk *c = od_queue_take_free(&q);
  for (int i = 0; i < 20; i++) add(c, OD_OP_INSERT, &keyless_rel, i, true, 0, 0);
  for (int i = 0; i < 20; i++) add(c, OD_OP_INSERT, &keyed_rel, i, true, 0, 0);
  add(c, OD_OP_UPDATE, &keyed_rel, 100, true, 'K', 5); /* key 5 becomes 100 */
  for (int i = 0; i < 20; i++) add(c, OD_OP_INSERT, &other_rel, i, true, 0, 0);
  od_router r;
  od_error err = {0};
  CHECK_INT(od_router_init(&r, 4), OD_OK);
  CHECK_INT(od_route_batch(&r, OD_ROUTE_EVENTUAL, &c, 1, 0, OD_ROUTE_ALL, NULL, NULL, &err), OD_OK);
  for (int i = 0; i < 20; i++) {
    char id[12];
    snprintf(id, sizeof id, "%d", i);
    CHECK_INT(writer_of(&r, &keyless_rel, id), 0);
    CHECK_INT(writer_of(&r, &keyed_rel, id), 0); /* the whole table: one of its keys changed */
  }
  CHECK_INT(writer_of(&r, &keyed_rel, "100"), 0);
  int spread = 0;
  for (int i = 0; i < 20; i++) {
    char id[12];
    snprintf(id, sizeof id, "%d", i);
    spread += writer_of(&r, &other_rel, id) != 0;
  }
  CHECK_INT(spread, 20); /* the unaffected table goes to the helpers only: the carrier, which
                            applies after them, keeps just the serial work */
  od_router_free(&r);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
}

TEST(causal_keeps_dependent_transactions_together_and_whole) {
  od_queue_init(&q, 1000, 1 << 20, 1);
  od_chunk *c = od_queue_take_free(&q);
  /* T0 writes keys 1,2; T1 writes 2,3 (depends on T0); T2 writes 3,4 (depends on T1);
   * T3..T12 write their own keys 100+ (independent). */
  add(c, OD_OP_INSERT, &keyed_rel, 1, true, 0, 0);
  add(c, OD_OP_INSERT, &keyed_rel, 2, false, 0, 0);
  add(c, OD_OP_UPDATE, &keyed_rel, 2, true, 0, 0);
  add(c, OD_OP_INSERT, &keyed_rel, 3, false, 0, 0);
  add(c, OD_OP_UPDATE, &keyed_rel, 3, true, 0, 0);
  add(c, OD_OP_INSERT, &keyed_rel, 4, false, 0, 0);
  for (int t = 0; t < 10; t++) {
    add(c, OD_OP_INSERT, &keyed_rel, 100 + 2 * t, true, 0, 0);
    add(c, OD_OP_INSERT, &other_rel, 100 + 2 * t, false, 0, 0);
  }
  od_router r;
  od_error err = {0};
  CHECK_INT(od_router_init(&r, 3), OD_OK);
  CHECK_INT(od_route_batch(&r, OD_ROUTE_CAUSAL, &c, 1, 0, OD_ROUTE_ALL, NULL, NULL, &err), OD_OK);
  CHECK_INT(total(&r), 26);
  int w = writer_of(&r, &keyed_rel, "1");
  CHECK(w >= 0);
  CHECK_INT(writer_of(&r, &keyed_rel, "4"), w);
  /* the chain is applied in commit order on that writer */
  int seen = 0;
  for (size_t i = 0; i < r.counts[w]; i++) {
    const char *id = r.lists[w][i].newtup.values[0].data;
    if (r.lists[w][i].rel != &keyed_rel || atoi(id) > 4) continue;
    static const char *order[] = {"1", "2", "2", "3", "3", "4"};
    CHECK_STR(id, order[seen]);
    seen++;
  }
  CHECK_INT(seen, 6);
  /* each independent transaction stays whole: both of its rows on one writer */
  int writers_used[3] = {0};
  for (int t = 0; t < 10; t++) {
    char id[12];
    snprintf(id, sizeof id, "%d", 100 + 2 * t);
    int a = writer_of(&r, &keyed_rel, id);
    CHECK_INT(writer_of(&r, &other_rel, id), a);
    writers_used[a] = 1;
  }
  CHECK(writers_used[0] + writers_used[1] + writers_used[2] >= 2);
  od_router_free(&r);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
}

TEST(a_table_whose_shape_changes_inside_the_batch_goes_to_the_carrier) {
  /* keyed_rel's next version (same table oid, another relation version): the sink alters the
   * table between them, so no helper may apply either version's changes out of order. */
  static od_column k2cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "w", .type_oid = 25}};
  static od_relation keyed_v2 = {.oid = 1, .schema = "public", .name = "k", .replica_identity = 'd',
                                 .ncolumns = 2, .columns = k2cols, .version = 2, .has_primary_key = true};
  od_queue_init(&q, 1000, 1 << 20, 1);
  od_chunk *c = od_queue_take_free(&q);
  for (int i = 0; i < 10; i++) add(c, OD_OP_INSERT, &keyed_rel, i, true, 0, 0);
  for (int i = 10; i < 20; i++) add(c, OD_OP_INSERT, &keyed_v2, i, true, 0, 0);
  for (int i = 0; i < 10; i++) add(c, OD_OP_INSERT, &other_rel, i, true, 0, 0);
  od_router r;
  od_error err = {0};
  CHECK_INT(od_router_init(&r, 4), OD_OK);
  CHECK_INT(od_route_batch(&r, OD_ROUTE_EVENTUAL, &c, 1, 0, OD_ROUTE_ALL, NULL, NULL, &err), OD_OK);
  for (int i = 0; i < 20; i++) {
    char id[12];
    snprintf(id, sizeof id, "%d", i);
    CHECK_INT(writer_of(&r, i < 10 ? &keyed_rel : &keyed_v2, id), 0);
  }
  for (int i = 0; i < 20; i++) CHECK_INT(r.lists[0][i].rel == (i < 10 ? &keyed_rel : &keyed_v2), 1); /* in order */
  int spread = 0;
  for (int i = 0; i < 10; i++) {
    char id[12];
    snprintf(id, sizeof id, "%d", i);
    spread += writer_of(&r, &other_rel, id) != 0;
  }
  CHECK_INT(spread, 10);
  od_router_free(&r);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
}

/* A batch that starts at the tail of a chunk cut by the batch before and ends at the last
 * transaction end inside its last chunk routes exactly those changes. */
TEST(a_batch_routes_only_its_span_of_the_first_and_last_chunks) {
  od_queue_init(&q, 1000, 1 << 20, 1);
  od_chunk *c[3];
  for (int j = 0; j < 3; j++) c[j] = od_queue_take_free(&q);
  for (int i = 0; i < 10; i++) add(c[0], OD_OP_INSERT, &keyed_rel, i, i % 5 == 0, 0, 0);   /* ids 0-9 */
  for (int i = 10; i < 20; i++) add(c[1], OD_OP_INSERT, &keyed_rel, i, i % 5 == 0, 0, 0);  /* ids 10-19 */
  for (int i = 20; i < 30; i++) add(c[2], OD_OP_INSERT, &keyed_rel, i, i % 5 == 0, 0, 0);  /* ids 20-29 */
  od_router r;
  od_error err = {0};
  CHECK_INT(od_router_init(&r, 4), OD_OK);
  /* from change 5 of the first chunk (id 5) to before change 5 of the last one (id 25) */
  CHECK_INT(od_route_batch(&r, OD_ROUTE_EVENTUAL, c, 3, 5, 5, NULL, NULL, &err), OD_OK);
  CHECK_INT(total(&r), 20);
  for (int id = 0; id < 30; id++) {
    char s[12];
    snprintf(s, sizeof s, "%d", id);
    if (id >= 5 && id < 25) CHECK(writer_of(&r, &keyed_rel, s) >= 1);
    else CHECK_INT(writer_of(&r, &keyed_rel, s), -1);
  }
  /* causal: the same span, grouped by transaction */
  CHECK_INT(od_route_batch(&r, OD_ROUTE_CAUSAL, c, 3, 5, 5, NULL, NULL, &err), OD_OK);
  CHECK_INT(total(&r), 20);
  /* one chunk, both ends in it */
  CHECK_INT(od_route_batch(&r, OD_ROUTE_EVENTUAL, c + 1, 1, 5, 10, NULL, NULL, &err), OD_OK);
  CHECK_INT(total(&r), 5);
  CHECK_INT(writer_of(&r, &keyed_rel, "14"), -1);
  CHECK(writer_of(&r, &keyed_rel, "15") >= 1);
  od_router_free(&r);
  for (int j = 0; j < 3; j++) od_queue_recycle(&q, c[j]);
  od_queue_destroy(&q);
}

TEST(a_carrier_batch_puts_every_change_on_writer_0_in_order) {
  od_queue_init(&q, 1000, 1 << 20, 1);
  od_chunk *c = od_queue_take_free(&q);
  for (int i = 0; i < 12; i++) add(c, OD_OP_INSERT, i % 3 ? &keyed_rel : &keyless_rel, i, i % 4 == 0, 0, 0);
  od_router r;
  od_error err = {0};
  CHECK_INT(od_router_init(&r, 4), OD_OK);
  CHECK_INT(od_route_batch(&r, OD_ROUTE_CARRIER, &c, 1, 2, 10, NULL, NULL, &err), OD_OK);
  CHECK_INT(total(&r), 8);
  CHECK_INT(r.counts[0], 8);
  for (size_t i = 0; i < r.counts[0]; i++) CHECK(r.lists[0][i].newtup.values == c->changes[2 + i].newtup.values);
  /* the same batch split: keyed changes leave the carrier */
  CHECK_INT(od_route_batch(&r, OD_ROUTE_EVENTUAL, &c, 1, 2, 10, NULL, NULL, &err), OD_OK);
  CHECK(r.counts[0] < 8);
  od_router_free(&r);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
}
