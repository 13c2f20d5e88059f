/* tx_hmac.h — the keyed HMAC-SHA-256 shared by hash and pseudonymize (OpenSSL's SHA-256, HMAC from
 * precomputed pad states: two compressions and no allocation per value; see tx_hmac.c).
 *
 * The key must come from a ${env:NAME} or ${file:PATH} reference (a key written in the config file
 * travels with every copy of it) and be at least 16 bytes. At open it is turned into the HMAC's inner
 * and outer SHA-256 states (as secret as the key itself), kept in pages this module owns, locked
 * against swapping where the system allows, excluded from core dumps, and wiped (OPENSSL_cleanse) at
 * close; every temporary copy of the key is wiped at open. The key is never logged or put into an
 * error. Equal inputs give equal digests, so joins on pseudonymized columns still work across tables
 * and sinks that share the key.
 * Owns: the key-derived states. Never touches: values other than the one passed.
 */
#ifndef ODSYNC_TRANSFORMS_TX_HMAC_H
#define ODSYNC_TRANSFORMS_TX_HMAC_H

#include <stddef.h>

#include "odsync/config.h"
#include "odsync/error.h"

typedef struct tx_hmac tx_hmac;

int tx_hmac_open(const od_config_section *cfg, const char *type, tx_hmac **out, od_error *err);
/* The 32-byte HMAC-SHA-256 of [data, data+len). */
int tx_hmac_digest(tx_hmac *h, const char *data, size_t len, unsigned char out[32], od_error *err);
void tx_hmac_close(tx_hmac *h);
/* Lower-case hex of the first n bytes of d into out (2n characters, then NUL). */
void tx_hex(const unsigned char *d, size_t n, char *out);
/* The first nchars lower-case hex characters of d (nchars <= 2 * bytes of d) into out; no NUL. */
void tx_hex_chars(const unsigned char *d, size_t nchars, char *out);

#endif
