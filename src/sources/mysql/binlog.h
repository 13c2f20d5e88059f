/* sources/mysql/binlog.h — the MariaDB/MySQL binlog event decoder (internal to the mysql source).
 *
 * Owns: framing of one event (header, checksum), the events the source needs (FORMAT_DESCRIPTION,
 * ROTATE, GTID, GTID_LIST, XID, QUERY, TABLE_MAP, WRITE/UPDATE/DELETE_ROWS v1/v2), MySQL's own
 * (GTID, ANONYMOUS_GTID, PREVIOUS_GTIDS, v2 extra row info, PARTIAL_UPDATE_ROWS), the column
 * descriptions of a table map, and the decoding of row images into text values (docs/TYPES.md,
 * "MariaDB"). Everything is decoded here from the event bytes; MariaDB Connector/C only delivers them.
 * Ownership: an my_event points into the caller's buffer; an my_table and everything in it is
 * owned by whoever parsed it (my_table_free); row values point into an my_valbuf, valid until its
 * next use.
 * Never touches: connections, the pipeline, positions, information_schema (the source fills the
 * column facts a MINIMAL table map lacks).
 */
#ifndef ODSYNC_MYSQL_BINLOG_H
#define ODSYNC_MYSQL_BINLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/change.h"
#include "odsync/error.h"

enum my_event_type {
  MY_EV_QUERY = 2,
  MY_EV_ROTATE = 4,
  MY_EV_FORMAT = 15,
  MY_EV_XID = 16,
  MY_EV_TABLE_MAP = 19,
  MY_EV_WRITE_V1 = 23,
  MY_EV_UPDATE_V1 = 24,
  MY_EV_DELETE_V1 = 25,
  MY_EV_HEARTBEAT = 27,
  MY_EV_WRITE_V2 = 30,
  MY_EV_UPDATE_V2 = 31,
  MY_EV_DELETE_V2 = 32,
  MY_EV_MYSQL_GTID = 33,        /* MySQL 5.6+: GTID_LOG_EVENT (binlog_mysql.c) */
  MY_EV_MYSQL_ANON_GTID = 34,   /* MySQL: ANONYMOUS_GTID_LOG_EVENT */
  MY_EV_MYSQL_PREV_GTIDS = 35,  /* MySQL: PREVIOUS_GTIDS_LOG_EVENT */
  MY_EV_MYSQL_PARTIAL_UPDATE = 39, /* MySQL 8: PARTIAL_UPDATE_ROWS_EVENT (binlog_row_value_options) */
  MY_EV_ANNOTATE = 160,
  MY_EV_CHECKPOINT = 161,
  MY_EV_GTID = 162,
  MY_EV_GTID_LIST = 163,
  MY_EV_QUERY_COMPRESSED = 165,
  MY_EV_WRITE_COMPRESSED_V1 = 166,
  MY_EV_UPDATE_COMPRESSED_V1 = 167,
  MY_EV_DELETE_COMPRESSED_V1 = 168,
  MY_EV_WRITE_COMPRESSED_V2 = 169,
  MY_EV_UPDATE_COMPRESSED_V2 = 170,
  MY_EV_DELETE_COMPRESSED_V2 = 171,
};

/* Column types of a table map (MySQL's enum_field_types). */
enum my_type {
  MY_T_DECIMAL = 0, MY_T_TINY = 1, MY_T_SHORT = 2, MY_T_LONG = 3, MY_T_FLOAT = 4, MY_T_DOUBLE = 5,
  MY_T_NULL = 6, MY_T_TIMESTAMP = 7, MY_T_LONGLONG = 8, MY_T_INT24 = 9, MY_T_DATE = 10, MY_T_TIME = 11,
  MY_T_DATETIME = 12, MY_T_YEAR = 13, MY_T_NEWDATE = 14, MY_T_VARCHAR = 15, MY_T_BIT = 16,
  MY_T_TIMESTAMP2 = 17, MY_T_DATETIME2 = 18, MY_T_TIME2 = 19, MY_T_JSON = 245, MY_T_NEWDECIMAL = 246,
  MY_T_ENUM = 247, MY_T_SET = 248, MY_T_TINY_BLOB = 249, MY_T_MEDIUM_BLOB = 250, MY_T_LONG_BLOB = 251,
  MY_T_BLOB = 252, MY_T_VAR_STRING = 253, MY_T_STRING = 254, MY_T_GEOMETRY = 255,
};

#define MY_HEADER_LEN 19

