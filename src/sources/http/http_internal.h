/* sources/http/http_internal.h — the pieces of the HTTP ingest source (`type: http`) and how they
 * meet: declared tables (http_tables.c), event validation (http_event.c), the durable journal with
 * group commit (http_journal.c), the correlation-id index (http_ids.c), the listener
 * (http_server.c) and the vtable (http_source.c).
 *
 * Ownership: an hs_source owns everything below it; each module's comment says what it owns.
 * Never touches: the pipeline's queue, sinks, other sources.
 */
#ifndef ODSYNC_SOURCES_HTTP_INTERNAL_H
#define ODSYNC_SOURCES_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/change.h"
#include "odsync/error.h"
#include "odsync/position.h"

extern const od_pos_kind od_pos_http;

/* ---- declared tables (http_tables.c) ------------------------------------------------------ */

/* One declared column: the relation's od_column carries name, type oid, typmod and key flag. */
typedef struct hs_coltype {
  int kind;          /* HS_T_* */
  int length;        /* varchar(n): n; 0 = unbounded */
  int precision, scale; /* numeric(p,s): p (0 = unbounded), s */
  bool not_null;     /* key columns are not null too */
} hs_coltype;

enum { HS_T_BOOL, HS_T_INT2, HS_T_INT4, HS_T_INT8, HS_T_NUMERIC, HS_T_FLOAT4, HS_T_FLOAT8, HS_T_TEXT,
       HS_T_VARCHAR, HS_T_DATE, HS_T_TIMESTAMP, HS_T_TIMESTAMPTZ, HS_T_UUID, HS_T_JSON, HS_T_JSONB };

typedef struct hs_table {
  char full[256];    /* "schema.name" as events name it */
  od_relation rel;   /* owned: names, columns (freed by hs_tables_free) */
  hs_coltype *types; /* ncolumns */
  int nkeys;
} hs_table;

typedef struct hs_tables {
  hs_table *t;
  int n;
} hs_tables;

/* Parse the `tables:` list: each item "schema.name (col type [key] [not null], ...)". `where`
 * prefixes messages ("FILE:L:C: pipelines[0].source.tables[2]"), one per item. */
int hs_tables_parse(char *const *items, int n, const char *const *where, hs_tables *out, od_error *err);
void hs_tables_free(hs_tables *t);
/* The table an event names: "schema.name", or "name" for schema public. NULL when not declared. */
const hs_table *hs_tables_find(const hs_tables *t, const char *name);

/* ---- events (http_event.c) ---------------------------------------------------------------- */

/* A request body validated and normalized. `items` is a JSON array (jansson json_t*, owned) of
 * normalized events, one per input event, in order; ids[i] / hashes[i] are each event's
 * correlation id (pointing into items) and the hash of the event as the client sent it. */
typedef struct hs_batch {
  void *items; /* json_t* array */
  const char **ids;
  uint64_t *hashes;
  size_t n;
  bool single; /* the body was one object (paths are "$.x"), not an array ("$[i].x") */
} hs_batch;

/* Parse and validate a body (one event object or an array of them; all or nothing). On a bad
 * event: OD_EINVAL with err->msg "<json path>: what is wrong" (path like $[3].row.amount) and
 * *path set to a copy of the path (caller frees). */
int hs_batch_parse(const hs_tables *tables, const char *body, size_t len, size_t max_events, hs_batch *out,
                   char **path, od_error *err);
void hs_batch_free(hs_batch *b);

/* Turn one normalized event (json_t*) into an od_change (values point into the json, valid while it
 * lives; tuples are allocated in *scratch, which the caller frees with free()). */
int hs_event_change(const hs_tables *tables, void *event, od_change *out, void **scratch, od_error *err);

/* ---- the correlation-id index (http_ids.c) ------------------------------------------------ */

