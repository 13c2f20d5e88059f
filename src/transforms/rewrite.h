/* rewrite.h — the engine shared by the value-rewriting transforms (mask, hash, pseudonymize,
 * truncate_date, null): `columns:` (required) and `tables:` (optional) select the columns; the
 * engine makes one output relation per input version (rewritten columns may change type), refuses
 * key columns for kinds that would break row identity, and rewrites the selected values of every
 * change (new and old tuple alike, so a delete still finds its row). NULL and unchanged (TOAST)
 * values pass as they are; a rewritten column's default for older rows (missing_value) is rewritten
 * too.
 *
 * Owns: the tx_rewrite (allocated with the kind's size), its output relations and their
 * per-version column flags and rewritten defaults. Never touches: the sink, the input relations.
 */
#ifndef ODSYNC_TRANSFORMS_REWRITE_H
#define ODSYNC_TRANSFORMS_REWRITE_H

#include "transforms/tx_util.h"

typedef struct tx_rewrite tx_rewrite;

typedef struct tx_rewrite_kind {
  const od_transform_ops *ops;
  size_t size;            /* of the transform's struct, which starts with tx_rewrite */
  const char *const *keys; /* the kind's own config keys (besides columns, tables), NULL-terminated */
  bool key_allowed;       /* deterministic and injective enough to rewrite a key column (hash) */
  bool to_text;           /* a rewritten column becomes text (type_oid 25, "text") */
  /* Read the kind's keys. */
  int (*open)(tx_rewrite *r, const od_config_section *cfg, od_error *err);
  /* Refuse a column of a type the kind cannot rewrite (the error names table and column); may be NULL. */
  int (*column)(tx_rewrite *r, const od_relation *rel, const od_column *c, od_error *err);
  /* Rewrite a text value (never NULL or unchanged) into *out, memory from s. The error must not quote
   * the value. */
  int (*value)(tx_rewrite *r, const od_column *c, const od_value *in, od_value *out, od_scratch *s, od_error *err);
  void (*close)(tx_rewrite *r); /* the kind's own state; may be NULL */
} tx_rewrite_kind;

struct tx_rewrite {
  od_transform base;
  const tx_rewrite_kind *kind;
  char *const *columns;
  int ncolumns;
  char *const *tables;
  int ntables;
  tx_outrels outs;
};

int tx_rewrite_open(const od_config_section *cfg, const tx_rewrite_kind *kind, od_transform **out, od_error *err);
int tx_rewrite_relation(od_transform *t, const od_relation *in, const od_relation **out, od_error *err);
int tx_rewrite_change(od_transform *t, const od_relation *rel, const od_change *in, od_change *out, od_scratch *s,
                      bool *keep, od_error *err);
void tx_rewrite_close(od_transform *t);

/* Number of UTF-8 code points in [s, s+len). */
size_t tx_utf8_len(const char *s, size_t len);

#endif