typedef struct my_format {
  bool checksum;        /* events end with a 4-byte CRC32 (binlog_checksum=CRC32) */
  uint8_t header_len;   /* 19 */
  uint8_t post_header[256]; /* post-header length by event type (0: unknown) */
  char server_version[51];
} my_format;

typedef struct my_event {
  uint32_t timestamp;
  uint8_t type;
  uint32_t server_id;
  uint32_t size;     /* whole event, header and checksum included */
  uint32_t log_pos;  /* binlog offset just past this event (0 for artificial events) */
  uint16_t flags;
  const uint8_t *body; /* after the header, checksum excluded */
  size_t body_len;
} my_event;

/* Defaults for a stream before its FORMAT_DESCRIPTION (MariaDB 10+ post-header lengths). */
void my_format_init(my_format *f, bool checksum);
/* Frame one event (buf = the header's first byte). Verifies the CRC32 when f->checksum. */
int my_event_parse(const my_format *f, const uint8_t *buf, size_t len, my_event *ev, od_error *err);
/* FORMAT_DESCRIPTION: header length, post-header lengths, checksum algorithm. */
int my_format_parse(my_format *f, const uint8_t *buf, size_t len, od_error *err);

typedef struct my_rotate {
  uint64_t pos;
  char file[256];
} my_rotate;
int my_rotate_parse(const my_event *ev, my_rotate *out, od_error *err);

typedef struct my_gtid {
  uint32_t domain, server;
  uint64_t seq;
  uint8_t flags; /* MariaDB GTID flags: 1 standalone (no XID follows) */
} my_gtid;
#define MY_GTID_STANDALONE 0x01
int my_gtid_parse(const my_event *ev, my_gtid *out, od_error *err);
/* GTID_LIST: up to `cap` entries into out; *n = how many the event holds. */
int my_gtid_list_parse(const my_event *ev, my_gtid *out, int cap, int *n, od_error *err);
int my_xid_parse(const my_event *ev, uint64_t *xid, od_error *err);

typedef struct my_query {
  const char *db; /* not NUL-terminated */
  size_t db_len;
  const char *sql; /* not NUL-terminated; into the event, or into `inflated` */
  size_t sql_len;
  uint8_t *inflated; /* QUERY_COMPRESSED: the statement (owned; my_query_free) */
} my_query;
int my_query_parse(const my_format *f, const my_event *ev, my_query *out, od_error *err);
void my_query_free(my_query *q);
/* MariaDB's compressed binlog data: a header byte (0x80 | bytes of the length), the uncompressed
 * length big-endian, zlib data. *out is malloc'd. -1 when malformed. */
int my_inflate(const uint8_t *p, const uint8_t *end, uint8_t **out, size_t *out_len);

/* Character sets the decoder knows how to turn into UTF-8. */
enum my_charset { MY_CS_UNKNOWN = 0, MY_CS_UTF8, MY_CS_LATIN1, MY_CS_ASCII, MY_CS_BINARY, MY_CS_OTHER };
int my_charset_of_collation(unsigned collation_id); /* enum my_charset */
int my_charset_of_name(const char *name);           /* "utf8mb4", "latin1", ... */

typedef struct my_column {
  uint8_t type;      /* enum my_type as the binlog writes it (STRING for CHAR/BINARY/ENUM/SET) */
  uint8_t real_type; /* STRING: STRING, ENUM or SET; else = type */
  uint32_t length;   /* STRING/VARCHAR: max bytes; BLOB: length bytes; ENUM/SET/FLOAT/DOUBLE: pack
                        length; TIME2/DATETIME2/TIMESTAMP2: fractional digits; BIT: bits */
  uint8_t precision, scale; /* NEWDECIMAL */
  bool nullable;
  /* Facts the table map carries only with binlog_row_metadata=FULL (else information_schema): */
  char *name;
  bool is_unsigned;
  uint8_t charset; /* enum my_charset, character and ENUM/SET columns */
  bool key;        /* part of the primary key */
  char **labels;   /* ENUM/SET member names, in order */
  int nlabels;
  char *column_type; /* information_schema COLUMN_TYPE ("decimal(10,2) unsigned"), or NULL */
} my_column;

typedef struct my_table {
  uint64_t id;
  char *db, *name;
  int ncols;
  my_column *cols;
  bool full_metadata; /* names, signedness, charsets and labels came with the table map */
  bool has_key;       /* a primary key is known (full_metadata or information_schema) */
} my_table;

int my_table_map_parse(const my_format *f, const my_event *ev, my_table **out, od_error *err);
void my_table_free(my_table *t);
/* Binlog table id of a TABLE_MAP or rows event (the first 6 bytes of its post-header). */
uint64_t my_event_table_id(const my_format *f, const my_event *ev);