typedef struct hs_ids hs_ids;
enum { HS_ID_ABSENT = 0, HS_ID_PENDING = 1, HS_ID_DONE = 2 };
/* Open (and compact) dir/ids.log, keeping ids younger than retention_s, at most max_ids. */
int hs_ids_open(const char *dir, long retention_s, long max_ids, hs_ids **out, od_error *err);
void hs_ids_close(hs_ids *x);
/* State of an id; fills *seq and *hash when present. */
int hs_ids_get(hs_ids *x, const char *id, uint64_t *seq, uint64_t *hash);
/* Add an id (pending, or done when `done`); the caller checked it is absent. */
int hs_ids_put(hs_ids *x, const char *id, uint64_t seq, uint64_t hash, int64_t at_us, bool done);
/* Mark pending ids done (appending them to ids.log) or drop them (a failed commit). */
void hs_ids_settle(hs_ids *x, const char *const *ids, size_t n, bool ok);
/* fdatasync ids.log (before a journal segment is removed); evict expired ids. */
int hs_ids_sync(hs_ids *x, od_error *err);
size_t hs_ids_count(hs_ids *x);

/* ---- the journal (http_journal.c) --------------------------------------------------------- */

typedef struct hs_journal hs_journal;

typedef struct hs_journal_opts {
  const char *dir;          /* <state_dir>/http/<pipeline>, created */
  uint64_t segment_bytes;   /* roll segments at this size */
  uint64_t max_unacked;     /* backpressure: bytes appended but not yet held by every sink */
  long id_retention_s, id_max;
  const hs_tables *tables;  /* to rebuild the id index from retained records */
  const struct od_keyring *kr; /* borrowed; non-NULL: records are sealed (common/segfile.h, common/seal.h) */
} hs_journal_opts;

int hs_journal_open(const hs_journal_opts *o, hs_journal **out, od_error *err);
/* mkdir -p (mode 0700); 0 or -1 with errno. */
int hs_mkdirs(const char *path);
void hs_journal_close(hs_journal *j);

/* The outcome of an append. */
typedef struct hs_append_result {
  int status;          /* HTTP status: 200, 409, 503 */
  uint64_t *seqs;      /* per event (malloc'ed, caller frees) */
  size_t duplicates;   /* events that were already there */
  char msg[512];       /* for 409/503 */
  int retry_after;     /* seconds, for 503 */
} hs_append_result;

/* Append a validated batch durably (group commit) and answer; duplicates get their first seq. */
int hs_journal_append(hs_journal *j, hs_batch *b, hs_append_result *r);

/* Reading, for the source's poll: position the reader at the first record whose end is beyond
 * `from` (0 = the oldest retained). OD_EGAP when records before it were pruned. */
int hs_journal_seek(hs_journal *j, uint64_t from, od_error *err);
/* Next committed record, waiting up to timeout_ms: OD_OK with *payload (malloc'ed JSON text, caller
 * frees), or OD_AGAIN when none arrived, with *seq_first = the sequence the next record will start
 * at (everything before it has been returned: an idle position). */
int hs_journal_next(hs_journal *j, int timeout_ms, uint64_t *seq_first, uint32_t *count, int64_t *at_us,
                    char **payload, size_t *len, od_error *err);
/* Sequence after the last committed record (what an idle heartbeat reports). */
uint64_t hs_journal_next_seq(hs_journal *j);
/* Every record with end <= durable is in every sink: account for backpressure, prune segments. */
int hs_journal_ack(hs_journal *j, uint64_t durable, od_error *err);
uint64_t hs_journal_unacked(hs_journal *j);
/* Group commits (one write + fdatasync each) since open. */
uint64_t hs_journal_groups(hs_journal *j);

/* ---- the listener (http_server.c) --------------------------------------------------------- */

typedef struct hs_server hs_server;
typedef struct hs_server_opts {
  const char *host;   /* numeric */
  int port;
  const char *token;  /* NULL: no auth (loopback only) */
  size_t max_body;
  size_t max_events;
  const char *where;  /* for messages */
  const char *pipeline;
  const hs_tables *tables;
  hs_journal *journal;
} hs_server_opts;

int hs_server_start(const hs_server_opts *o, hs_server **out, od_error *err);
void hs_server_stop(hs_server *s);

/* CRC-32 (zlib) and a 64-bit FNV-1a hash, for records and event contents. */
uint64_t hs_hash64(const void *p, size_t n);

#endif
