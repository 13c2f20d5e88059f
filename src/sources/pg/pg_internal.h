/* pg_internal.h — shared state of the PostgreSQL source (pg_source.c: vtable and streaming;
 * pg_catalog.c: publication, slot, checks and keys through an ordinary connection;
 * pg_snapshot.c: the exported view, chunk plans and chunk reads of the initial snapshot).
 * Owns nothing itself; see pg_source for the lifetime of each field. */
#ifndef ODSYNC_PG_INTERNAL_H
#define ODSYNC_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "common/pg_types.h"
#include "odsync/source.h"
#include "sources/pg/pg_burst_rule.h"
#include "sources/pg/pg_position.h"
#include "sources/pg/pgoutput.h"

typedef struct pg_source {
  od_source base;
  const od_config_section *cfg; /* borrowed from the config */
  const char *pipeline;         /* borrowed */
  const char *dsn;              /* borrowed; may hold a password: never print it */
  char where[256];              /* "postgres host:port/dbname" for messages (no secrets) */
  char slot[64];
  char publication[64];
  char *const *tables;          /* borrowed from the config, as written; ntables == 0: all tables */
  int ntables;
  struct od_pg_qname *qtables;  /* owned: tables[i] parsed as PostgreSQL parses a table name */
  long status_interval_ms;
  long receive_timeout_ms;      /* silence on the stream after which the connection is presumed dead; 0: never */
  bool via_root;                /* partitions: root (publish_via_partition_root) or leaves */
  bool warned_partitions;       /* the partitions/pubviaroot warning was logged (once per source) */
  od_snapshot_config snap_cfg;  /* snapshot: initial|never, snapshot_workers, snapshot_chunk_rows */
  struct pg_snap *snap;         /* owned: pg_snapshot.c's state (tables, relations, view), or NULL */

  PGconn *meta;                 /* ordinary connection: catalog, setup (owned) */
  PGconn *repl;                 /* replication connection in COPY BOTH (owned) */
  od_pgoutput *decoder;         /* owned; kept across reconnects? no: one per start() */
  struct pg_strings *strings;   /* owned: od_column.missing_value texts, freed with the decoder */

  od_lsn floor;                 /* the slot's confirmed position when streaming started */
  od_lsn received;              /* highest WAL position received */
  od_lsn durable;               /* last position the pipeline said is durable */
  od_lsn sent_flush;            /* flush position in the last status we sent */
  int64_t last_status_at;       /* monotonic µs */
  int64_t last_recv_at;         /* monotonic µs of the last message received on the stream */
  bool ping_sent;               /* a status asking for a reply went out since last_recv_at */
  int64_t last_watch_at;        /* monotonic µs of the last od_pg_watch_publication while streaming */

  /* catch-up by batch decoding (pg_catchup.c) */
  long catchup_lag_bytes;       /* enter when the slot is this many bytes behind at start; 0: never */
  long catchup_exit_bytes;      /* switch to streaming when less than this is left */
  long catchup_batch;           /* upto_nchanges of a batch call (catchup_batch_changes) */
  long catchup_limit;           /* upto_nchanges of the next call: catchup_batch, grown while restart_lsn lags */
  bool catchup;                 /* reading by batch calls, not the stream */
  bool catchup_leaving;         /* switch to streaming once the last batch is durable */
  PGconn *peek;                 /* ordinary connection for the batch calls (owned), NULL when streaming */
  od_lsn catchup_advanced;      /* the slot was advanced to this */
  od_lsn catchup_batch_end;     /* end of the last transaction delivered by a batch call */
  od_lsn catchup_last_end;      /* end of the last transaction the decoder committed */
  long catchup_batches;         /* peek/get calls made */
  char catchup_copy[64];        /* the temporary copy of the slot that get calls consume ("" : peek calls) */
  long catchup_prefetch_bytes;  /* buffer a call's rows up to this and issue the next call before decoding them */
  long catchup_decoding_mem;    /* logical_decoding_work_mem of the batch calls' session, bytes (0: the server's) */
  bool catchup_inflight;        /* a batch call was sent on s->peek and its rows are not read yet */
  bool catchup_stream;          /* batch calls stream large transactions in progress (protocol 2, s->stream) */
  long catchup_sent_limit;      /* upto_nchanges of the call in flight (for its log line) */
  long catchup_restream;        /* upto_nchanges of the next call after one that ended inside a streamed
                                 * transaction (4x that call's messages + catchup_batch); 0: none */
  int64_t catchup_sent_at;      /* monotonic µs the in-flight call was sent */
  struct pg_readahead *catchup_buf; /* owned: the rows of the last call, read ahead of decoding */
  PGconn *catchup_adv;          /* ordinary connection for asynchronous slot advances (owned), or NULL */
  bool catchup_adv_inflight;    /* an advance was sent on catchup_adv and not collected */
  od_lsn catchup_adv_target;    /* where the in-flight advance moves the slot */
  int64_t catchup_adv_at;       /* monotonic µs of the last advance sent */
  bool catchup_move_restart;    /* log running-xacts records so restart_lsn follows (pg_restart.c) */
  long catchup_move_restart_timeout_ms; /* statement_timeout of the temporary slot's creation */
  bool restart_warned;          /* a failure to log such a record was warned about (once per source) */
  od_lsn catchup_mark;          /* flushed WAL position just past the record logged for the switch (0: none) */
  od_lsn catchup_mark_from;     /* insert position just before it: restart_lsn >= this passed the record */
  od_lsn catchup_copy_confirmed;/* the copy's confirmed position after the last call (all before it returned) */
  int64_t catchup_idle_wait_at; /* monotonic µs the switch began waiting for its idle position (0: not yet) */
  struct pg_catchup_stats {     /* where catch-up's wall time went (logged when it ends) */
    int64_t call_us;            /* call sent → first row: the server's decoding (overlapped or not) */
    int64_t wait_us;            /* the part of call_us odsync spent waiting with nothing to decode */
    int64_t recv_us;            /* first row → last row */
    int64_t decode_us;          /* decoding the rows and handing them to the pipeline (incl. queue waits) */
    int64_t rows;
    int64_t row_bytes;          /* bytes of the messages received */
    int64_t redecode_bytes;     /* WAL between restart_lsn and the start of each call (decoded again) */
    od_lsn restart_from, restart_to; /* the slot's restart_lsn at entry and when streaming starts */
    long advances;
    long restream_calls;        /* calls after one that ended inside a streamed transaction */
    long streamed_txns;         /* transactions the calls streamed in progress (Stream Commits) */
    uint64_t store_spilled_from; /* the streamed-transaction store's spilled bytes at entry */
  } catchup_stats;
  long slot_warn_bytes;          /* source.slot_warn_retained_bytes; 0: no warning */
  int64_t last_health_at;       /* monotonic µs of the last slot health read */
  od_source_health health;      /* the last slot health read (pg_slot_health.c) */
  bool health_ok;               /* health holds a reading */
  bool health_read_warned;      /* a failed health read was logged (once per source) */
  /* the source's spill of decoded changes (pg_spill.c) */
  int64_t spilled_bytes;        /* since this process started, every slot that decoded for it */
  int64_t spill_phase_bytes;    /* in this catch-up, or this stretch of streaming */
  bool spill_warned;            /* this phase's spill was logged */
  int64_t spill_slot_seen;      /* the pipeline slot's spill_bytes at the last read */
  bool spill_slot_known;
  char spill_copy_name[64];     /* the catch-up copy last read */
  int64_t spill_copy_seen;
  bool spill_copy_known;

  struct pg_mesh *mesh;         /* owned: source.mesh_node set (a multi-master mesh), else NULL */
  char plugin[32];              /* the output plugin of the slot in use (pg_plugin.c) */
  int plugin_mode;              /* od_pg_plugin_mode: source.mesh_output_plugin */
  bool plugin_fell_back;        /* auto: the server could not load odsync_pgoutput */
  bool plugin_logged;           /* the plugin in use was logged */
  /* streaming of in-progress transactions (pg_stream.c) */
  bool stream_in_progress;      /* source.stream_in_progress (false for mesh sources) */
  bool stream_set;              /* ... written in the config */
  long stream_memory_bytes;     /* source.stream_memory_bytes: streamed records kept in memory */
  char stream_dir[1024];        /* <state_dir>/pg_stream/<pipeline>: spill files */
  struct od_keyring *stream_kr; /* owned: the `encryption:` keys sealing spill files, NULL without */
  struct od_pg_stream *stream;  /* owned: created at the first start that streams with protocol 2 */
  bool stream_v2;               /* the current START_REPLICATION asked for protocol 2 with streaming */
  bool burst_pending;           /* pg_burst.c: the stream fell behind; switch to catch-up at a boundary */
  bool burst_idle_offered;      /* the pipeline was asked to commit what it holds for the switch */
  long catchup_entries;         /* times catch-up was entered in this process (start or burst) */
  int64_t burst_checked_at;     /* monotonic µs of the last read of how far the stream is behind */
  int64_t burst_pending_at;     /* monotonic µs the switch became pending */
  pg_burst_window burst;        /* reads in a row that found the stream catchup_lag_bytes behind */
  uint64_t commits_delivered;   /* transactions handed to the pipeline in this process */
  bool stream_fallback_logged;  /* the server-version fallback was logged (once per source) */
  const od_change_handler *outer; /* the pipeline's handler during poll() */
  od_change_handler wrap;         /* our handler given to the decoder */
} pg_source;