/* Growing text buffer that holds one row event's values (its before and after images). */
typedef struct my_valbuf {
  char *buf;
  size_t len, cap;
  od_value *vals;  /* 2 * ncols */
  size_t *offs;
  int cap_vals;
} my_valbuf;
void my_valbuf_free(my_valbuf *vb);

/* A rows event, read row by row. */
typedef struct my_rows {
  uint8_t op;     /* OD_OP_INSERT / OD_OP_UPDATE / OD_OP_DELETE */
  uint64_t table_id;
  uint16_t flags; /* 1: last rows event of the statement */
  int ncols;
  const uint8_t *present_before, *present_after;
  const uint8_t *p, *end;
  uint8_t *inflated; /* compressed variants: the uncompressed rows (owned) */
  bool partial;      /* PARTIAL_UPDATE_ROWS: each after image starts with value_options */
  int32_t partition_id, source_partition_id; /* v2 extra info (MySQL), -1 when absent */
  uint8_t ndb_info_len;                      /* v2 extra info: NDB's bytes (skipped), 0 when absent */
} my_rows;

/* MySQL's JSON diff list (a partial JSON update's after-image value): a 4-byte length, then per diff
 * an operation (0 REPLACE, 1 INSERT, 2 REMOVE), a packed-length path and, but for REMOVE, a
 * packed-length value in MySQL's binary JSON. Calls fn per diff (value NULL for REMOVE); -1 when
 * malformed. *used = the bytes of the whole list. */
typedef void (*my_json_diff_fn)(void *ctx, int op, const char *path, size_t path_len, const uint8_t *value,
                                size_t value_len);
int my_json_diffs_parse(const uint8_t *p, const uint8_t *end, size_t *used, my_json_diff_fn fn, void *ctx);

/* MySQL's GTID_LOG_EVENT / ANONYMOUS_GTID_LOG_EVENT (binlog_mysql.c). Fields past the GNO exist
 * only when the writer's version has them (has_* says which). */
typedef struct my_mysql_gtid {
  bool anonymous;  /* ANONYMOUS_GTID (gtid_mode OFF): no uuid, gno 0 */
  uint8_t flags;   /* bit 0: the transaction may contain statement-based events */
  uint8_t uuid[16];
  uint64_t gno;
  bool has_logical_clock;            /* 5.7+: the multi-threaded applier's dependency clock */
  int64_t last_committed, sequence_number;
  bool has_commit_ts;                /* 8.0+: microseconds since the epoch */
  uint64_t immediate_commit_ts, original_commit_ts;
  bool has_length;                   /* 8.0.2+: the transaction's bytes, this event included */
  uint64_t transaction_length;
  bool has_server_version;           /* 8.0.14+ */
  uint32_t immediate_server_version, original_server_version;
  bool has_ticket;                   /* 8.0.27+: group replication's commit ticket */
  uint64_t commit_group_ticket;
} my_mysql_gtid;
int my_mysql_gtid_parse(const my_format *f, const my_event *ev, my_mysql_gtid *out, od_error *err);

/* Parse the header of a rows event (any of the 12 rows event types, and MySQL's PARTIAL_UPDATE_ROWS).
 * v2 events' extra row info is read: MySQL's partition ids (partition_id, source_partition_id;
 * -1 when absent) and NDB's opaque info (ndb_info_len bytes, skipped). */
int my_rows_begin(const my_format *f, const my_event *ev, my_rows *r, od_error *err);
/* Next row: 1 and the images filled (ncolumns 0 for the one an op lacks), 0 at the end.
 * Values point into vb until its next use. A column the image lacks is OD_VALUE_UNCHANGED. */
int my_rows_next(my_rows *r, const my_table *t, my_valbuf *vb, od_tuple *before, od_tuple *after,
                 od_error *err);
void my_rows_end(my_rows *r);

/* One value of a row image at *p (moved past it) as text into vb; *off = its offset in vb->buf. */
int my_value_decode(const my_table *t, const my_column *c, const uint8_t **p, const uint8_t *end,
                    my_valbuf *vb, size_t *off, uint32_t *len, od_error *err);

/* The text binlog_value.c gives a FLOAT (single) or DOUBLE: the shortest that reads back exactly. */
int my_format_float(double x, bool single, char *buf, size_t size);

/* The column as odsync's change model names it: PostgreSQL type OID, typmod, source spelling. */
void my_column_describe(const my_column *c, od_column *out);

#endif
