/* sinks/postgres_mesh_internal.h — state shared by postgres_mesh.c (config, session, stamps, causal
 * delivery, the batch flow) and postgres_mesh_decide.c (key states, the versions query, conflict
 * decisions, counters, the conflict log). Private to the PostgreSQL sink.
 */
#ifndef ODSYNC_SINKS_POSTGRES_MESH_INTERNAL_H
#define ODSYNC_SINKS_POSTGRES_MESH_INTERNAL_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/adapter.h"
#include "sinks/postgres_internal.h"
#include "sinks/postgres_mesh.h"

#define MESH_PREFIX "odsync.mesh"
#define MESH_HLC_PREFIX "odsync.hlc" /* the message of every applying transaction: "<max ts> <max hlc>" */
#define VV_MAX 16
#define KEYS_PER_QUERY 500
#define CAUSAL_WAIT_US (120LL * 1000000LL)
#define COUNTERS_MAX 8 /* fetched columns per table: counters plus rule columns */
#define RULES_MAX 16

enum { POL_LWW, POL_PRIORITY, POL_KEEP_LOCAL, POL_APPLY_REMOTE, POL_COLUMN_MERGE };
#define MERGE_COLS_MAX 64 /* column_merge: columns per table (a bit mask per key and transaction) */
#define KINDS 5
extern const char *const pgs_mesh_kinds[KINDS];   /* conflict kind names (postgres_mesh.c) */
extern const char *const pgs_mesh_policies[];      /* policy names by POL_*, NULL-terminated */
#define KIND_NAMES pgs_mesh_kinds
#define POLICIES pgs_mesh_policies

typedef struct vv_entry {
  char node[64];
  uint64_t lsn;
  int64_t ts;
} vv_entry;

/* The stamp of one source transaction (parsed from its "odsync.mesh" message). */
typedef struct stamp {
  uint64_t seq; /* this sink's running number of stamped source transactions */
  uint64_t lsn; /* the source commit LSN */
  int64_t ts;   /* the author's commit time, µs since 1970 */
  int64_t hlc;  /* the transaction's hybrid logical clock, µs (= ts when the author's clock led) */
  vv_entry vv[VV_MAX];
  int nvv;
} stamp;

/* A conflict policy: the mesh's default or one table's (mesh_table_policies). */
typedef struct mesh_pol {
  char *table;  /* "schema.table" (malloc'd; NULL: the mesh-wide default) */
  int policy;   /* POL_* */
  int fallback; /* column_merge: the policy of overlapping columns and of other kinds (never column_merge) */
  char prio[8][64];
  int nprio;
} mesh_pol;

typedef struct local_ver { /* one row of the versions query */
  char *key;               /* key columns' text joined by \x1f (points into the PGresult) */
  int64_t ts;              /* commit time µs, INT64_MIN when unknown */
  int64_t hlc;             /* hybrid logical clock µs (the side table's; else the commit time) */
  const char *origin;      /* replication origin name or author node, NULL: a local write */
  bool tomb;               /* no row: the key's tombstone (the local delete's version) */
  const char *ctr[COUNTERS_MAX]; /* the counter and rule columns' local values (text) */
  int prow;                /* its row in the PGresult (column_merge: the whole local row is read there) */
  const char *also;        /* the side table's other versions of a merged row ("node:ts:hlc,..."), or NULL */
} local_ver;

/* What this target transaction knows of one (relation, key): the version the row has after the
 * changes decided so far (the database's, until a remote change of this sink wins), so several
 * source transactions share one target transaction without reading back their own writes. */
typedef struct decision {
  const od_relation *rel;
  const pg_rel *r;
  char *key;        /* malloc'd */
  uint64_t seq;     /* stamp seq of the last decided change (0: none yet) */
  bool apply;       /* that change's decision (later changes of the same source transaction follow) */
  bool has_ver;     /* the key has a version here (a row or a tombstone) */
  bool tomb;        /* ... and it is a tombstone */
  bool ours;        /* the version was written by this sink in this transaction: already seen */
  bool queued;      /* in the side-table write list of the open run */
  bool fix;         /* counters lost a conflict: set them to ctr after the run's apply */
  bool touch;       /* a delete applied to a key without a row: rewrite (or write) its tombstone (its version is
                     * ours; no row is deleted, so the delete trigger does not) */
  bool live0;       /* the key had a row when this run read its versions */
  char node[64];    /* the version's author ("" unknown) */
  int64_t ts, hlc;  /* its commit time and clock (INT64_MIN: unknown) */
  int nval;
  char *val[COUNTERS_MAX]; /* counter and rule columns' values of the version (malloc'd, NULL: null) */
  long long ctr[COUNTERS_MAX]; /* the counters' current values (fix) */
  char **row;       /* column_merge: the live row's values as text after the changes decided so far
                     * (malloc'd, nrow of them, NULL entries: SQL null); NULL when not read */
  int nrow;
  uint64_t lmask;   /* column_merge: columns the local version kept against the last decided source
                     * transaction (its later changes of the key leave them alone) */
  bool merge;       /* that transaction's changes of the key are applied as column merges */
  char *also;       /* column_merge: a merged row's version per column, "node:ts:hlc" each ("~" in
                     * front: weak; empty: unknown), comma-separated (malloc'd; NULL: not merged) */
} decision;

