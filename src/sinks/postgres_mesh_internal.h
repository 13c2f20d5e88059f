/* sinks/postgres_mesh_internal.h — state shared by postgres_mesh.c (config, session, stamps, causal
 * delivery, the batch flow), postgres_mesh_decide.c (key states, the versions query, conflict
 * decisions, the conflict log), postgres_mesh_counter.c (counter columns, the run's overrides),
 * postgres_mesh_colmerge.c (column versions, column rules, column merges) and the other
 * postgres_mesh_*.c files. Private to the PostgreSQL sink.
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
#include "sinks/postgres_mesh_gc.h"

#define MESH_PREFIX "odsync.mesh"
#define CTR_PREFIX "odsync.ctr" /* an application insert on a counter table: the balance it started from */
#define MESH_HLC_PREFIX "odsync.hlc" /* the message of every applying transaction: "<max ts> <max hlc>" */
#define VV_MAX 16
#define KEYS_PER_QUERY 500
#define CAUSAL_WAIT_US (120LL * 1000000LL)
#define COUNTERS_MAX 8 /* fetched columns per table: counters plus rule columns */
#define RULES_MAX 16
#define VQ_MAX 32 /* prepared versions statements per session (more go unnamed) */
#define PEND_MAX_CHANGES 2000         /* held-back changes of the open transaction: a run at this many */
#define PEND_MAX_BYTES (8u << 20)     /* ... or at this many bytes of their values */

enum { POL_LWW, POL_PRIORITY, POL_KEEP_LOCAL, POL_APPLY_REMOTE, POL_COLUMN_MERGE };
#define MERGE_COLS_MAX 64 /* column_merge: columns per table (a bit mask per key and transaction) */
#define KINDS 6 /* ... "unique": a clash on a non-primary unique index (postgres_mesh_unique.c) */
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
  const char *local;       /* column_merge: local writes' column versions since the last sink write ("ts:hlc"
                            * per column, "" for a column no local write changed; _odsync_colver), or NULL */
  bool vrow;               /* the key has a row in _odsync_versions (read under the key's lock) */
  const char *img;         /* SQL-rule tables: a tombstone's image (JSON), or NULL */
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
  bool ctr_tomb;    /* exact counters: a write re-created the row from a tombstone with a balance (cleared after the
                     * run's apply) */
  signed char vrow; /* the key's _odsync_versions row as this run's read found it, under the key's lock:
                     * 1 there, -1 none (its version is then written with a plain INSERT), 0 unknown
                     * (not read by the versions query: written with the upsert) */
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
  char **uval;      /* unique columns' values (text, NULL: null) of the key's last applied insert or update
                     * in this run, and its version (postgres_mesh_unique.c); NULL: none in this run */
  int nuval;
  int64_t uts, uhlc;
  char *also;       /* column_merge: a merged row's version per column, "node:ts:hlc" each ("~" in
                     * front: weak; empty: unknown), comma-separated (malloc'd; NULL: not merged) */
  char *img;        /* SQL-rule tables, a tombstone: the deleted row as its delete's author had it, a JSON
                     * object the rules rank the delete by (malloc'd; NULL: none known, or a live row) */
} decision;

