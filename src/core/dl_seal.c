/* core/dl_seal.c — see core/dl_seal.h. */
#include "core/dl_seal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/seal.h"

static void aad_name(char *buf, size_t size, const char *name, const char *position, const char *field) {
  snprintf(buf, size, "dlq/%s/%s/%s", name, position, field);
}

int od_dl_seal(const od_keyring *kr, const char *name, const char *position, const char *field, const char *text,
               char **out, od_error *err) {
  *out = NULL;
  if (!text) text = "";
  if (!kr) {
    if (!(*out = strdup(text))) return OD_FAIL(err, OD_ENOMEM, "dead letter: out of memory");
    return OD_OK;
  }
  char an[600];
  aad_name(an, sizeof an, name, position, field);
  size_t len = 0;
  int rc = od_seal_line(kr, an, 0, text, strlen(text), out, &len, err);
  if (rc) return od_error_prefix(err, "dead letter of %s at %s (%s): ", name, position, field);
  if (len && (*out)[len - 1] == '\n') (*out)[len - 1] = '\0';
  return OD_OK;
}

int od_dl_open(const od_keyring *kr, const char *name, const char *position, const char *field, const char *stored,
               char **out, od_error *err) {
  *out = NULL;
  if (!stored) stored = "";
  bool sealed = od_seal_is_line(stored);
  if (!sealed && !kr) {
    if (!(*out = strdup(stored))) return OD_FAIL(err, OD_ENOMEM, "dead letter: out of memory");
    return OD_OK;
  }
  if (!sealed)
    return OD_FAIL(err, OD_EIO, "dead letter of %s at %s: its %s is stored unencrypted but `encryption:` is "
                   "configured: it was stored before encryption was turned on, or planted; refusing it (to read old "
                   "dead letters, run this command with a config without the encryption section)", name, position,
                   field);
  if (!kr)
    return OD_FAIL(err, OD_EIO, "dead letter of %s at %s: its %s is encrypted but no `encryption:` keys are "
                   "configured; add the keys to the config", name, position, field);
  char an[600];
  aad_name(an, sizeof an, name, position, field);
  size_t len = 0;
  int rc = od_open_line(kr, an, 0, stored, out, &len, err);
  if (rc) return od_error_prefix(err, "dead letter of %s at %s (%s): ", name, position, field);
  return OD_OK;
}
