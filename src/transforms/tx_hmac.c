/* tx_hmac.c — see tx_hmac.h.
 *
 * HMAC-SHA-256 (RFC 2104) from precomputed states: at open, the key (hashed first when longer than
 * the 64-byte block) is padded and XORed with ipad and opad, and one SHA-256 compression of each pad
 * is kept as the inner and the outer state. Per value, the inner state is copied and fed the value,
 * then the outer state is copied and fed the inner digest: two compressions for a value shorter than
 * 56 bytes (the minimum HMAC needs), no allocation, no parameter parsing, and the same bytes as any
 * HMAC-SHA-256 with the same key (tests/unit/test_transforms.c checks RFC 4231 and fixed tokens).
 * A value shorter than 56 bytes (the usual case) skips SHA256_Update/Final: its one block is padded
 * here (FIPS 180-4 5.1.1) in the locked page, and SHA256_Transform (the same block function as
 * Update's) runs once on the inner and once on the outer chaining value; longer values take the
 * Update/Final path. Both give the same bytes.
 *
 * The states use OpenSSL's SHA256_CTX API, deprecated in 3.0 but present in every 3.x build that
 * keeps the deprecated interfaces (Debian's does): OpenSSL 3.0's EVP has no way to copy a digest state
 * without allocating a new provider context per copy, which cost more than a compression here. The
 * SHA256_* functions use the same assembly (SHA extensions, AVX2) as EVP's SHA-256.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "transforms/tx_hmac.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

/* Everything derived from the key lives here, in pages of its own, locked against swapping,
 * excluded from core dumps and wiped at close: the pad states are as good as the key for computing tokens. `work` is the per-value state
 * (key-derived until the value is fed), kept here rather than on the stack for the same reason. */
typedef struct hmac_keyed {
  SHA256_CTX inner, outer, work;
  unsigned char block[64];  /* the one padded block of a short value */
  unsigned char oblock[64]; /* the outer hash's one block: the inner digest, then padding fixed at open */
} hmac_keyed;

struct tx_hmac {
  hmac_keyed *k; /* owned: whole pages of their own (bytes), locked when `locked`, not in core dumps */
  size_t bytes;
  bool locked;
};

#define KEY_MIN 16
#define BLOCK SHA256_CBLOCK /* 64 */

void tx_hmac_close(tx_hmac *h) {
  if (!h) return;
  if (h->k) {
    OPENSSL_cleanse(h->k, h->bytes);
    if (h->locked) munlock(h->k, h->bytes);
    free(h->k);
  }
  free(h);
}

/* w big-endian at p: one byte-swapping store on a little-endian GCC/Clang host, bytes elsewhere. */
static inline void put_be32(unsigned char *p, uint32_t w) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
  w = __builtin_bswap32(w);
  memcpy(p, &w, 4);
#else
  p[0] = (unsigned char)(w >> 24);
  p[1] = (unsigned char)(w >> 16);
  p[2] = (unsigned char)(w >> 8);
  p[3] = (unsigned char)w;
#endif
}

/* Padding after the last `n` bytes (n < 56) of a message of `total` bytes in block: 0x80, zeros, the
 * length in bits big-endian (FIPS 180-4, 5.1.1). */
static void pad_block(unsigned char *block, size_t n, uint64_t total) {
  block[n] = 0x80;
  memset(block + n + 1, 0, 56 - n - 1);
  put_be32(block + 56, (uint32_t)(total >> 29));
  put_be32(block + 60, (uint32_t)(total << 3));
}

/* The pad states for `key`; false if OpenSSL's SHA-256 failed. Wipes every stack copy of the key. */
static bool key_states(hmac_keyed *k, const unsigned char *key, size_t keylen) {
  unsigned char kb[BLOCK], pad[BLOCK];
  bool ok = true;
  memset(kb, 0, sizeof kb);
  if (keylen > BLOCK) {
    ok = SHA256_Init(&k->work) && SHA256_Update(&k->work, key, keylen) && SHA256_Final(kb, &k->work);
  } else {
    memcpy(kb, key, keylen);
  }
  for (int i = 0; i < BLOCK; i++) pad[i] = kb[i] ^ 0x36;
  ok = ok && SHA256_Init(&k->inner) && SHA256_Update(&k->inner, pad, BLOCK);
  for (int i = 0; i < BLOCK; i++) pad[i] = kb[i] ^ 0x5c;
  ok = ok && SHA256_Init(&k->outer) && SHA256_Update(&k->outer, pad, BLOCK);
  pad_block(k->oblock, SHA256_DIGEST_LENGTH, BLOCK + SHA256_DIGEST_LENGTH); /* fixed: every digest is 32 bytes */
  OPENSSL_cleanse(kb, sizeof kb);
  OPENSSL_cleanse(pad, sizeof pad);
  OPENSSL_cleanse(&k->work, sizeof k->work);
  return ok;
}