typedef struct pgs_mesh {
  char node[64], peer[64], origin[80];
  char join_from[64]; /* this node joins a running mesh from that node: wait for its copy (postgres_mesh_join.c) */
  mesh_pol def;    /* mesh_policy, mesh_fallback, mesh_priority */
  mesh_pol *tpol;  /* mesh_table_policies (malloc'd, each table malloc'd) */
  int ntpol;
  char *log_q;  /* quoted conflict table */
  char *tomb_q; /* quoted tombstone table */
  char *fn_q;   /* quoted tombstone trigger function */
  char *kl_q;   /* quoted key-lock trigger function (applications' inserts: the never-existing-key race) */
  char *ver_q;  /* quoted row-version side table (_odsync_versions) */
  char *hlc_q;  /* quoted clock table (_odsync_hlc): applied hlcs ahead of this node's clock */
  char *cv_q;   /* quoted local column-version table (_odsync_colver, postgres_mesh_colver.c) */
  char *cvfn_q; /* quoted trigger function that fills it */
  char *tifn_q; /* quoted trigger function keeping a deleted row's last values in its tombstone (img) */
  char *ul_q;   /* quoted table of unique values rows left (_odsync_unique_left: deletes and moves) */
  char *ulfn_q; /* quoted trigger function that fills it */
  char *trfn_q; /* quoted trigger function turning an application's TRUNCATE into a DELETE of every row */
  char *ens_q;  /* quoted function running a piece of session DDL only when it would change something */
  char *cifn_q; /* quoted key-lock trigger function of counter tables (also: an insert names the balance it starts from) */
  char *ctr_carry; /* the last change of the previous run when it was an "odsync.ctr" message: its content
                    * (malloc'd; NULL none), for an insert that opens the next run */
  uint64_t ctr_carry_seq; /* ... its stamp's seq */
  bool truncate_warned; /* a peer's TRUNCATE was skipped (its rows came as deletes): said once */
  char **tables; /* mesh_tables: the tables whose deletes leave tombstones (malloc'd) */
  int ntables;
  char **counters; /* mesh_counters: "schema.table.column" merged as a sum of deltas (malloc'd) */
  int ncounters;
  /* mesh_rules: business rules deciding concurrent insert/update conflicts before the policy */
  struct rule {
    char *column;   /* "schema.table.column"; an SQL rule's "schema.table" (malloc'd) */
    char **order;   /* NULL: the higher number wins; else the values from lowest to highest (malloc'd) */
    int norder;
    char *sql;      /* an SQL rule's boolean expression on local and remote (malloc'd; NULL: a column rule;
                     * postgres_mesh_sqlrule.c) */
    int index;      /* its position in mesh_rules (messages) */
  } rules[RULES_MAX];
  int nrules;
  /* per run: updates rewritten by the counter merge (values and texts malloc'd) */
  /* also column merges; as_update: an insert merged into a live row, applied as an update of its columns */
  struct override { size_t idx; od_value *vals; char **texts; int ntexts; bool as_update; } *ovr;
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
  /* the nodes `odsync mesh remove` retired (public._odsync_removed here, read at session start and
   * when a causal wait finds a dependency missing): their stamps' entries are not waited for */
  char removed[VV_MAX][64];
  int nremoved;
  int nprog;
  /* the peer's version vector as far as this sink received it (postgres_mesh_vv.c): the element-wise
   * maximum of every vector of the peer's stream up to the open transaction's position (pvv), the
   * same up to the last commit (pvv_ok, what _odsync_peer_vv holds) and up to what the open
   * transaction wrote to it (pvv_wr) */
  vv_entry pvv[VV_MAX], pvv_ok[VV_MAX], pvv_wr[VV_MAX];
  int npvv, npvv_ok, npvv_wr;
  char *pvv_q; /* quoted _odsync_peer_vv */
  /* The changes of the open transaction not decided and applied yet (docs/MULTI_MASTER.md, "What each
   * pipeline does", 5): the apply() calls of one sink transaction (one per chunk the reader cut, often
   * a dozen source transactions each) make one run, decided and applied at the commit, or earlier
   * when PEND_MAX_CHANGES or PEND_MAX_BYTES is reached, before a causal wait and at a savepoint.
   * pend: copies of the changes (values, positions and correlation ids in pblk); the stamp index of
   * each is sidx[i] (-1: none). */
  od_change *pend;
  size_t npend, pend_cap, pend_bytes;
  const od_relation *pend_rel_ok; /* the last relation unknown to the sink found alone among pend's */
  struct pend_block *pblk; /* the copies' memory: blocks, the one being filled first (malloc'd; kept
                            * by a clear when it is the only one) */
  /* scratch */
  od_change *keep;
  size_t keep_cap;
  int *sidx;          /* per change of pend: its stamp index in st, -1 none */
  size_t sidx_cap;
  decision *dec;      /* every key of the open target transaction */
  size_t ndec, dec_cap;
  uint32_t *slots;   /* hash of dec: index + 1, 0 empty; slot_cap a power of two > 2 * ndec */
  size_t slot_cap;
  size_t *wr;        /* dec indexes to write to the side table (and fix) after the run's apply */
  size_t nwr, wr_cap;
  bool merge_warned; /* column_merge without old rows: warned once */
  bool rank_warned;  /* SQL rules: a delete pair without the deleted row, not ranked: warned once */
  bool move_warned;  /* a key-changing update kept as an update (TOASTed values without the old row): warned once */
  bool rule_err_said;   /* an SQL rule's error was logged (postgres_mesh_sqlrule.c), rule_err_us when */
  int64_t rule_err_us;
  unsigned long rule_err_quiet; /* errors not logged since (at most one message per 10 s) */
  struct mesh_uniq *uq; /* non-primary unique indexes per table (postgres_mesh_unique.c; malloc'd) */
  int nuq;
  size_t *todel;     /* changes of the run turned into deletes of their key (a lost unique clash) */
  size_t ntodel, todel_cap;
  struct ul_rec *ul; /* unique values left within the run (written after its apply; malloc'd) */
  size_t nul, ul_cap;
  /* prepared statements of the session (postgres_mesh_query.c; sql malloc'd) */
  struct vq { char *sql; char name[32]; } vq[VQ_MAX];
  int nvq;
  unsigned vq_seq;
  uint64_t conflicts, applied_txns;
  uint64_t moves, moves_kept; /* key-changing updates taken in as a delete and an insert / kept as updates */
  /* the clean-up of tombstones and _odsync_hlc (postgres_mesh_gc.c): mesh_gc_interval_s (0: off),
   * mesh_nodes (every node of the mesh, malloc'd), the running thread (owned; started with the first
   * session) */
  long gc_interval_s;
  bool session; /* mesh_session (default true); false: the keys are checked, no mesh session is opened
                 * (no origin, no DDL, no clean-up): for `odsync check` beside a running mesh */
  char **nodes;
  int nnodes;
  pgs_mesh_gc *gc;
  od_metric *m_txns;                  /* odsync_mesh_transactions_total{node, peer} */
  od_metric *m_conflicts[KINDS];      /* odsync_mesh_conflicts_total{node, peer, kind}, by KIND_NAMES */
} pgs_mesh;

