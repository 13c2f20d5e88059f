/* pg_mesh.c — see pg_mesh.h. The stamp's text form (one line, parsed by the PostgreSQL sink's
 * postgres_mesh.c):
 *   v2 <node> <commit LSN, hex> <commit time, µs since 1970> <hlc, µs> [<node>:<LSN hex>:<time µs> ...]
 * Version-vector entries come from the Origin messages of transactions this node applied: the
 * origin name "odsync_<node>" names the node, the origin LSN is that node's commit LSN (the sink
 * passes it to pg_replication_origin_xact_setup) and the time is the latest author's commit time
 * of the applying transaction, read from its "odsync.hlc" message (the Begin's commit time too,
 * from sinks that gave it to pg_replication_origin_xact_setup; today's sinks pass 0 there so that
 * the applied transaction's commit timestamp on this node is this node's own commit time).
 * The hybrid logical clock (docs/MULTI_MASTER.md, "Clock skew"): a local transaction T gets
 *   hlc(T) = max(commit time of T, M(T) + 1)
 * where M(T) is the highest hlc of the applied transactions that committed on this node before T:
 * in the stream, the "odsync.hlc" messages of the dropped transactions before T (commit order);
 * from before the stream's start, the seeded rows of _odsync_hlc whose commit time is before T's
 * (the sink computes the same M from the same table for a local row version).
 * Pointer ownership: everything here is owned by the pg_mesh; the stamp handed to the pipeline
 * points into it and is valid during the call (the pipeline copies it).
 */
#include "sources/pg/pg_mesh.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/pg/pg_position.h"

#define PG_EPOCH_UNIX_US 946684800000000LL /* PostgreSQL's epoch: the decoded time of an origin timestamp 0 */

typedef struct vv_entry {
  char node[64];
  uint64_t lsn;
  int64_t ts;
} vv_entry;

typedef struct seed_row {
  int64_t at;  /* the applying transaction's commit time on this node, µs */
  int64_t hlc; /* the highest hlc it applied */
} seed_row;

struct pg_mesh {
  char node[64];
  vv_entry vv[OD_MESH_NODES_MAX * 2];
  int nvv;
  int64_t max_hlc;  /* highest hlc applied on this node, from the stream's messages (0: none yet) */
  seed_row *seed;   /* _odsync_hlc at the stream's start, sorted by `at` (owned) */
  int64_t *seed_max; /* prefix maxima of seed[].hlc */
  size_t nseed;
  bool seen;     /* the open transaction's first change was handled */
  bool dropping; /* the open transaction carries an origin */
  bool grew;     /* ... and it raised an entry of the version vector */
  int64_t msg_ts; /* its "odsync.hlc" message's author commit time (0: none) */
  uint64_t dropped;
  uint64_t echo_rows;  /* row changes (not messages) of dropped transactions: the echo that reached us */
  uint64_t echo_bytes; /* ... their values' bytes */
  char stamp[64 + 40 + OD_MESH_NODES_MAX * 2 * 110];
};

pg_mesh *od_pg_mesh_new(const char *node) {
  pg_mesh *m = calloc(1, sizeof *m);
  if (m) snprintf(m->node, sizeof m->node, "%s", node);
  return m;
}

void od_pg_mesh_free(pg_mesh *m) {
  if (!m) return;
  free(m->seed);
  free(m->seed_max);
  free(m);
}

static int cmp_seed(const void *a, const void *b) {
  const seed_row *x = a, *y = b;
  return x->at < y->at ? -1 : x->at > y->at;
}

int od_pg_mesh_seed(pg_mesh *m, const int64_t *at, const int64_t *hlc, size_t n, od_error *err) {
  free(m->seed);
  free(m->seed_max);
  m->seed = NULL;
  m->seed_max = NULL;
  m->nseed = 0;
  m->max_hlc = 0; /* a new stream: what it delivers comes after its start */
  if (!n) return OD_OK;
  m->seed = malloc(n * sizeof *m->seed);
  m->seed_max = malloc(n * sizeof *m->seed_max);
  if (!m->seed || !m->seed_max) return OD_FAIL(err, OD_ENOMEM, "mesh node %s: out of memory", m->node);
  for (size_t i = 0; i < n; i++) m->seed[i] = (seed_row){at[i], hlc[i]};
  qsort(m->seed, n, sizeof *m->seed, cmp_seed);
  for (size_t i = 0; i < n; i++)
    m->seed_max[i] = i && m->seed_max[i - 1] > m->seed[i].hlc ? m->seed_max[i - 1] : m->seed[i].hlc;
  m->nseed = n;
  return OD_OK;
}

/* The highest seeded hlc whose applying transaction committed before `ts` (INT64_MIN: none). */
static int64_t seed_before(const pg_mesh *m, int64_t ts) {
  size_t lo = 0, hi = m->nseed; /* first row with at >= ts */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->seed[mid].at < ts) lo = mid + 1;
    else hi = mid;
  }
  return lo ? m->seed_max[lo - 1] : INT64_MIN;
}

int64_t od_pg_mesh_hlc(const pg_mesh *m, int64_t commit_time) {
  int64_t base = seed_before(m, commit_time);
  if (m->max_hlc > base) base = m->max_hlc;
  return base >= commit_time ? base + 1 : commit_time;
}

void od_pg_mesh_begin(pg_mesh *m) {
  m->seen = false;
  m->dropping = false;
  m->grew = false;
  m->msg_ts = 0;
}

int64_t od_pg_mesh_commit_time(const pg_mesh *m, const od_txn_info *t) {
  return m->dropping && m->msg_ts && t->commit_time <= PG_EPOCH_UNIX_US ? m->msg_ts : t->commit_time;
}

