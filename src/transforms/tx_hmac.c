/* tx_hmac.c — see tx_hmac.h. */
#include "transforms/tx_hmac.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct tx_hmac {
  EVP_MAC *mac;
  EVP_MAC_CTX *ctx;
  unsigned char *key;
  size_t keylen;
  bool locked;
};

#define KEY_MIN 16

void tx_hmac_close(tx_hmac *h) {
  if (!h) return;
  EVP_MAC_CTX_free(h->ctx);
  EVP_MAC_free(h->mac);
  if (h->key) {
    OPENSSL_cleanse(h->key, h->keylen);
    if (h->locked) munlock(h->key, h->keylen);
    free(h->key);
  }
  free(h);
}

int tx_hmac_open(const od_config_section *cfg, const char *type, tx_hmac **out, od_error *err) {
  const od_config_entry *e = od_config_find(cfg, "key");
  if (!e || !e->value)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: %s needs 'key: ${env:NAME}' or 'key: ${file:PATH}' (the HMAC key)",
                   cfg->file, e ? e->line : cfg->line, e ? e->col : cfg->col, cfg->path, type);
  if (!e->secret)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.key: the key must come from ${env:NAME} or ${file:PATH}, not be "
                   "written in the config file", cfg->file, e->line, e->col, cfg->path);
  size_t len = strlen(e->value);
  if (len < KEY_MIN)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.key: the key is %zu bytes; at least %d are needed", cfg->file,
                   e->line, e->col, cfg->path, len, KEY_MIN);
  tx_hmac *h = calloc(1, sizeof *h);
  if (!h || !(h->key = malloc(len))) {
    free(h);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  memcpy(h->key, e->value, len);
  h->keylen = len;
  h->locked = mlock(h->key, len) == 0; /* best effort: keep the key out of swap */
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  if (!(h->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) || !(h->ctx = EVP_MAC_CTX_new(h->mac)) ||
      !EVP_MAC_init(h->ctx, h->key, h->keylen, params)) {
    tx_hmac_close(h);
    return OD_FAIL(err, OD_EUNSUPPORTED, "%s: %s: OpenSSL has no HMAC-SHA-256", cfg->path, type);
  }
  *out = h;
  return OD_OK;
}

int tx_hmac_digest(tx_hmac *h, const char *data, size_t len, unsigned char out[32], od_error *err) {
  size_t n = 0;
  /* init without a key restarts the MAC with the key given at open */
  if (!EVP_MAC_init(h->ctx, NULL, 0, NULL) || !EVP_MAC_update(h->ctx, (const unsigned char *)data, len) ||
      !EVP_MAC_final(h->ctx, out, &n, 32) || n != 32)
    return OD_FAIL(err, OD_EINVAL, "HMAC-SHA-256 failed");
  return OD_OK;
}

void tx_hex(const unsigned char *d, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[2 * n] = '\0';
}
