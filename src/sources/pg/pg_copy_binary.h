/* pg_copy_binary.h — PostgreSQL's COPY binary format (COPY ... TO STDOUT (FORMAT binary)): one
 * CopyData message in, its values out (implemented in pg_copy_binary.c).
 *
 * Owns nothing; never touches connections. Used by the snapshot reader (pg_snapshot.c) when the
 * sink takes the source's binary values as they are (od_snapshot_info.binary_format).
 */
#ifndef ODSYNC_PG_COPY_BINARY_H
#define ODSYNC_PG_COPY_BINARY_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/change.h"

/* Split one message of a binary COPY stream into at most `max` values pointing into `msg`
 * (OD_VALUE_BINARY: the type's send form; OD_VALUE_NULL). *header: true before the first message
 * of a stream (which starts with the file header: signature, flags, extension), set false once it
 * is consumed. Returns the number of fields of the row (max + 1 when there are more than max),
 * 0 for the trailer (field count -1, nothing after it), or -1 when the message is malformed
 * (bad signature, a field running past the end, bytes left over). */
int od_pg_copy_split_binary(const char *msg, size_t len, bool *header, od_value *out, int max);

#endif
