/* core/dead_letter.h — a change as the JSON of a dead letter, and back.
 *
 * Owns: the JSON form of one od_change (its table, operation, key, the relation's columns with
 * their names and types, the new and old rows) that the poison-row policy stores in a sink's
 * dead-letter table, and the reading of that JSON into a change `odsync dlq replay` can apply.
 * The form: {"table":"public.t","op":"insert","key":{"id":"5"},
 *   "relation":{"schema":"public","name":"t","oid":16384,"has_primary_key":true,"match_full_row":false,
 *               "columns":[{"name":"id","type":"integer","type_oid":23,"typmod":-1,"key":true},...]},
 *   "new":["5","x"],"old":null}
 * Row values are in column order: a string (the text form), null, {"unchanged":true} (a TOASTed
 * value the source did not send) or {"hex":"..."} (a binary value).
 * Never touches: sinks, I/O.
 */
#ifndef ODSYNC_CORE_DEAD_LETTER_H
#define ODSYNC_CORE_DEAD_LETTER_H

#include <stddef.h>

#include "odsync/change.h"

/* The change as JSON into a malloc'd *out (the caller frees it). OD_OK or OD_ENOMEM. */
int od_dead_letter_json(const od_change *ch, char **out);
/* "id=5, region=eu" (the key columns of the row, else the whole row), cut to size. */
void od_dead_letter_key(const od_change *ch, char *out, size_t size);
/* "insert", "update", "delete", "truncate", "read", "message". */
const char *od_op_word(int op);

/* A change read back from its JSON: everything it points to is owned by it. */
typedef struct od_dl_change od_dl_change;
/* OD_OK, OD_ENOMEM, or OD_EINVAL with the reason in why. */
int od_dead_letter_parse(const char *json, od_dl_change **out, char *why, size_t why_size);
const od_change *od_dl_change_get(const od_dl_change *c);
void od_dl_change_free(od_dl_change *c);

#endif
