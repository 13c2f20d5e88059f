/* sources/mysql/my_stream.h — a MariaDB binlog stream turned into transactions (internal).
 *
 * Feed it every event the server sends, in order; it keeps the binlog file:offset and the GTID
 * state, the table maps by id and the relations, and calls back: begin (lazily, before the first
 * captured table of a transaction), relation (a new table shape, before a change uses it), change,
 * commit (at XID, or at the end of a standalone DDL group) and idle (a position between
 * transactions that nothing captured happened before: transactions on other tables, heartbeats).
 * A transaction occupies [start, end): start = the offset of its GTID event with the GTID state
 * before it, end = the offset just past its XID with its GTID added. A GTID therefore enters a
 * position only at its commit.
 * Ownership: the stream owns its tables, relations (alive until my_stream_free) and value buffer;
 * values passed to change() are valid for that call.
 * Never touches: connections (mysql_source.c), information_schema (the describe/shape callbacks).
 */
#ifndef ODSYNC_MYSQL_STREAM_H
#define ODSYNC_MYSQL_STREAM_H

#include "odsync/change.h"
#include "odsync/position.h"
#include "sources/mysql/binlog.h"
#include "sources/mysql/my_relcache.h"

#define MY_MAX_DOMAINS 16

typedef struct my_gtidset {
  my_gtid g[MY_MAX_DOMAINS];
  int n;
} my_gtidset;

/* "0-1-42,1-2-7" (empty: no GTIDs). OD_EINVAL with a message when malformed. */
int my_gtidset_parse(my_gtidset *s, const char *text, od_error *err);
void my_gtidset_format(const my_gtidset *s, char *buf, size_t size);
int my_gtidset_add(my_gtidset *s, const my_gtid *g, od_error *err);

typedef struct my_txn {
  od_pos start, end; /* end is known at commit */
  my_gtid gtid;
  uint64_t xid;        /* 0 for DDL */
  int64_t commit_time; /* microseconds since the epoch (second precision from the binlog) */
} my_txn;

typedef struct my_stream_cb {
  void *ctx;
  /* Whether db.table is captured (the source's table list). */
  bool (*captured)(void *ctx, const char *db, const char *table);
  /* Fill what a MINIMAL table map lacks (names, signedness, charsets, labels, keys). */
  int (*describe)(void *ctx, my_table *t, od_error *err);
  /* A described table from the server's catalog (for TRUNCATE of a table not mapped yet); *out
   * NULL when it does not exist. The caller frees it. */
  int (*shape)(void *ctx, const char *db, const char *table, my_table **out, od_error *err);
  /* A DDL statement ran (db = its default database): cached shapes are stale. */
  int (*schema_changed)(void *ctx, const char *db, const char *sql, size_t len, od_error *err);
  int (*relation)(void *ctx, od_relation *rel, od_error *err);
  int (*begin)(void *ctx, const my_txn *txn, od_error *err);
  int (*change)(void *ctx, const my_txn *txn, const od_change *c, od_error *err);
  int (*commit)(void *ctx, const my_txn *txn, od_error *err);
  int (*idle)(void *ctx, const od_pos *pos, od_error *err);
} my_stream_cb;

typedef struct my_tmap my_tmap;

typedef struct my_stream {
  my_format fmt;
  char file[256];
  uint64_t pos;      /* offset just past the last event of `file` */
  my_gtidset state;  /* GTIDs of committed transactions */
  bool in_txn, begun, standalone;
  my_txn txn;
  uint32_t index;
  od_pos last_idle;
  my_tmap *maps;
  int nmaps, capmaps;
  my_relcache *rels;
  my_valbuf vb;
  my_stream_cb cb;
} my_stream;

/* Start at file:pos with the given GTID state (the position a restart resumes from). */
int my_stream_init(my_stream *s, const my_stream_cb *cb, const char *file, uint64_t pos, const char *gtids,
                   bool checksum, od_error *err);
/* Start again at file:pos (a new connection): forgets table maps and any open transaction, keeps
 * the relations (queued changes point to them). */
int my_stream_reset(my_stream *s, const char *file, uint64_t pos, const char *gtids, bool checksum, od_error *err);
/* One event: its header's first byte at buf, len bytes (checksum included). */
int my_stream_event(my_stream *s, const uint8_t *buf, size_t len, od_error *err);
/* The position between transactions the stream is at (what an idle heartbeat reports). */
int my_stream_position(const my_stream *s, od_pos *out, od_error *err);
/* Cached table maps and their descriptions are dropped (the catalog changed). */
void my_stream_forget_tables(my_stream *s);
void my_stream_free(my_stream *s);

#endif