/* Strings that must live as long as the decoder's relations (a singly linked list). */
typedef struct pg_strings {
  struct pg_strings *next;
  char text[]; /* NUL-terminated */
} pg_strings;

/* pg_catalog.c */
PGconn *od_pg_connect(pg_source *s, bool replication, od_error *err);
int od_pg_prepare_stream(pg_source *s, od_lsn from, od_error *err);
int od_pg_check(pg_source *s, od_problem_fn problem, void *ctx, od_error *err);
int od_pg_fill_keys(pg_source *s, od_relation *rel, od_error *err);
int od_pg_parse_lsn(const char *text, od_lsn *out);
void od_pg_strings_free(pg_source *s);
PGresult *od_pg_query(pg_source *s, PGconn *c, const char *sql, int n, const char *const *params,
                      od_error *err);
int od_pg_prepare_publication(pg_source *s, od_error *err);
int od_pg_watch_publication(pg_source *s, od_error *err);

/* pg_catchup.c: catch-up by batch decoding. enter: at start(), after the stream is prepared
 * (slot, floor, decoder, wrap handler) — switches catch-up on when the slot is catchup_lag_bytes
 * behind `start`. poll: one batch (or a wait for the last one to be durable); clears s->catchup
 * when it is time to stream from s->durable. ack: records the durable position (advances the slot
 * when forced). close: drops the peek connection. */
