/* common/seal.h — encryption at rest: AES-256-GCM (OpenSSL EVP) for what odsync writes to disk.
 *
 * Owns: the keyring (keys in a page-locked buffer where mlock is allowed, wiped with
 * OPENSSL_cleanse when freed). Never touches: the config file (keys are handed in as text,
 * usually resolved from ${env:}/${file:} by the config loader), the log, and it never copies key
 * material into an error message.
 *
 * Sealed record (one blob, self-describing):
 *   "OS" 0x01 | idlen (1 byte) | key id (idlen bytes) | nonce (12 random bytes) | ciphertext | tag (16)
 * The associated data (authenticated, not stored) binds the blob to where it belongs:
 *   "odsync-seal-v1" 0x00 | name 0x00 | index (8 bytes, big endian) | key id
 * where `name` is the file's base name (so a record cannot be moved to another file; the state
 * directory itself may be moved) and `index` is the record's position in that file (so records
 * cannot be swapped, dropped from the middle or duplicated). Any change to a byte, a swap, a move
 * or a wrong key fails to open with an error naming the file and the record: never a silent read.
 *
 * Key rotation: a keyring holds several keys by id; the first added with current=true seals new
 * records, every key in the ring opens records sealed under its id. Rotate by adding the new key
 * as current and keeping the old one until everything written under it has been rewritten or
 * dropped (docs/SECURITY.md).
 *
 * Users: the schema history (core/schema.c, sealed lines), segment files of the spools and the
 * http journal (common/segfile.c: od_seal/od_open per frame, index = the frame's byte offset, name =
 * "<directory>/<file>"), dead letters in the sinks (core/dl_seal.c, sealed lines).
 * How a writer adopts it:
 *  - whole files: od_seal_file_write(kr, path, data, len) (atomic: temp file, fsync, rename) and
 *    od_seal_file_read(kr, path, &data, &len);
 *  - JSONL files: od_seal_line / od_open_line (one sealed record per line, index = line number);
 *  - append-only record files: od_seal_append(fd, kr, name, index, rec, len) writes one framed
 *    record (4-byte big-endian length + sealed blob); read them back in order with
 *    od_seal_next(buf, size, &pos, kr, name, index, &rec, &len) with index 0, 1, 2, ...
 *    A torn last frame (crash while appending) is reported as OD_EOF with *pos at its start, so
 *    the caller may cut the file there; records dropped from the END of a file are not detected
 *    by the seal itself (keep the count elsewhere, e.g. in a checkpoint, if that matters).
 */
#ifndef ODSYNC_COMMON_SEAL_H
#define ODSYNC_COMMON_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/config.h"
#include "odsync/error.h"

#define OD_SEAL_KEY_BYTES 32
#define OD_SEAL_NONCE_BYTES 12
#define OD_SEAL_TAG_BYTES 16
#define OD_SEAL_ID_MAX 64
#define OD_SEAL_KEYS_MAX 16

typedef struct od_keyring od_keyring;

int od_keyring_new(od_keyring **out, od_error *err);
/* Add a key: `key_text` is 64 hex digits or the base64 of exactly 32 bytes (e.g. from
 * `openssl rand -hex 32`); `id` 1..64 printable characters, unique. `what` names the key for
 * messages ("encryption.keys[0]"). The text is not kept (the caller should wipe its copy). */
int od_keyring_add(od_keyring *kr, const char *id, const char *key_text, bool current, const char *what,
                   od_error *err);
/* The id new records are sealed with (NULL when no key is current). */
const char *od_keyring_current(const od_keyring *kr);
/* The keyring of the config's `encryption:` section (first key current); *out = NULL when the
 * section is absent (nothing is encrypted). */
int od_keyring_from_config(const od_config *cfg, od_keyring **out, od_error *err);
/* The same from the keys themselves (`file` names the config in messages); *out = NULL when
 * there are none. For adapters, which see their config section (od_config_section.encryption). */
int od_keyring_from_keys(const od_encryption_config *enc, const char *file, od_keyring **out, od_error *err);
/* Wipe and free. NULL is ignored. */
void od_keyring_free(od_keyring *kr);

/* Bytes a sealed record adds to its plaintext with the current key. */
size_t od_seal_overhead(const od_keyring *kr);
/* Seal `len` bytes as record `index` of file `name`; *out (malloc'd, caller frees) gets the blob. */
int od_seal(const od_keyring *kr, const char *name, uint64_t index, const void *pt, size_t len, unsigned char **out,
            size_t *out_len, od_error *err);
/* Open a blob made by od_seal for the same name and index; *out (malloc'd, caller frees; a NUL
 * follows the plaintext for convenience) gets the plaintext. A blob that does not authenticate
 * fails with OD_EIO and a message naming `name` and `index`. */
int od_open(const od_keyring *kr, const char *name, uint64_t index, const void *blob, size_t len, unsigned char **out,
            size_t *out_len, od_error *err);

/* Whole files (one record, index 0, name = the path's base name). */
int od_seal_file_write(const od_keyring *kr, const char *path, const void *data, size_t len, od_error *err);
int od_seal_file_read(const od_keyring *kr, const char *path, unsigned char **out, size_t *out_len, od_error *err);

/* Text lines (JSONL files): a record as one line "sealed:" + base64(blob) + "\n"; *out is
 * malloc'd and NUL-terminated. od_open_line takes the line without its "\n" and returns the
 * plaintext (NUL-terminated). od_seal_is_line tells a sealed line from a plain one. */
int od_seal_line(const od_keyring *kr, const char *name, uint64_t index, const void *text, size_t len, char **out,
                 size_t *out_len, od_error *err);
int od_open_line(const od_keyring *kr, const char *name, uint64_t index, const char *line, char **out,
                 size_t *out_len, od_error *err);
bool od_seal_is_line(const char *line);

/* Append-only record files (see above). */
int od_seal_append(int fd, const od_keyring *kr, const char *name, uint64_t index, const void *rec, size_t len,
                   od_error *err);
/* OD_OK with the record, OD_EOF at the end (or at a torn last frame: *pos stays at its start),
 * OD_EIO when a record does not authenticate. */
int od_seal_next(const unsigned char *buf, size_t size, size_t *pos, const od_keyring *kr, const char *name,
                 uint64_t index, unsigned char **out, size_t *out_len, od_error *err);

#endif
