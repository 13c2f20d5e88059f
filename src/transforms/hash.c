/* hash.c — the hash transform: selected columns reach the sink as the lower-case hex HMAC-SHA-256
 * (64 characters) of their text form, keyed (an unkeyed hash of a phone number or an id is reversed
 * by trying every value).
 *
 *   transforms:
 *     - { type: hash, columns: [email], key: "${env:ODSYNC_HASH_KEY}" }
 *
 * Equal inputs give equal outputs, so a hashed key column still identifies its row (allowed) and joins
 * still work. The column becomes text. Owns: the HMAC state (tx_hmac.h). Never touches: the key's
 * text in messages, unselected columns.
 */
#include <stdlib.h>

#include "transforms/rewrite.h"
#include "transforms/tx_hmac.h"

typedef struct hash {
  tx_rewrite r;
  tx_hmac *h;
} hash;

extern const od_transform_ops od_transform_hash;
static const char *const keys[] = {"key", NULL};

static int hs_open(tx_rewrite *r, const od_config_section *cfg, od_error *err) {
  return tx_hmac_open(cfg, "hash", &((hash *)r)->h, err);
}

static void hs_close(tx_rewrite *r) { tx_hmac_close(((hash *)r)->h); }

static int hs_value(tx_rewrite *r, const od_column *c, const od_value *in, od_value *out, od_scratch *s, od_error *err) {
  (void)c;
  unsigned char d[32];
  int rc = tx_hmac_digest(((hash *)r)->h, in->data, in->len, d, err);
  if (rc) return rc;
  char *o = s->alloc(s, 65);
  if (!o) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  tx_hex(d, 32, o);
  *out = (od_value){.data = o, .len = 64, .kind = OD_VALUE_TEXT};
  return OD_OK;
}

static const tx_rewrite_kind kind = {
    .ops = &od_transform_hash,
    .size = sizeof(hash),
    .keys = keys,
    .key_allowed = true,
    .to_text = true,
    .open = hs_open,
    .value = hs_value,
    .close = hs_close,
};

static int open_hash(const od_config_section *cfg, od_transform **out, od_error *err) {
  return tx_rewrite_open(cfg, &kind, out, err);
}

const od_transform_ops od_transform_hash = {
    .type = "hash",
    .keeps_values = false,
    .open = open_hash,
    .relation = tx_rewrite_relation,
    .change = tx_rewrite_change,
    .close = tx_rewrite_close,
};