/* postgres_mesh.c */
const vv_entry *pgs_mesh_vv_find(const vv_entry *vv, int n, const char *node);
bool pgs_mesh_is_stamp(const od_change *c);
/* Append v, quoted, to a text-array literal being built ("{" already there). */
void pgs_mesh_arr_add(od_sqlbuf *b, const char *v);
/* The same for len bytes of v (not NUL-terminated). */
void pgs_mesh_arr_addn(od_sqlbuf *b, const char *v, size_t len);
/* The policy of a table (its mesh_table_policies entry, else the default). */
const mesh_pol *pgs_mesh_pol(const pgs_mesh *m, const char *target);
/* postgres_mesh_vv.c */
#define MESH_VV_PREFIX "odsync.meshvv" /* a dropped transaction's vector update, from the source */
bool pgs_mesh_is_vv(const od_change *c);
/* CREATE TABLE IF NOT EXISTS of _odsync_peer_vv, appended to the session's DDL. */
/* postgres_mesh_join.c: with mesh_join_from, fail (retriable) until `odsync mesh join` has copied the
 * seed into this node (public._odsync_join says done). */
int pgs_mesh_join_config(pgs_mesh *m, const od_config_section *cfg, od_error *err);
int pgs_mesh_join_gate(pgs_sink *s, od_error *err);
/* postgres_mesh_join.c: fail (retriable) when `odsync mesh remove` marked this sink's node or its peer
 * removed (public._odsync_removed on this node), before the session makes its origin. */
int pgs_mesh_removed_gate(pgs_sink *s, od_error *err);
/* Reload m->removed from public._odsync_removed (empty when the table does not exist). */
int pgs_mesh_removed_read(pgs_sink *s, od_error *err);
bool pgs_mesh_removed_has(const pgs_mesh *m, const char *node);
void pgs_mesh_pvv_ddl(const pgs_mesh *m, od_sqlbuf *b);
/* postgres_mesh_ensure.c: session DDL that locks a table only when it changes it. The function
 * m->ens_q (made first, in the session's DDL transaction); a column / an index added when missing
 * (type, using_cols: SQL text after the name / after the table, e.g. "(hlc)"). Triggers: call
 * m->ens_q(rel, 'trigger', name, ddl) from the DO block that builds the trigger's DDL. */
void pgs_mesh_ensure_fn_ddl(const pgs_mesh *m, od_sqlbuf *b);
void pgs_mesh_ensure_column(const pgs_mesh *m, od_sqlbuf *b, const char *table_q, const char *column,
                            const char *type);
void pgs_mesh_ensure_index(const pgs_mesh *m, od_sqlbuf *b, const char *table_q, const char *index,
                           const char *using_cols);
