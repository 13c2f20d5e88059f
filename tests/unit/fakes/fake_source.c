/* fake_source.c — see fakes.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakes.h"

typedef struct fake_source {
  od_source base;
  long txns, per_poll;
  long next;       /* next transaction to deliver */
  bool started, rel_sent, old_full;
  od_relation rel;
  od_column cols[3];
} fake_source;

static _Atomic uint64_t acked;
static _Atomic bool regressed;

uint64_t fake_acked(void) { return acked; }
void fake_source_reset_acks(void);
void fake_source_reset_acks(void) {
  acked = 0;
  regressed = false;
}
bool fake_ack_regressed(void) { return regressed; }

static int fp_format(const od_pos *p, char *buf, size_t size) {
  int n = snprintf(buf, size, "%llu", (unsigned long long)od_pos_to_u64(p));
  return n < 0 || (size_t)n >= size ? -1 : n;
}

static int fp_parse(const char *body, od_pos *out) {
  char *end;
  unsigned long long v = strtoull(body, &end, 10);
  if (end == body || *end) return OD_EINVAL;
  *out = od_pos_from_u64(&fake_position, v);
  return OD_OK;
}

const od_pos_kind fake_position = {.name = "fake", .format = fp_format, .parse = fp_parse};

static const char *const keys[] = {"txns", "per_poll", "old_full", NULL};

static int fs_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  (void)pipeline;
  int rc = od_config_check_keys(cfg, keys, err);
  if (rc) return rc;
  fake_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &fake_source_ops;
  if ((rc = od_config_int(cfg, "txns", 100, 1, FAKE_ROWS_MAX, &s->txns, err)) ||
      (rc = od_config_int(cfg, "per_poll", 7, 1, 1000, &s->per_poll, err)) ||
      (rc = od_config_bool(cfg, "old_full", false, &s->old_full, err))) {
    free(s);
    return rc;
  }
  s->cols[0] = (od_column){.name = "id", .type_oid = 23, .typmod = -1, .key = true, .attnum = 1};
  s->cols[1] = (od_column){.name = "v", .type_oid = 25, .typmod = -1, .attnum = 2};
  s->cols[2] = (od_column){.name = "secret", .type_oid = 25, .typmod = -1, .attnum = 3};
  s->rel = (od_relation){.oid = 1000, .schema = "public", .name = "t", .replica_identity = 'd', .ncolumns = 3,
                         .columns = s->cols, .version = 1, .has_primary_key = true};
  *out = &s->base;
  return OD_OK;
}

static int fs_check(od_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  (void)s, (void)problem, (void)ctx, (void)err;
  return 0;
}

static int fs_start(od_source *base, const od_pos *from, od_error *err) {
  (void)err;
  fake_source *s = (fake_source *)base;
  long first = 1;
  uint64_t f = od_pos_to_u64(from);
  while (first <= s->txns && fake_end((int)first) <= f) first++;
  s->next = first - 3 > 1 ? first - 3 : 1; /* resend a little, as a server may */
  s->started = true;
  return OD_OK;
}

static int emit(fake_source *s, const od_change_handler *h, long i, od_error *err) {
  od_txn_info txn = {.xid = (uint64_t)i, .start = od_pos_from_u64(&fake_position, (uint64_t)i * 10),
                     .end = od_pos_from_u64(&fake_position, fake_end((int)i)), .commit_time = 1000000 * i};
  int rc = h->begin(h->ctx, &txn, err);
  if (rc) return rc;
  char id[24], v[32], sec[32], prev[24], pv[32], ov[32], os[32];
  snprintf(id, sizeof id, "%ld", i);
  snprintf(v, sizeof v, "v%ld", i);
  snprintf(sec, sizeof sec, "s%ld", i);
  od_value ins[3] = {{.data = id, .len = (uint32_t)strlen(id), .kind = OD_VALUE_TEXT},
                     {.data = v, .len = (uint32_t)strlen(v), .kind = OD_VALUE_TEXT},
                     {.data = sec, .len = (uint32_t)strlen(sec), .kind = OD_VALUE_TEXT}};
  od_change c = {.op = OD_OP_INSERT, .rel = &s->rel, .newtup = {3, ins}, .index = 0};
  if ((rc = h->change(h->ctx, &txn, &c, err))) return rc;
  if (i > 1) {
    snprintf(prev, sizeof prev, "%ld", i - 1);
    snprintf(pv, sizeof pv, "u%ld", i - 1);
    od_value up[3] = {{.data = prev, .len = (uint32_t)strlen(prev), .kind = OD_VALUE_TEXT},
                      {.data = pv, .len = (uint32_t)strlen(pv), .kind = OD_VALUE_TEXT},
                      {.kind = OD_VALUE_UNCHANGED}};
    snprintf(ov, sizeof ov, "v%ld", i - 1);
    snprintf(os, sizeof os, "s%ld", i - 1);
    od_value old[3] = {up[0], {.data = ov, .len = (uint32_t)strlen(ov), .kind = OD_VALUE_TEXT},
                       {.data = os, .len = (uint32_t)strlen(os), .kind = OD_VALUE_TEXT}};
    od_change u = {.op = OD_OP_UPDATE, .rel = &s->rel, .newtup = {3, up}, .index = 1};
    if (s->old_full) u.old_kind = 'O', u.oldtup = (od_tuple){3, old};
    if ((rc = h->change(h->ctx, &txn, &u, err))) return rc;
  }
  return h->commit(h->ctx, &txn, err);
}

static int fs_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  fake_source *s = (fake_source *)base;
  if (!s->rel_sent && h->relation) {
    int rc = h->relation(h->ctx, &s->rel, err);
    if (rc) return rc;
    s->rel_sent = true;
  }
  for (long n = 0; n < s->per_poll && s->next <= s->txns; n++) {
    int rc = emit(s, h, s->next++, err);
    if (rc) return rc;
  }
  if (s->next > s->txns) {
    od_pos idle = od_pos_from_u64(&fake_position, fake_end((int)s->txns) + 3);
    if (h->idle) {
      int rc = h->idle(h->ctx, &idle, err);
      if (rc) return rc;
    }
    struct timespec ts = {0, (long)(timeout_ms > 20 ? 20 : timeout_ms) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return OD_OK;
}

static int fs_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)base, (void)force, (void)err;
  uint64_t d = od_pos_to_u64(durable), cur = acked;
  if (d < cur) { regressed = true; if (getenv("FAKE_ACK_DEBUG")) fprintf(stderr, "ack regressed %llu < %llu\n", (unsigned long long)d, (unsigned long long)cur); } /* a source must never be told less than before (within one run) */
  else acked = d;
  return OD_OK;
}

static void fs_close(od_source *base) { free(base); }

const od_source_ops fake_source_ops = {
    .type = "fake",
    .position = &fake_position,
    .open = fs_open,
    .check = fs_check,
    .start = fs_start,
    .poll = fs_poll,
    .ack = fs_ack,
    .close = fs_close,
};
