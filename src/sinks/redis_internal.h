/* sinks/redis_internal.h — shared state of the Redis sink's two files (private).
 *
 *   redis.c        the vtable: config, connection (AUTH with an ACL user), the batch as one
 *                  MULTI ... EXEC that also writes the checkpoint, marks, pipelined replies
 *   redis_modes.c  what one change becomes in each table mode (hash, json, invalidate, stream)
 *
 * Ownership: the rd_sink owns the hiredis context, its config copies and the scratch buffers.
 * Commands are formatted into hiredis' output buffer when appended (the change's memory is not
 * kept). Never touches: the source, acknowledgements, retries, process exit.
 */
#ifndef ODSYNC_SINKS_REDIS_INTERNAL_H
#define ODSYNC_SINKS_REDIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sqlbuf.h"
#include "odsync/sink.h"

enum rd_mode { RD_HASH, RD_JSON, RD_INVALIDATE, RD_STREAM };

typedef struct rd_table_mode {
  char *table; /* "schema.table" as configured */
  int mode;
} rd_table_mode;

typedef struct rd_sink {
  od_sink base;
  struct rd_conn *ctx;  /* the connection (redis_conn.h), NULL when disconnected */
  char *host;
  int port;
  char *user, *password; /* password: secret, never logged */
  bool tls;             /* TLS, verify-full (redis_conn.h) */
  char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name; /* NULL when not set */
  int db;
  char *prefix;
  char *ckname;         /* the checkpoint's field: "<pipeline>" or "<pipeline>.<sink>" */
  char name[300];       /* "host:port/db" for messages */
  int default_mode;
  rd_table_mode *modes;
  int nmodes;
  long ttl_seconds;     /* hash/json: EXPIRE after each write (0: none) */
  long stream_maxlen;   /* stream: MAXLEN ~ n */
  long timeout_ms;
  bool in_txn;
  size_t queued;        /* commands appended since MULTI (their replies are read at commit) */
  od_sqlbuf key, val, aux; /* scratch */
  uint64_t duplicates;  /* stream entries rejected as already present (a replay) */
} rd_sink;

/* redis.c: append one command (argv/argvlen as hiredis takes them) to the open MULTI. */
int rd_append(rd_sink *s, int argc, const char **argv, const size_t *argvlen, od_error *err);

/* redis_modes.c */
int rd_mode_of(const rd_sink *s, const od_relation *rel);
/* The table's name in keys: "orders" for public.orders, else "schema.table". */
void rd_table_name(const od_relation *rel, od_sqlbuf *out);
int rd_apply_change(rd_sink *s, const od_change *c, od_error *err);

#endif
