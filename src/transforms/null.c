/* null.c — the null transform: selected columns reach the sink as NULL (the column stays, with its
 * type, so the sink's table keeps its shape).
 *
 *   transforms:
 *     - { type: null, columns: [notes, ip_address], tables: [public.orders] }
 *
 * A key column cannot be nulled (row identity): refused with an error naming table and column.
 * Owns: nothing beyond the engine's state (rewrite.h). Never touches: unselected columns.
 */
#include "transforms/rewrite.h"

extern const od_transform_ops od_transform_null;

static int nl_value(tx_rewrite *r, const od_column *c, const od_value *in, od_value *out, od_scratch *s, od_error *err) {
  (void)r, (void)c, (void)in, (void)s, (void)err;
  *out = (od_value){.kind = OD_VALUE_NULL};
  return OD_OK;
}

static const tx_rewrite_kind kind = {
    .ops = &od_transform_null,
    .size = sizeof(tx_rewrite),
    .key_allowed = false,
    .to_text = false,
    .value = nl_value,
};

static int open_null(const od_config_section *cfg, od_transform **out, od_error *err) {
  return tx_rewrite_open(cfg, &kind, out, err);
}

const od_transform_ops od_transform_null = {
    .type = "null",
    .keeps_values = false,
    .open = open_null,
    .relation = tx_rewrite_relation,
    .change = tx_rewrite_change,
    .close = tx_rewrite_close,
};
