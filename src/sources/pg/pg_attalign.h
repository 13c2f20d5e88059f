/* pg_attalign.h — which catalog column (attnum) each column of a Relation message is, when the
 * catalog is read later than the WAL being decoded (odsync behind the DDL). Pure: no I/O. */
#ifndef ODSYNC_PG_ATTALIGN_H
#define ODSYNC_PG_ATTALIGN_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

/* One pg_attribute row of the table as it is today (attnum > 0), dropped columns included. */
typedef struct pg_att {
  int16_t attnum;
  const char *name;  /* attname (a dropped column's placeholder name is never compared) */
  uint32_t type_oid; /* atttypid (0 for a dropped column) */
  bool dropped;      /* attisdropped */
} pg_att;

/* A column as the Relation message sent it. */
typedef struct pg_wire_col {
  const char *name;
  uint32_t type_oid;
} pg_wire_col;

/* Aligns the message's columns (in the message's order, which is attnum order) with the
 * catalog rows `cat` (sorted by attnum ascending): match[i] = index into cat of wire column i,
 * or -1 for all columns when no alignment exists (more columns than the catalog has attnums,
 * or the table is gone). The alignment keeps attnums strictly increasing (attnums never change
 * and are never reused) and maximizes agreement: same name and type, then same name (a later
 * ALTER ... TYPE), then same type or a column dropped since (a later RENAME or DROP). So a
 * column renamed since and a new column added under its old name are told apart whenever the
 * order allows. Returns 0, or -1 when out of memory (match all -1). */
int od_pg_align_columns(const pg_wire_col *wire, size_t n, const pg_att *cat, size_t m, int *match);

#endif
