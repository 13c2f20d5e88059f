/* pg_copy_text.h — PostgreSQL's COPY text format (COPY ... TO STDOUT without options): one data
 * row in, its values out (implemented in pg_copy_text.c).
 *
 * Owns nothing; never touches connections. Used by the snapshot reader (pg_snapshot.c), which
 * reads chunks with COPY (SELECT ...) TO STDOUT.
 */
#ifndef ODSYNC_PG_COPY_TEXT_H
#define ODSYNC_PG_COPY_TEXT_H

#include <stddef.h>

#include "odsync/change.h"

/* Split one data row — as PQgetCopyData() returns it: values separated by tabs, ending with a
 * newline — into at most `max` values, in place: escapes (\b \f \n \r \t \v \\, \ooo octal, \xhh
 * hex, \c for any other c) are undone inside `row`, and each value becomes NUL-terminated text
 * pointing into `row` (OD_VALUE_TEXT), or OD_VALUE_NULL for the unescaped field \N. `row[len]` must
 * be addressable (libpq NUL-terminates the rows it returns).
 * Returns the number of fields (max + 1 when there are more than max), or -1 when the row ends
 * inside an escape. */
int od_pg_copy_split(char *row, size_t len, od_value *out, int max);

#endif
