/* admin_auth.h — who is calling the admin API, and with which role (docs/SECURITY.md).
 *
 * Credentials come in an `Authorization: Bearer <credential>` header: either one of the static
 * tokens of `admin.tokens` (compared in constant time, through their SHA-256 digests, so neither
 * the content nor the length of a configured token leaks through timing) or a JSON Web Token
 * checked against `admin.jwt` with libjwt (HS256 with a shared secret, or RS256 with a PEM public
 * key): the header's algorithm must be the configured one ("none" and the HS256-with-the-public-key
 * confusion are refused), `exp` is required and checked, `nbf`, `iss` and `aud` when present or
 * configured; the role comes from a claim (default "role").
 *
 * Owns: the token digests and the RS256 public key read from its file (freed, and the digests
 * wiped, by od_admin_auth_free). Borrows the admin config (the HS256 secret, the claim names),
 * which must outlive it. Never touches: the network, the log (the caller records decisions
 * through od_admin_record_action), and it never copies a credential into a message.
 */
#ifndef ODSYNC_ADMIN_AUTH_H
#define ODSYNC_ADMIN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_admin_auth od_admin_auth;

/* Prepare the checks of `ac` (reads the RS256 public key file; `where` prefixes errors). */
int od_admin_auth_new(const od_admin_config *ac, const char *where, od_admin_auth **out, od_error *err);
void od_admin_auth_free(od_admin_auth *a);
/* True when credentials are configured (every protected request then needs them). */
bool od_admin_auth_enabled(const od_admin_auth *a);
/* Check an Authorization header value (NULL when absent). Returns the caller's role, or
 * OD_ROLE_NONE with `why` saying what was wrong (never quoting the credential). `who` names the
 * caller for the record: "token#N" (its index in admin.tokens) or "jwt:<sub>". */
int od_admin_auth_check(const od_admin_auth *a, const char *authorization, char *who, size_t who_size, char *why,
                        size_t why_size);
/* "viewer", "operator", "admin" ("none" for OD_ROLE_NONE). */
const char *od_admin_role_name(int role);

#endif
