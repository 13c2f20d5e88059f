/* core/dl_seal.h — encryption at rest for dead letters: the row (the change's JSON) and the sink's
 * error text (it often quotes values: "Key (id)=(5) already exists") are stored sealed in the
 * sink's _odsync_dead_letters table when `encryption:` keys are configured.
 *
 * Owns: the stored form of those two fields — "sealed:" + base64 of an AES-256-GCM record
 * (common/seal.h, one line; the change as a JSON string of that, "\"sealed:...\"", so that it stays
 * valid in a jsonb column) whose associated data is "dlq/<checkpoint name>/<position>/<field>",
 * so a sealed value cannot be moved to another dead letter (another position), another pipeline
 * or sink, or from the error field to the change field without failing to open.
 * Never touches: sinks, the table, the keyring's lifetime (borrowed). The pipeline name, position,
 * table, operation, code and attempts stay clear: they hold no row values and `dlq list` filters
 * on them.
 * Reading: a sealed value without keys, with a key id not configured, or that does not
 * authenticate is refused naming the dead letter; a clear value while keys are configured is
 * refused too (written before encryption was turned on, or planted): read those with the
 * `encryption:` section removed (docs/SECURITY.md).
 */
#ifndef ODSYNC_CORE_DL_SEAL_H
#define ODSYNC_CORE_DL_SEAL_H

#include <stdbool.h>

#include "odsync/error.h"

typedef struct od_keyring od_keyring;

/* *out (malloc'd, caller frees): the value to store — sealed with kr, a copy of text without. */
int od_dl_seal(const od_keyring *kr, const char *name, const char *position, const char *field, const char *text,
               char **out, od_error *err);
/* Whether a stored value is sealed (either form). */
bool od_dl_is_sealed(const char *stored);
/* *out (malloc'd, caller frees): the plaintext of a stored value. */
int od_dl_open(const od_keyring *kr, const char *name, const char *position, const char *field, const char *stored,
               char **out, od_error *err);

#endif
