/* sources/mysql/my_position.h — the "mysql" position kind: a MariaDB GTID list with the binlog
 * file:offset it corresponds to (internal to the mysql source; odsync/position.h explains positions).
 *
 * Order is by binlog file (its numeric suffix) then offset: the order of the one server's binlog
 * the source reads. The GTID list is what a restart resumes from (@slave_connect_state); it only
 * ever contains GTIDs whose transaction committed at or before the offset.
 * Text form: "mysql:<gtid list>@<file>:<offset>", e.g. "mysql:0-1-42,1-2-7@odsync-bin.000003:1234"
 * ("mysql:@odsync-bin.000001:4" before the first GTID).
 * Encoding: file number (4 bytes BE), offset (8 bytes BE), file name length (1) and bytes, then the
 * GTID list text; at most OD_POS_MAX bytes.
 * Never touches: connections, the binlog bytes.
 */
#ifndef ODSYNC_MYSQL_POSITION_H
#define ODSYNC_MYSQL_POSITION_H

#include "odsync/position.h"

extern const od_pos_kind od_pos_mysql;

/* Build a position; OD_EINVAL (message names the file) when it does not fit or the file name has
 * no numeric suffix. */
int my_pos_make(const char *file, uint64_t offset, const char *gtids, od_pos *out, od_error *err);
/* Parts of a position made by my_pos_make: the binlog file name, the offset, the GTID list text. */
void my_pos_parts(const od_pos *p, char *file, size_t file_size, uint64_t *offset, char *gtids, size_t gtids_size);

#endif
