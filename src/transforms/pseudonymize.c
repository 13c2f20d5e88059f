/* pseudonymize.c — the pseudonymize transform: selected columns reach the sink as short stable
 * tokens, `prefix` followed by the first `length` hex characters (8..64, default 16) of the keyed
 * HMAC-SHA-256 of the value's text form.
 *
 *   transforms:
 *     - { type: pseudonymize, columns: [customer_id], prefix: "c_", key: "${file:/etc/odsync/pseudo.key}" }
 *
 * Equal inputs give equal tokens (joins across tables and sinks with the same key still work), so a
 * key column may be pseudonymized: rows keep their identity (at 16 hex characters two different
 * values share a token with probability about n^2 / 2^65 over n distinct values; raise `length` for
 * very large tables). The column becomes text. Owns: the HMAC state (tx_hmac.h), its options. Never
 * touches: the key's text in messages, unselected columns.
 */
#include <stdlib.h>
#include <string.h>

#include "transforms/rewrite.h"
#include "transforms/tx_hmac.h"

typedef struct pseudo {
  tx_rewrite r;
  tx_hmac *h;
  const char *prefix;
  size_t prefix_len;
  long length;
} pseudo;

extern const od_transform_ops od_transform_pseudonymize;
static const char *const keys[] = {"key", "prefix", "length", NULL};

static int ps_open(tx_rewrite *r, const od_config_section *cfg, od_error *err) {
  pseudo *p = (pseudo *)r;
  int rc;
  if ((rc = od_config_string(cfg, "prefix", "", &p->prefix, err)) ||
      (rc = od_config_int(cfg, "length", 16, 8, 64, &p->length, err)))
    return rc;
  p->prefix_len = strlen(p->prefix);
  return tx_hmac_open(cfg, "pseudonymize", &p->h, err);
}

static void ps_close(tx_rewrite *r) { tx_hmac_close(((pseudo *)r)->h); }

static int ps_value(tx_rewrite *r, const od_column *c, const od_value *in, od_value *out, od_scratch *s,
                    od_error *err) {
  (void)c;
  pseudo *p = (pseudo *)r;
  unsigned char d[32];
  int rc = tx_hmac_digest(p->h, in->data, in->len, d, err);
  if (rc) return rc;
  size_t n = p->prefix_len + (size_t)p->length;
  char *o = s->alloc(s, n + 1);
  if (!o) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  memcpy(o, p->prefix, p->prefix_len);
  tx_hex_chars(d, (size_t)p->length, o + p->prefix_len);
  o[n] = '\0';
  *out = (od_value){.data = o, .len = (uint32_t)n, .kind = OD_VALUE_TEXT};
  return OD_OK;
}

static const tx_rewrite_kind kind = {
    .ops = &od_transform_pseudonymize,
    .size = sizeof(pseudo),
    .keys = keys,
    .key_allowed = true,
    .to_text = true,
    .open = ps_open,
    .value = ps_value,
    .close = ps_close,
};

static int open_pseudo(const od_config_section *cfg, od_transform **out, od_error *err) {
  return tx_rewrite_open(cfg, &kind, out, err);
}

const od_transform_ops od_transform_pseudonymize = {
    .type = "pseudonymize",
    .keeps_values = false,
    .open = open_pseudo,
    .relation = tx_rewrite_relation,
    .change = tx_rewrite_change,
    .close = tx_rewrite_close,
};