int od_pg_catchup_enter(pg_source *s, od_lsn start, od_error *err);
/* Bytes of WAL the server has written past `from` (0 when not behind), read on c. */
int od_pg_catchup_wal_behind(pg_source *s, PGconn *c, od_lsn from, int64_t *out, od_error *err);
/* pg_source.c: open the store of streamed transactions (stream_in_progress) if needed, emptied. */
int od_pg_stream_ensure(pg_source *s, od_error *err);
/* pg_source.c: START_REPLICATION from `start`; standby status with the durable position. */
int od_pg_start_streaming(pg_source *s, od_lsn start, od_error *err);
int od_pg_send_status(pg_source *s, od_error *err);
/* pg_burst.c: while streaming, leave for batch decoding when the stream is catchup_lag_bytes
 * behind. check: at each status interval (marks the switch pending); ready: pending, and at a
 * transaction boundary (stop reading); step: wait for the sinks, end the stream, enter catch-up. */
int od_pg_burst_check(pg_source *s, od_error *err);
bool od_pg_burst_ready(const pg_source *s);
int od_pg_burst_step(pg_source *s, int timeout_ms, od_error *err);
int od_pg_catchup_poll(pg_source *s, int timeout_ms, od_error *err);
int od_pg_catchup_ack(pg_source *s, od_lsn durable, bool force, od_error *err);
void od_pg_catchup_close(pg_source *s);
/* pg_restart.c: log an xl_running_xacts record at the head (a temporary logical slot created and
 * dropped on a connection of its own; never fails: warns once). before, after: the WAL insert
 * position just before and the flush position just after (both 0 when nothing was logged). */
