/* sources/mysql/mysql_gtidset.h — MySQL GTID sets and the "mysqlgtid" position kind (internal to the
 * mysql source).
 *
 * A MySQL GTID is source_uuid:transaction_number; a GTID set is, per uuid, a list of closed
 * intervals of numbers: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,4a6f...:1-3" (what
 * @@gtid_executed and SHOW MASTER STATUS print, and what MySQL's auto-positioning resumes from).
 * Sets are kept canonical: uuids in ascending byte order, intervals sorted, disjoint and not
 * adjacent (1-3:4-5 is 1-5), so two equal sets have one text and one encoding.
 *
 * Position kind "mysqlgtid" (text "mysqlgtid:<GTID set>@<binlog file>:<offset>"): the set of
 * transactions a sink holds, with the binlog coordinates of the one server it was read from. Order:
 * binlog file number, then offset (the stream's order, as for MariaDB's "mysql" kind); equal
 * coordinates are ordered by the number of transactions in the set, then by encoding. Two sets from
 * one server's stream are ordered by inclusion the same way; sets from diverged histories are not
 * comparable by inclusion (mysql_gtidset_contains says so) and are only given a stable order.
 * Encoding (at most OD_POS_MAX bytes): file number (4 bytes BE), offset (8 BE), file name length (1)
 * and bytes, number of uuids (1), per uuid its 16 bytes, its interval count (LEB128) and per
 * interval the first number and the interval's length - 1 (LEB128). A set that does not fit is an
 * error naming the limit.
 *
 * Not registered as a source's kind: odsync has no MySQL source type yet (no MySQL server to test
 * against: docs/adapters/mysql-source.md, "MySQL"). Sets: mysql_gtidset.c; the position kind:
 * mysql_gtidpos.c. Tested by tests/unit/test_mysql_gtidset.c.
 * Ownership: plain values; no allocation.
 * Never touches: connections, the binlog stream.
 */
#ifndef ODSYNC_MYSQL_GTIDSET_H
#define ODSYNC_MYSQL_GTIDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/error.h"
#include "odsync/position.h"

#define MYSQL_GS_MAX_UUIDS 16
#define MYSQL_GS_MAX_INTERVALS 64 /* per uuid */

typedef struct mysql_gtid_interval {
  uint64_t first, last; /* closed: first <= last, both >= 1 */
} mysql_gtid_interval;

typedef struct mysql_gtid_uuid {
  uint8_t uuid[16];
  int n;
  mysql_gtid_interval iv[MYSQL_GS_MAX_INTERVALS];
} mysql_gtid_uuid;

typedef struct mysql_gtidset {
  int n;
  mysql_gtid_uuid u[MYSQL_GS_MAX_UUIDS];
} mysql_gtidset;

/* Parse the text form ("" is the empty set; whitespace and newlines around elements allowed, as
 * MySQL prints them; uuids as 8-4-4-4-12 hex digits in any case; numbers 1..2^63-1; a uuid may come
 * twice, its intervals are merged). OD_EINVAL naming the offending part. */
int mysql_gtidset_parse(const char *text, mysql_gtidset *out, od_error *err);
/* Canonical text (lowercase uuids, "a-b" or "a"); returns its length, or -1 when it does not fit. */
int mysql_gtidset_format(const mysql_gtidset *s, char *buf, size_t size);
/* Add transaction uuid:gno (from a GTID_LOG_EVENT). OD_EINVAL when a limit is reached. */
int mysql_gtidset_add(mysql_gtidset *s, const uint8_t uuid[16], uint64_t gno, od_error *err);
/* Union b into a. */
int mysql_gtidset_union(mysql_gtidset *a, const mysql_gtidset *b, od_error *err);
/* Whether every transaction of b is in a. */
bool mysql_gtidset_contains(const mysql_gtidset *a, const mysql_gtidset *b);
/* Whether uuid:gno is in s. */
bool mysql_gtidset_has(const mysql_gtidset *s, const uint8_t uuid[16], uint64_t gno);
/* Number of transactions in s (saturating). */
uint64_t mysql_gtidset_count(const mysql_gtidset *s);
/* The binary form of PREVIOUS_GTIDS_LOG_EVENT and COM_BINLOG_DUMP_GTID: n_sids (8 LE), per sid
 * 16 bytes uuid, n_intervals (8 LE), per interval start and end (8 LE each, end exclusive).
 * *used = bytes read. */
int mysql_gtidset_decode(const uint8_t *p, size_t len, mysql_gtidset *out, size_t *used, od_error *err);
/* The same binary form into buf; returns its length, or -1 when it does not fit. */
long mysql_gtidset_encode(const mysql_gtidset *s, uint8_t *buf, size_t size);

extern const od_pos_kind od_pos_mysql_gtid;

/* Build and take apart a "mysqlgtid" position. */
int mysql_gtidpos_make(const char *file, uint64_t offset, const mysql_gtidset *set, od_pos *out, od_error *err);
int mysql_gtidpos_parts(const od_pos *p, char *file, size_t file_size, uint64_t *offset, mysql_gtidset *set);

#endif
