/* tx_hmac.h — the keyed HMAC-SHA-256 shared by hash and pseudonymize (OpenSSL EVP_MAC).
 *
 * The key must come from a ${env:NAME} or ${file:PATH} reference (a key written in the config file
 * travels with every copy of it) and be at least 16 bytes. It is copied once into memory this module
 * owns, locked against swapping where the system allows, and wiped (OPENSSL_cleanse) at close; it is
 * never logged or put into an error. Equal inputs give equal digests, so joins on pseudonymized
 * columns still work across tables and sinks that share the key.
 * Owns: the key copy and the MAC context. Never touches: values other than the one passed.
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

#endif