uint64_t od_pg_mesh_dropped(const pg_mesh *m) { return m->dropped; }

void od_pg_mesh_echo(const pg_mesh *m, uint64_t *rows, uint64_t *bytes) {
  *rows = m->echo_rows;
  *bytes = m->echo_bytes;
}

static uint64_t tuple_bytes(const od_tuple *t) {
  uint64_t n = 0;
  for (uint16_t i = 0; i < t->ncolumns; i++) n += t->values[i].len;
  return n;
}

static void note_origin(pg_mesh *m, const od_txn_info *t, int64_t ts) {
  const char *name = t->origin;
  size_t pl = strlen(OD_MESH_ORIGIN_PREFIX);
  if (strncmp(name, OD_MESH_ORIGIN_PREFIX, pl) == 0) name += pl;
  int i = 0;
  while (i < m->nvv && strcmp(m->vv[i].node, name) != 0) i++;
  if (i == m->nvv) {
    if (m->nvv == (int)(sizeof m->vv / sizeof m->vv[0])) return; /* more origins than a mesh has nodes */
    snprintf(m->vv[i].node, sizeof m->vv[i].node, "%s", name);
    m->nvv++;
  }
  if (t->origin_lsn > m->vv[i].lsn) {
    m->vv[i].lsn = t->origin_lsn;
    m->grew = true;
  }
  if (ts > m->vv[i].ts) {
    m->vv[i].ts = ts;
    m->grew = true;
  }
}

/* " <node>:<LSN hex>:<time µs>" per entry after n bytes of m->stamp; the new length (>= size: too long). */
static size_t put_vv(pg_mesh *m, size_t n) {
  for (int i = 0; i < m->nvv && n < sizeof m->stamp; i++)
    n += (size_t)snprintf(m->stamp + n, sizeof m->stamp - n, " %s:%" PRIX64 ":%" PRId64, m->vv[i].node, m->vv[i].lsn,
                          m->vv[i].ts);
  return n;
}

static int send_message(pg_mesh *m, const od_txn_info *t, const char *prefix, size_t n, uint32_t index,
                        const od_change_handler *out, od_error *err) {
  if (n >= sizeof m->stamp)
    return OD_FAIL(err, OD_EINVAL, "mesh node %s: version vector too long for a stamp", m->node);
  od_value vals[2] = {{.data = prefix, .len = (uint32_t)strlen(prefix), .kind = OD_VALUE_TEXT},
                      {.data = m->stamp, .len = (uint32_t)n, .kind = OD_VALUE_TEXT}};
  od_change st = {.op = OD_OP_MESSAGE, .index = index, .newtup = {.ncolumns = 2, .values = vals}};
  return out->change(out->ctx, t, &st, err);
}

int od_pg_mesh_commit(pg_mesh *m, const od_txn_info *t, const od_change_handler *out, od_error *err) {
  if (!m->dropping || !m->grew) return OD_OK;
  m->grew = false;
  size_t n = (size_t)snprintf(m->stamp, sizeof m->stamp, "v1 %s", m->node);
  return send_message(m, t, OD_MESH_VV_PREFIX, put_vv(m, n), 0, out, err);
}

/* An applied transaction's "odsync.hlc" message: "<latest author's commit time µs> <highest hlc>". */
static void note_hlc(pg_mesh *m, const od_txn_info *t, const od_change *c) {
  if (c->op != OD_OP_MESSAGE || c->newtup.ncolumns < 2) return;
  const od_value *p = &c->newtup.values[0], *v = &c->newtup.values[1];
  if (!p->data || p->len != strlen(OD_MESH_HLC_PREFIX) || memcmp(p->data, OD_MESH_HLC_PREFIX, p->len) != 0) return;
  char buf[64];
  size_t n = v->len < sizeof buf - 1 ? v->len : sizeof buf - 1;
  memcpy(buf, v->data, n);
  buf[n] = '\0';
  long long ts = 0, hlc = 0;
  if (sscanf(buf, "%lld %lld", &ts, &hlc) != 2) return;
  note_origin(m, t, ts);
  if (ts > m->msg_ts) m->msg_ts = ts;
  if (hlc > m->max_hlc) m->max_hlc = hlc;
}

int od_pg_mesh_change(pg_mesh *m, const od_txn_info *t, const od_change *c, const od_change_handler *out,
                      od_error *err) {
  if (t->xid == 0) return out->change(out->ctx, t, c, err); /* a non-transactional message */
  if (!m->seen) {
    m->seen = true;
    m->dropping = t->origin != NULL;
    if (m->dropping) {
      /* from a sink that passed the author's time to pg_replication_origin_xact_setup; today's pass
       * 0 (PostgreSQL's epoch here) and the message carries it */
      note_origin(m, t, t->commit_time > PG_EPOCH_UNIX_US ? t->commit_time : 0);
      m->dropped++;
    } else {
      uint64_t lsn = od_pg_lsn(&t->start);
      size_t n = (size_t)snprintf(m->stamp, sizeof m->stamp, "v2 %s %" PRIX64 " %" PRId64 " %" PRId64, m->node, lsn,
                                  t->commit_time, od_pg_mesh_hlc(m, t->commit_time));
      int rc = send_message(m, t, OD_MESH_PREFIX, put_vv(m, n), c->index, out, err);
      if (rc) return rc;
    }
  }
  if (m->dropping) {
    if (c->op == OD_OP_MESSAGE) {
      note_hlc(m, t, c);
    } else {
      m->echo_rows++;
      m->echo_bytes += tuple_bytes(&c->newtup) + tuple_bytes(&c->oldtup);
    }
    return OD_OK;
  }
  return out->change(out->ctx, t, c, err);
}