/* At session start (after the DDL committed): pvv from _odsync_peer_vv. */
int pgs_mesh_pvv_load(pgs_sink *s, pgs_mesh *m, od_error *err);
/* A stamp of the stream, in stream order: st's vector becomes max(st's, pvv), pvv max(pvv, st's). */
void pgs_mesh_pvv_stamp(pgs_mesh *m, stamp *st);
/* An "odsync.meshvv" message of the stream: pvv becomes max(pvv, its vector). */
int pgs_mesh_pvv_message(pgs_sink *s, pgs_mesh *m, const od_change *c, od_error *err);
/* Whether pvv has entries the open transaction did not write yet. */
bool pgs_mesh_pvv_dirty(const pgs_mesh *m);
/* Upsert those entries in the open transaction (one statement of its own). */
int pgs_mesh_pvv_write(pgs_sink *s, pgs_mesh *m, od_error *err);
/* The same riding in another statement: the grown entries as text arrays (node, lsn, ts; a[] start
 * empty, the caller frees them), the upsert's text with parameters $first (peer) .. $first+3, and,
 * once that statement succeeded, pgs_mesh_pvv_written. */
void pgs_mesh_pvv_arrays(const pgs_mesh *m, od_sqlbuf a[3]);
void pgs_mesh_pvv_upsert(const pgs_mesh *m, od_sqlbuf *b, int first);
void pgs_mesh_pvv_written(pgs_mesh *m);
/* The open transaction committed / rolled back. */
void pgs_mesh_pvv_committed(pgs_mesh *m);
void pgs_mesh_pvv_rollback(pgs_mesh *m);
/* postgres_mesh_decide.c */
void pgs_mesh_dec_clear(pgs_mesh *m);
/* Decide the changes of relation r in changes[from, to) (m->sidx gives each change's stamp): fills
 * keepflag[i - from]; logs conflicts; queues the keys written for finish_run (m->wr). */
int pgs_mesh_decide_rel(pgs_sink *s, pgs_mesh *m, pg_rel *r, const od_change *changes, size_t from, size_t to,
                        bool *keepflag, od_error *err);
/* postgres_mesh_colver.c: a version per column for every write of a column_merge table */
/* The table and trigger function, and per mesh table the trigger (column_merge) or its removal. */
int pgs_mesh_colver_ddl(pgs_sink *s, pgs_mesh *m, od_sqlbuf *b, od_error *err);
/* Appends to the versions read the expression of a row's local column versions (x.k: the key,
 * $tbl_param: the table name). */
void pgs_mesh_colver_read_sql(const pgs_mesh *m, od_sqlbuf *b, int tbl_param);
/* A live row's complete column versions into d->also: each column's local write (lv->local) if
 * any, else the side table's entry (the last sink write's, lv->also), else the row's version, weak.
 * false on out-of-memory. */
bool pgs_mesh_colver_resolve(const pgs_mesh *m, decision *d, const local_ver *lv, int ncol);
/* After a remote change applied to d (stamp st): d->also becomes its column versions. A delete: none
 * (NULL); an update with its old image on a live row whose versions are known (partial_ok and
 * d->also): the columns it changed get the write's version, the others keep theirs; anything else
 * (an insert, a re-created row): every column the write's. Columns in `skip` (bit j: column j, the
 * first 64) keep theirs in both cases (a merge's local winners, a re-creation's ruled columns).
 * false on out-of-memory. */
bool pgs_mesh_colver_note(const pgs_mesh *m, decision *d, const od_change *c, const stamp *st, bool partial_ok,
                          uint64_t skip, int ncol);
/* d->row (allocated for every column when missing) takes the values a write sets (not UNCHANGED
 * ones): the row as the run leaves it, for a tombstone the run writes itself. false: out of memory. */
bool pgs_mesh_colver_row_set(decision *d, const od_value *vals, int n);
/* d->row as a JSON object of texts (column name: value), appended to b; false when there is none. */
bool pgs_mesh_colver_row_json(const decision *d, od_sqlbuf *b);
/* Whether r's table is column_merge (its writes carry column versions). */
bool pgs_mesh_colver_table(const pgs_mesh *m, const pg_rel *r);
/* postgres_mesh_query.c */
/* Forget the prepared versions statements (a new session; also frees their texts). */
void pgs_mesh_vq_forget(pgs_mesh *m);
/* The name of the prepared statement of `sql` in this session, preparing it on first use (outside
 * pipeline mode); "" when the cache is full (the statement then goes unnamed). NULL on failure. */
const char *pgs_mesh_prepared(pgs_sink *s, pgs_mesh *m, const char *table, const char *sql, od_error *err);
/* Run the lock statement and then the versions query `sql` (same parameters) in one round trip;
 * *res: the read's rows (the caller's). */
int pgs_mesh_versions_exec(pgs_sink *s, pgs_mesh *m, const char *table, const char *lock_sql, const char *sql,
                           int n, const char *const *params, PGresult **res, od_error *err);
