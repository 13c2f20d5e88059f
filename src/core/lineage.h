/* core/lineage.h — where a sink table's rows come from: source, source table, and the transforms
 * of that sink that apply to it, in order (docs/AUDIT.md#lineage). Computed from the config alone.
 *
 * Owns: nothing beyond the buffers the caller passes. Reads only the non-secret keys of transform
 * sections (type, tables, columns, where, style, unit, keep, length, prefix); never a key (`key:`),
 * never a DSN. Never touches: servers, files.
 */
#ifndef ODSYNC_CORE_LINEAGE_H
#define ODSYNC_CORE_LINEAGE_H

#include <stdbool.h>
#include <stdio.h>

#include "common/sqlbuf.h"
#include "odsync/config.h"

/* Whether a `tables:` list (n entries, 0: every table) names schema.table ("name" matches any schema). */
bool od_lineage_table_listed(char *const *tables, int n, const char *schema, const char *table);

/* The sink's transform set (the pipeline's, then the sink's) as a JSON array; table == NULL: all of
 * them, else those that apply to schema.table. */
void od_lineage_transforms_json(const od_pipeline_config *cfg, const od_sink_config *sk, const char *schema,
                                const char *table, od_sqlbuf *out);
/* A short id of the sink's whole transform set: the first 16 hex digits of the SHA-256 of its JSON
 * ("none" without transforms). out: at least 17 bytes. */
void od_lineage_transforms_id(const od_pipeline_config *cfg, const od_sink_config *sk, char *out, size_t n);

/* Whether the column `column` of schema.table reaches sink sk protected: dropped, masked, hashed,
 * pseudonymized or nulled by one of its transforms (renames on the way are followed). */
bool od_lineage_column_protected(const od_pipeline_config *cfg, const od_sink_config *sk, const char *schema,
                                 const char *table, const char *column);

/* The /status `lineage` object of one pipeline: {"source":{...},"sinks":[{"name","type","transforms":[..]}]}. */
void od_lineage_pipeline_json(const od_pipeline_config *cfg, od_sqlbuf *out);

/* `odsync lineage TABLE`: one block per pipeline and sink that receives TABLE (schema.table or
 * name). Returns the number of blocks printed. */
int od_lineage_print(const od_config *root, const char *table, FILE *out);

#endif
