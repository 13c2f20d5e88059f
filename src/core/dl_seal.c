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
  if (len && (*out)[len - 1] == '\n') (*out)[--len] = '\0';
  if (!strcmp(field, "change")) { /* a JSON string: the change column may be jsonb (PostgreSQL) */
    char *q = malloc(len + 3);
    if (!q) {
      free(*out);
      *out = NULL;
      return OD_FAIL(err, OD_ENOMEM, "dead letter: out of memory");
    }
    q[0] = '"';
    memcpy(q + 1, *out, len);
    q[len + 1] = '"';
    q[len + 2] = '\0';
    free(*out);
    *out = q;
  }
  return OD_OK;
}

static int open_value(const od_keyring *kr, const char *name, const char *position, const char *field,
                      const char *stored, char **out, od_error *err);

bool od_dl_is_sealed(const char *stored) {
  return stored && (od_seal_is_line(stored) || (stored[0] == '"' && od_seal_is_line(stored + 1)));
}

int od_dl_open(const od_keyring *kr, const char *name, const char *position, const char *field, const char *stored,
               char **out, od_error *err) {
  *out = NULL;
  if (!stored) stored = "";
  char *unq = NULL; /* the sealed change as a JSON string: its text without the quotes */
  size_t sl = strlen(stored);
  if (sl >= 2 && stored[0] == '"' && stored[sl - 1] == '"' && od_seal_is_line(stored + 1)) {
    if (!(unq = strndup(stored + 1, sl - 2))) return OD_FAIL(err, OD_ENOMEM, "dead letter: out of memory");
    stored = unq;
  }
  int rc = open_value(kr, name, position, field, stored, out, err);
  free(unq);
  return rc;
}

static int open_value(const od_keyring *kr, const char *name, const char *position, const char *field,
                      const char *stored, char **out, od_error *err) {
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