/* The key state of (r, key) in the open run, added without a version when there is none (key is
 * copied); NULL on out-of-memory. */
decision *pgs_mesh_dec_get(pgs_mesh *m, const pg_rel *r, const char *key);
/* The key state of (r, key) in the open run, or NULL (nothing added). */
decision *pgs_mesh_dec_peek(pgs_mesh *m, const pg_rel *r, const char *key);
/* Queue d's version (and tombstone, fix) for the run's finish; false on out-of-memory. */
bool pgs_mesh_wr_push(pgs_mesh *m, decision *d);
/* Whether the remote write (stamp st) wins against the local version d under policy `policy`
 * (POL_*; never POL_COLUMN_MERGE): the same answer on every node for the same pair. */
bool pgs_mesh_remote_wins_by(const pgs_mesh *m, int policy, const mesh_pol *pol, const stamp *st, const decision *d);
/* The same under pol's policy (column_merge: its fallback, for whole rows); everything borrowed. */
bool pgs_mesh_remote_wins(const pgs_mesh *m, const mesh_pol *pol, const stamp *st, const decision *d);
/* JSON text of a tuple (values as strings), appended to b. */
void pgs_mesh_tuple_json(od_sqlbuf *b, const od_relation *rel, const od_tuple *t);
/* postgres_mesh_sqlrule.c: SQL-expression rules ("schema.table: sql: EXPR") */
typedef struct sqlrule_run { /* the SQL rules of one table over one pgs_mesh_decide_rel call */
  int n;                     /* the table's SQL rules (0: none; nothing else is set) */
  int rule[RULES_MAX];       /* their indexes in m->rules, in order */
  size_t from, count;        /* the call's changes [from, from + count) */
  signed char *res;          /* per change and rule: 1 remote wins, -1 local wins, 0 no decision (malloc'd) */
  unsigned char *done;       /* per change: evaluated (malloc'd) */
  char *dk;                  /* per change: the deleted side it was evaluated with ('r', 'l', 0; malloc'd) */
  char **ljson;              /* column_merge: the local row (JSON) a change was evaluated with (malloc'd) */
  signed char *res2;         /* per change and rule: the answer with a delete ranked as the row it deleted
                              * (both images known; else 0), as res (malloc'd) */
  char **limg;               /* per change: the tombstone image it was evaluated with (malloc'd copies) */
  char *sql;                 /* the evaluating statement (malloc'd) */
  char *one[RULES_MAX];      /* each rule's statement alone, made after an error (malloc'd; NULL: not yet) */
} sqlrule_run;
/* Whether table ("schema.table", or "table" for public.table) has SQL rules. */
bool pgs_mesh_has_sqlrule(const pgs_mesh *m, const char *table);
/* At session start: every SQL rule checked against its table (a bad one: OD_ECONFIG naming it). */
int pgs_mesh_sqlrule_check_all(pgs_sink *s, pgs_mesh *m, od_error *err);
/* The SQL rules of r for changes [from, to) (q->n 0: none). */
int pgs_mesh_sqlrule_begin(pgs_sink *s, pgs_mesh *m, const pg_rel *r, size_t from, size_t to, sqlrule_run *q,
                           od_error *err);
/* Evaluate the rules on n concurrent pairs in one statement: changes[cis[i]] (remote: a row, or a
 * delete) against the local version of key state ds[i] (a row, or a tombstone), a pair with a delete
 * also with the delete ranked as the row it deleted when both rows are known (res2).
 * An evaluation the pair's values make raise an error (SQLSTATE class 22, P0001) is no decision for
 * that pair and rule only: after such an error every pair is evaluated again rule by rule in one
 * more pipeline round trip (per 200 statements), each statement rolled back to a savepoint
 * (docs/MULTI_MASTER.md). */
int pgs_mesh_sqlrule_eval(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const od_change *changes,
                          const size_t *cis, decision *const *ds, size_t n, od_error *err);
/* Rule k's answer for change ci against d (*out: 1 remote wins, -1 local wins, 0 none), evaluated
 * now when the batch's evaluation did not cover it; ranked: with the pair's delete ranked as the row
 * it deleted (0 when either row is unknown). */
int pgs_mesh_sqlrule_get(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const od_change *changes,
                         size_t ci, decision *d, int k, bool ranked, int *out, od_error *err);
/* A remote delete's deleted row as a JSON object (malloc'd), when the change has all of it (REPLICA
 * IDENTITY FULL at its author); else NULL (*oom tells an allocation failure apart). */