int od_pg_log_running_xacts(pg_source *s, od_lsn *before, od_lsn *after, od_error *err);
/* The restart_lsn of `slot` read on c (0: no such slot). */
int od_pg_slot_restart(pg_source *s, PGconn *c, const char *slot, od_lsn *restart, od_error *err);
/* pg_slot_health.c: retained WAL, wal_status and safe_wal_size of the slot; an invalidated slot is
 * fatal (od_pg_slot_lost names the recovery). */
int od_pg_slot_health_check(pg_source *s, od_error *err);
/* pg_spill.c: reads the spill of the slot decoding now (and of the pipeline's slot) into
 * spilled_bytes, warns once per phase; phase: a catch-up or a stream starts. PostgreSQL 14+. */
int od_pg_spill_read(pg_source *s, od_error *err);
void od_pg_spill_phase(pg_source *s);
int od_pg_slot_lost(pg_source *s, const char *why, od_error *err);
bool od_pg_slot_lost_message(const char *msg);
bool od_pg_health(od_source *s, od_source_health *out);

/* pg_tables.c: the vtable's `tables` (odsync/source.h). */
int od_pg_tables(od_source *s, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                 void *ctx, od_error *err);
int od_pg_create_slot(pg_source *s, PGconn *repl, const char *name, bool temporary, char *snap, size_t cap,
                      od_lsn *point, od_error *err);

/* FirstNormalObjectId: type OIDs below are built in (the same on every server), at or above are
 * user-defined (enums, domains, composites, extension types). */
#define OD_PG_FIRST_USER_OID ((unsigned)OD_PGT_FIRST_USER_OID) /* common/pg_types.h */

/* pg_snapshot.c: the source's part of an od_snap_table (od_snap_table.priv). */
typedef struct pg_snap_table {
  char *from_q;      /* "schema"."table" */
  char *cols_q;      /* "a", "b", ... */
  char *cols_bin_q;  /* the same with user-defined types cast to text: "a", "m"::text, ... (binary reads) */
  char *key_q;       /* the integer key column (OD_SNAP_INT_KEY), else NULL */
  char *key_order_q; /* incremental snapshots: the key columns, "k1", "k2" (NULL: no usable key) */
  char *key_after_q; /* and ("k1", "k2") > ($1::type1, $2::type2) */
  char *filter;      /* the publication's row filter (PG 15+), else NULL */
  char **leaves_q;   /* OD_SNAP_PARTITION: the leaf partitions by schema and name, each "schema"."leaf"
                        followed by its NUL and the plain schema.leaf (for messages) */
  uint32_t nleaves;
  double reltuples;  /* pg_class statistics (-1 / 0: unknown) */
  int64_t relpages;
} pg_snap_table;

/* pg_snapshot.c */
extern const od_snapshot_ops od_pg_snapshot_ops;
void od_pg_snapshot_free(pg_source *s);

/* pg_isnap.c */
extern const od_isnap_ops od_pg_isnap_ops;
/* Fill t->nkey, t->key_cols, t->no_keyset and pt->key_order_q/key_after_q from the catalog (on
 * s->meta), after t->rel is built. */
int od_pg_isnap_key(pg_source *s, od_snap_table *t, pg_snap_table *pt, od_error *err);
/* Fill info->text_form from s->meta's reported settings. */
void od_pg_isnap_text_form(pg_source *s, od_snapshot_info *info);

#endif
