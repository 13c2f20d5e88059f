/* pg_position.h — PostgreSQL's positions: a WAL LSN as an od_pos of kind "pg" (8 bytes big-endian,
 * so positions order bytewise; text form "X/X" as PostgreSQL prints pg_lsn). A transaction's start
 * is its commit record's LSN (final_lsn), its end the LSN just past it (end_lsn).
 * Owns nothing; never touches a connection. */
#ifndef ODSYNC_PG_POSITION_H
#define ODSYNC_PG_POSITION_H

#include <stdint.h>

#include "odsync/position.h"

typedef uint64_t od_lsn; /* a WAL position inside the PostgreSQL source; 0 means none */
#define OD_LSN_FMT "%X/%X"
#define OD_LSN_ARGS(lsn) (unsigned)((lsn) >> 32), (unsigned)(lsn)

extern const od_pos_kind od_pg_position;

od_pos od_pg_pos(od_lsn lsn);          /* none for 0 */
od_lsn od_pg_lsn(const od_pos *p);     /* 0 for none */

#endif