char *pgs_mesh_sqlrule_image(const pg_rel *r, const od_change *c, bool *oom);
void pgs_mesh_sqlrule_end(sqlrule_run *q);
/* postgres_mesh_counter.c: counter columns (mesh_counters) and the run's overrides (m->ovr) */
/* The counter columns of a table and one change's deltas (new - old of each: an update with its
 * full old row and integers on both sides; delta_ok false otherwise). */
typedef struct ctr_in {
  const int *cols; /* column indexes (the first n fetched columns of the versions read) */
  int n;
  bool delta_ok;
  long long delta[COUNTERS_MAX];
} ctr_in;
/* Exact counters (docs/MULTI_MASTER.md, "Counter columns"): every write adds new - seen to a key's
 * counters on every node — an update new - old, a delete -old, an insert new - the balance its
 * author's tombstone held (its "odsync.ctr" message) — whether it wins or loses; the sum lives in the
 * row, or in the tombstone's balance (ctr) while the key has none. */
/* Whether table ("schema.table", or "table" for public.table) has counter columns. */
bool pgs_mesh_has_counters(const pgs_mesh *m, const char *table);
/* The key-lock trigger's function on counter tables (DDL appended to b). */
void pgs_mesh_counter_ddl(const pgs_mesh *m, od_sqlbuf *b);
/* name as a JSON string into b. */
void pgs_mesh_json_str(od_sqlbuf *b, const char *name);
/* {"counters": [...]}: the counter columns of k, the merged detail of a conflict whose counters were summed. */
void pgs_mesh_ctr_detail(const pg_rel *r, const ctr_in *k, od_sqlbuf *b);
/* Whether c is an "odsync.ctr" message. */
bool pgs_mesh_is_ctr_msg(const od_change *c);
/* Before pend is cleared: keep its last change's content when it is an "odsync.ctr" message. */
void pgs_mesh_ctr_carry(pgs_mesh *m);
/* One change's contribution as pgs_mesh_ctr_add found it. */
typedef struct ctr_acc {
  bool done;     /* counted exactly (false: no old row, not integers, an unknown local value: as before) */
  bool changed;  /* the contribution is not zero */
  bool differs;  /* the sum differs from the change's own new values (an insert or update) */
  bool zero;     /* the sum is zero */
  bool balance0; /* the key was a tombstone with a balance */
} ctr_acc;
/* Add changes[ci]'s contribution to d's counters (d->ctr, d->val: the sum); false: out of memory. */
bool pgs_mesh_ctr_add(const pgs_mesh *m, const pg_rel *r, const od_change *changes, size_t ci, decision *d,
                      const ctr_in *k, ctr_acc *a);
/* Where the sum goes: an applied insert or update carries it (an override on top of the change's
 * others); else d->fix, written after the apply to the row or to the tombstone's balance. */
int pgs_mesh_ctr_place(pgs_sink *s, pgs_mesh *m, const od_change *c, size_t ci, decision *d, const ctr_in *k,
                       const ctr_acc *a, bool apply, od_error *err);
/* After the run's apply: the counters of keys marked fix (the row's, or the tombstone's balance) and
 * the balances re-created rows took (NULL). */
