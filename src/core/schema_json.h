/* core/schema_json.h — the JSON of one schema history line (private to core/schema.c).
 *
 * Owns: nothing beyond what it returns: a malloc'd line, or a record whose strings and column
 * array are malloc'd and released by od_schema_json_rec_free (or taken over by the caller).
 * Reads exactly the objects od_schema_json_line writes, in any key order, skipping unknown keys.
 * Never touches: files, the schema registry.
 */
#ifndef ODSYNC_CORE_SCHEMA_JSON_H
#define ODSYNC_CORE_SCHEMA_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/change.h"

typedef struct od_schema_json_rec {
  char *table;     /* "schema.name" */
  od_relation rel; /* schema, name, columns (and their names) malloc'd; previous NULL */
  bool applied;
  char *recreated_at; /* malloc'd; NULL when the line has none (see od_schema_json_line) */
} od_schema_json_rec;

/* One line, '\n'-terminated, into a malloc'd *out. OD_OK or OD_ENOMEM. `recreated_at` (NULL:
 * omitted) is the text of the source position of the transaction that first used a table
 * re-created at the source ("recreated_at":"0/16B3748"). */
int od_schema_json_line(const char *table, const od_relation *rel, const char *recorded_at,
                        const char *policy, bool applied, const char *change, const char *recreated_at,
                        char **out, size_t *len);
/* OD_OK, or OD_EINVAL with a reason in `why` ("column 2: missing \"name\""). */
int od_schema_json_parse(const char *line, od_schema_json_rec *out, char *why, size_t why_size);
void od_schema_json_rec_free(od_schema_json_rec *r);

#endif