int tx_hmac_open(const od_config_section *cfg, const char *type, tx_hmac **out, od_error *err) {
  const od_config_entry *e = od_config_find(cfg, "key");
  if (!e || !e->value)
    return od_config_fail_key(cfg, "key", err, ": %s needs 'key: ${env:NAME}' or 'key: ${file:PATH}' (the HMAC key)",
                              type);
  if (!e->secret)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.key: the key must come from ${env:NAME} or ${file:PATH}, not be "
                   "written in the config file", cfg->file, e->line, e->col, cfg->path);
  size_t len = strlen(e->value);
  if (len < KEY_MIN)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.key: the key is %zu bytes; at least %d are needed", cfg->file,
                   e->line, e->col, cfg->path, len, KEY_MIN);
  tx_hmac *h = calloc(1, sizeof *h);
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  void *mem = NULL;
  if (h) h->bytes = (sizeof *h->k + (size_t)page - 1) / (size_t)page * (size_t)page;
  if (!h || posix_memalign(&mem, (size_t)page, h->bytes) != 0) {
    free(h);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  memset(mem, 0, h->bytes);
  h->k = mem;
  h->locked = mlock(mem, h->bytes) == 0; /* best effort (RLIMIT_MEMLOCK): keep the key's states out of swap */
#ifdef MADV_DONTDUMP
  madvise(mem, h->bytes, MADV_DONTDUMP); /* and out of core dumps */
#endif
  if (!key_states(h->k, (const unsigned char *)e->value, len)) {
    tx_hmac_close(h);
    return OD_FAIL(err, OD_EUNSUPPORTED, "%s: %s: OpenSSL's SHA-256 failed while keying the HMAC", cfg->path, type);
  }
  *out = h;
  return OD_OK;
}

/* One SHA-256 compression of `block` on `from`'s chaining value, the result big-endian into out. */
static void compress_one(hmac_keyed *k, const SHA256_CTX *from, const unsigned char *block, unsigned char out[32]) {
  memcpy(k->work.h, from->h, sizeof k->work.h);
  SHA256_Transform(&k->work, block);
  for (int i = 0; i < 8; i++) put_be32(out + 4 * i, (uint32_t)k->work.h[i]);
}

int tx_hmac_digest(tx_hmac *h, const char *data, size_t len, unsigned char out[32], od_error *err) {
  hmac_keyed *k = h->k;
  if (len < 56) { /* the common case: value and padding fill one block after the key's pad block */
    memcpy(k->block, data, len);
    pad_block(k->block, len, BLOCK + len);
    compress_one(k, &k->inner, k->block, k->oblock); /* the inner digest, in the locked page */
    compress_one(k, &k->outer, k->oblock, out);
    return OD_OK;
  }
  unsigned char inner[SHA256_DIGEST_LENGTH];
  k->work = k->inner;
  if (!SHA256_Update(&k->work, data, len) || !SHA256_Final(inner, &k->work))
    return OD_FAIL(err, OD_EINVAL, "HMAC-SHA-256 failed (inner hash)");
  k->work = k->outer;
  if (!SHA256_Update(&k->work, inner, sizeof inner) || !SHA256_Final(out, &k->work))
    return OD_FAIL(err, OD_EINVAL, "HMAC-SHA-256 failed (outer hash)");
  return OD_OK;
}

void tx_hex(const unsigned char *d, size_t n, char *out) {
  tx_hex_chars(d, 2 * n, out);
  out[2 * n] = '\0';
}

void tx_hex_chars(const unsigned char *d, size_t nchars, char *out) {
  static const char pairs[513] = /* byte b's two hex characters at 2 * b */
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
  size_t i = 0;
  for (; i + 1 < nchars; i += 2) memcpy(out + i, pairs + 2 * d[i >> 1], 2);
  if (i < nchars) out[i] = pairs[2 * d[i >> 1]];
}