int pgs_mesh_ctr_write_balances(pgs_sink *s, pgs_mesh *m, od_error *err);
/* After the run's apply: counters of a key whose remote update lost get their merged values. */
int pgs_mesh_fix_counters(pgs_sink *s, pgs_mesh *m, decision *d, od_error *err);
/* Free the run's overrides (their value arrays and texts) and empty the list (m->ovr stays allocated). */
void pgs_mesh_overrides_free(pgs_mesh *m);
/* The counter columns of r into cols (column indexes, at most COUNTERS_MAX); returns how many. */
int pgs_mesh_counter_cols(const pgs_mesh *m, const pg_rel *r, int *cols);
/* v as an integer into *out; false when v is not text or not a whole integer. */
bool pgs_mesh_int_of(const od_value *v, long long *out);
/* Room for one more entry in m->ovr (m owns the array, grown by doubling); OD_ENOMEM on failure. */
int pgs_mesh_reserve_override(pgs_sink *s, pgs_mesh *m, od_error *err);
/* The values change idx is applied with: its override's (owned by m->ovr), else c's new row (borrowed). */
const od_value *pgs_mesh_applied_vals(const pgs_mesh *m, size_t idx, const od_change *c);
/* The counter columns cols[0..n) (borrowed by the result) and c's deltas on them (delta_ok: c has them). */
ctr_in pgs_mesh_ctr_of(const od_change *c, const int *cols, int n);
/* Which counter of k column col is (its index), -1 none (k NULL: none). */
int pgs_mesh_ctr_index(const ctr_in *k, int col);
/* The text of v, malloc'd (the caller frees it); NULL on out-of-memory. */
char *pgs_mesh_ll_text(long long v);
/* d's counters (d->val, d->ctr: the key state's) follow the applied values vals (UNCHANGED kept); false: OOM. */
bool pgs_mesh_ctr_sync(decision *d, const ctr_in *k, const od_value *vals, int nvals);
/* column_merge: the other way, d's row takes the counters' values (d->val); false on out-of-memory. */
bool pgs_mesh_ctr_to_row(decision *d, const ctr_in *k);
/* column_merge: the same from the key state's row d->row; false on out-of-memory. */
bool pgs_mesh_ctr_sync_row(decision *d, const ctr_in *k);
/* Add c's deltas to d->ctr (local + delta); false: nothing to merge (no old row: warned; no delta or local value). */
bool pgs_mesh_add_deltas(pgs_sink *s, const pg_rel *r, const od_change *c, decision *d, const ctr_in *k);
/* The merged counters written: apply, an override of change idx (owned by m->ovr); else d is queued for a fix. */
int pgs_mesh_write_counters(pgs_sink *s, pgs_mesh *m, const od_change *c, size_t idx, decision *d, const ctr_in *k,
                            bool apply, od_error *err);
/* postgres_mesh_colmerge.c: column versions, column rules and column merges (column_merge tables) */
/* One column's (or the row's) version: the write that last set it (an empty node: unknown). */
typedef struct ver_entry {
  char node[64];
  int64_t ts, hlc;
  bool weak; /* "~": the local row's version at a merge for a column only the local side changed
              * (maybe an earlier local write changed it): counts for "seen", but whether a
              * later write changed the column locally is still told by value */
} ver_entry;
#define WINNER_MAX 64 /* a conflict's winner: a node's name (as decision.node) or "merged" */
/* Whether the remote write (stamp st) had seen the version (node, ts) ("" node: this node). */
bool pgs_mesh_ver_seen(const pgs_mesh *m, const stamp *st, const char *node, int64_t ts);
/* d's row version (its node, or this node's; ts; hlc, else ts) as an entry (a copy). */
ver_entry pgs_mesh_row_ver(const pgs_mesh *m, const decision *d);
/* d->also parsed into out[0..ncol) (the caller's array; empty node: unknown); d is only read. */
void pgs_mesh_col_vers(const decision *d, int ncol, ver_entry *out);
/* The columns of d's table that carry versions (at most MERGE_COLS_MAX). */
int pgs_mesh_ncols_of(const decision *d);
/* A trigger function's plpgsql fragment: on an update (of a key column: the trigger's UPDATE OF) that
 * kept the row's key, return. Expects k to hold the old key, built from TG_ARGV (the key columns). */
void pgs_mesh_sql_key_kept(od_sqlbuf *b);
/* Whether the remote writer had seen d's current version (on a merged row: every column's write). */
bool pgs_mesh_seen_by_remote(const pgs_mesh *m, const stamp *st, const decision *d);
/* The local version a concurrent write competes with as a whole row: a shallow copy of d (its pointers d's). */
decision pgs_mesh_competitor(const pgs_mesh *m, const stamp *st, const decision *d);
/* After a column merge: cv[0..n) (borrowed) becomes d's version: the latest as the row's, all in d->also. */
int pgs_mesh_set_col_vers(pgs_sink *s, pgs_mesh *m, decision *d, const ver_entry *cv, int n, od_error *err);
/* r's column rules appended to the fetched columns cols[n..] (rule_of[k]: rule index); returns the new total. */
int pgs_mesh_rule_cols(const pgs_mesh *m, const pg_rel *r, int *cols, int n, int *rule_of);
/* Business rules on a concurrent pair (sql_only: SQL rules only): *out >0 remote wins, <0 local, 0 none.
 * A pair with a delete none decided: the SQL rules again with the delete ranked as the row it deleted. */
int pgs_mesh_rules_decide(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, size_t ci, decision *d,
                          const int *cols, int from, int to, const int *rule_of, sqlrule_run *sq, bool sql_only,
                          int *out, od_error *err);