typedef struct pgs_mesh {
  char node[64], peer[64], origin[80];
  mesh_pol def;    /* mesh_policy, mesh_fallback, mesh_priority */
  mesh_pol *tpol;  /* mesh_table_policies (malloc'd, each table malloc'd) */
  int ntpol;
  char *log_q;  /* quoted conflict table */
  char *tomb_q; /* quoted tombstone table */
  char *fn_q;   /* quoted tombstone trigger function */
  char *ver_q;  /* quoted row-version side table (_odsync_versions) */
  char *hlc_q;  /* quoted clock table (_odsync_hlc): applied hlcs ahead of this node's clock */
  char **tables; /* mesh_tables: the tables whose deletes leave tombstones (malloc'd) */
  int ntables;
  char **counters; /* mesh_counters: "schema.table.column" merged as a sum of deltas (malloc'd) */
  int ncounters;
  /* mesh_rules: business rules deciding concurrent insert/update conflicts before the policy */
  struct rule {
    char *column;   /* "schema.table.column" (malloc'd) */
    char **order;   /* NULL: the higher number wins; else the values from lowest to highest (malloc'd) */
    int norder;
  } rules[RULES_MAX];
  int nrules;
  /* per run: updates rewritten by the counter merge (values and texts malloc'd) */
  struct override { size_t idx; od_value *vals; char **texts; int ntexts; } *ovr; /* also column merges */
  size_t novr, ovr_cap;
  /* the stamps of the open run (the last one carries over to the next apply() call) */
  stamp *st;
  int nst, st_cap;
  uint64_t seq;
  bool txn_has_data; /* the open target transaction holds stamped source transactions */
  int64_t max_ts;    /* the latest commit time of its source transactions (its "odsync.hlc" message) */
  int64_t max_hlc;   /* the highest hlc of its source transactions (same message, and _odsync_hlc) */
  /* causal delivery: LSN of each origin applied here (cache of pg_replication_origin_status) */
  vv_entry prog[VV_MAX];
  int nprog;
  /* scratch */
  od_change *keep;
  size_t keep_cap;
  int *sidx;          /* per change of the apply() call: its stamp index in st, -1 none */
  size_t sidx_cap;
  decision *dec;      /* every key of the open target transaction */
  size_t ndec, dec_cap;
  uint32_t *slots;   /* hash of dec: index + 1, 0 empty; slot_cap a power of two > 2 * ndec */
  size_t slot_cap;
  size_t *wr;        /* dec indexes to write to the side table (and fix) after the run's apply */
  size_t nwr, wr_cap;
  bool merge_warned; /* column_merge without old rows: warned once */
  uint64_t conflicts, applied_txns;
  od_metric *m_txns;                  /* odsync_mesh_transactions_total{node, peer} */
  od_metric *m_conflicts[KINDS];      /* odsync_mesh_conflicts_total{node, peer, kind}, by KIND_NAMES */
} pgs_mesh;

/* postgres_mesh.c */
const vv_entry *pgs_mesh_vv_find(const vv_entry *vv, int n, const char *node);
bool pgs_mesh_is_stamp(const od_change *c);
/* The policy of a table (its mesh_table_policies entry, else the default). */
const mesh_pol *pgs_mesh_pol(const pgs_mesh *m, const char *target);
/* postgres_mesh_decide.c */
void pgs_mesh_dec_clear(pgs_mesh *m);
void pgs_mesh_overrides_free(pgs_mesh *m);
/* Decide the changes of relation r in changes[from, to) (m->sidx gives each change's stamp): fills
 * keepflag[i - from]; logs conflicts; queues the keys written for finish_run (m->wr). */
int pgs_mesh_decide_rel(pgs_sink *s, pgs_mesh *m, pg_rel *r, const od_change *changes, size_t from, size_t to,
                        bool *keepflag, od_error *err);
/* After the run's apply: counters of a key whose remote update lost get their merged values. */
int pgs_mesh_fix_counters(pgs_sink *s, pgs_mesh *m, decision *d, od_error *err);

#endif