/* column_merge of c into the live row d->row: an override of change idx (in m->ovr), untaken columns UNCHANGED. */
int pgs_mesh_merge_columns(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const mesh_pol *pol, const stamp *st,
                           const od_change *c, size_t idx, decision *d, ver_entry *cv, const ver_entry *rowv,
                           const ctr_in *k, bool kdelta, bool *apply, od_sqlbuf *detail, char *winner,
                           od_error *err);
/* A re-creation takes d->row (the tombstone's) where it wrote nothing or *kept (ruled): an override in m->ovr. */
int pgs_mesh_recreate_override(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, size_t idx,
                               const decision *d, const ctr_in *k, const stamp *st, uint64_t *kept, od_error *err);
/* A write that lost to a tombstone: the columns it wins go into the tombstone's image, d->row and d->also. */
int pgs_mesh_image_columns(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st, decision *d,
                           const ctr_in *k, bool counters_only, od_error *err);
/* Whether c merges by column into d's live row (an update: old image, same key; an insert: column versions). */
bool pgs_mesh_mergeable(const pg_rel *r, const od_change *c, const decision *d);
/* Whether an insert meeting a live row without column versions is merged anyway (r has a column rule). */
bool pgs_mesh_insert_ruled(const pgs_mesh *m, const pg_rel *r, const od_change *c, const decision *d);
/* Whether c is an update with its full old row that changed no column. */
bool pgs_mesh_wrote_nothing(const od_change *c);
/* Whether every column of d has a recorded write in d->also. */
bool pgs_mesh_all_cols_known(const decision *d);
/* postgres_mesh_unique.c: clashes on non-primary unique indexes (docs/MULTI_MASTER.md, "unique") */
typedef struct uniq_clash {
  size_t ci;       /* the change (index into the run's changes) whose new row clashes */
  char *index;     /* the unique index's name */
  char *ctid;      /* the local row's ctid (locked: stable until the commit) */
  char *key;       /* the local row's key text (\x1f-joined) */
  char *row;       /* the local row as JSON */
  char node[64];   /* its version's author ("" : this node) */
  int64_t ts, hlc; /* its version (INT64_MIN: unknown, written by this transaction) */
  bool left;       /* not a live row: a record of _odsync_unique_left (the row left the value by a
                    * delete or an update; ts/hlc/node: the version that held it; ctid NULL) */
} uniq_clash;
typedef struct uniq_set { /* every string of the clashes is malloc'd, freed by pgs_mesh_unique_clear */
  uniq_clash *c;          /* sorted by ci */
  size_t n, cap;
} uniq_set;
/* One query per unique index of r (none for a table without one): the local rows whose unique
 * values equal those of an insert or update of changes[idx[q0..q1)] under another key, locked. */
int pgs_mesh_unique_query(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, const size_t *idx,
                          char **keys, size_t q0, size_t q1, uniq_set *out, od_error *err);
/* After change ci was decided (*keep): resolve its clashes by the table's policy (the loser's row
 * is removed, its key tombstoned with that row's version) and log them as kind "unique". */
int pgs_mesh_unique_resolve(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const mesh_pol *pol, const od_change *c,
                            size_t ci, const stamp *st, decision *d, const uniq_set *u, bool *keep, od_error *err);
/* SQL conditions on pg_index i (and pg_attribute a): the unique indexes a mesh sink checks, and
 * the columns such an index reads (key columns, and those of its expressions and predicate). */
const char *pgs_mesh_unique_checked_sql(void);
const char *pgs_mesh_unique_refcols_sql(void);
void pgs_mesh_unique_clear(uniq_set *u);
/* After change c of key d was decided (keep: applied): when an earlier applied change of the same
 * run put d's row on unique values that c leaves (a delete, or an update of a unique column),
 * remember a record of them with that change's version (the set-based apply writes the key once:
 * the trigger sees only the row before the run). */
int pgs_mesh_unique_note(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st, decision *d,
                         bool keep, bool removed, od_error *err);
/* Write the run's records into _odsync_unique_left (after the apply), then forget them. */
int pgs_mesh_unique_flush(pgs_sink *s, pgs_mesh *m, od_error *err);
/* Forget the run's records and every key state's values (rollback, free). */
void pgs_mesh_unique_forget(pgs_mesh *m);
void pgs_mesh_unique_dec_free(decision *d);
/* Tests only: ODSYNC_MESH_TEST_PAUSE_MS holds the batch between its versions read and its apply
 * (the window of the never-existing-key race, made wide enough for a test to write in it). */
void pgs_mesh_test_pause(void);
void pgs_mesh_unique_free(pgs_mesh *m);

#endif
