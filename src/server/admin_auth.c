/* admin_auth.c — see admin_auth.h. Static bearer tokens and JWTs (libjwt) mapped to roles. */
#include "server/admin_auth.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_CREDENTIAL 8192 /* longer Authorization values are refused unread */
#define MAX_KEY_FILE (64 * 1024)

struct od_admin_auth {
  const od_admin_config *ac;     /* borrowed */
  unsigned char (*digests)[SHA256_DIGEST_LENGTH]; /* one per admin.tokens entry */
  int ntokens;
  unsigned char *jwt_key;        /* HS256: borrowed secret; RS256: owned PEM text */
  size_t jwt_key_len;
  bool jwt_key_owned;
};

const char *od_admin_role_name(int role) {
  switch (role) {
    case OD_ROLE_VIEWER: return "viewer";
    case OD_ROLE_OPERATOR: return "operator";
    case OD_ROLE_ADMIN: return "admin";
    default: return "none";
  }
}

static int read_key_file(const char *path, const char *where, unsigned char **out, size_t *len, od_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return OD_FAIL(err, OD_ECONFIG, "%s: admin.jwt.public_key %s cannot be read: %s", where, path, strerror(errno));
  unsigned char *buf = malloc(MAX_KEY_FILE + 1);
  if (!buf) {
    fclose(f);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", where);
  }
  size_t n = fread(buf, 1, MAX_KEY_FILE + 1, f);
  fclose(f);
  buf[n < MAX_KEY_FILE ? n : MAX_KEY_FILE] = '\0';
  if (n == 0 || n > MAX_KEY_FILE || !strstr((char *)buf, "-----BEGIN")) {
    free(buf);
    return OD_FAIL(err, OD_ECONFIG, "%s: admin.jwt.public_key %s is not a PEM public key (expected -----BEGIN "
                   "PUBLIC KEY-----, at most 64 KiB)", where, path);
  }
  *out = buf;
  *len = n;
  return OD_OK;
}

int od_admin_auth_new(const od_admin_config *ac, const char *where, od_admin_auth **out, od_error *err) {
  od_admin_auth *a = calloc(1, sizeof *a);
  if (!a) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", where);
  a->ac = ac;
  if (ac->ntokens > 0) {
    if (!(a->digests = calloc((size_t)ac->ntokens, sizeof *a->digests))) {
      free(a);
      return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", where);
    }
    for (int i = 0; i < ac->ntokens; i++)
      SHA256((const unsigned char *)ac->tokens[i].token, strlen(ac->tokens[i].token), a->digests[i]);
    a->ntokens = ac->ntokens;
  }
  if (ac->jwt.enabled) {
    if (ac->jwt.rs256) {
      int rc = read_key_file(ac->jwt.public_key, where, &a->jwt_key, &a->jwt_key_len, err);
      if (rc) {
        od_admin_auth_free(a);
        return rc;
      }
      a->jwt_key_owned = true;
    } else {
      a->jwt_key = (unsigned char *)ac->jwt.secret;
      a->jwt_key_len = strlen(ac->jwt.secret);
    }
  }
  *out = a;
  return OD_OK;
}

void od_admin_auth_free(od_admin_auth *a) {
  if (!a) return;
  if (a->digests) OPENSSL_cleanse(a->digests, (size_t)a->ntokens * sizeof *a->digests);
  free(a->digests);
  if (a->jwt_key_owned) free(a->jwt_key);
  free(a);
}

bool od_admin_auth_enabled(const od_admin_auth *a) { return a && (a->ntokens > 0 || a->ac->jwt.enabled); }

/* Role index of the first token whose digest matches, scanning all of them whatever matches. */
static int match_token(const od_admin_auth *a, const char *cred, size_t len, int *index) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)cred, len, d);
  int role = OD_ROLE_NONE;
  for (int i = 0; i < a->ntokens; i++) {
    int eq = CRYPTO_memcmp(d, a->digests[i], sizeof d) == 0;
    if (eq && role == OD_ROLE_NONE) {
      role = a->ac->tokens[i].role;
      *index = i;
    }
  }
  OPENSSL_cleanse(d, sizeof d);
  return role;
}

/* `aud` as a string or a list of strings holding `want`. */
static bool audience_ok(jwt_t *jwt, const char *want) {
  const char *s = jwt_get_grant(jwt, "aud");
  if (s) return strcmp(s, want) == 0;
  char *js = jwt_get_grants_json(jwt, "aud");
  if (!js) return false;
  bool ok = false;
  json_t *v = json_loads(js, JSON_DECODE_ANY, NULL);
  if (v && json_is_array(v)) {
    size_t i;
    json_t *it;
    json_array_foreach(v, i, it) if (json_is_string(it) && strcmp(json_string_value(it), want) == 0) ok = true;
  }
  json_decref(v);
  free(js);
  return ok;
}

/* A claim's text for `who`: printable ASCII only, shortened. */
static void printable(char *out, size_t size, const char *s) {
  size_t j = 0;
  for (; s && *s && j + 1 < size && j < 64; s++) out[j++] = isprint((unsigned char)*s) ? *s : '?';
  out[j] = '\0';
}

/* Whether a token has the shape of a signed JWS before libjwt sees it: three base64url segments,
 * header and payload at least 2 characters, a signature, no segment of a length base64 cannot have
 * (4k+1), at most 8 KiB. libjwt 1.10's base64 decoding writes past its buffer for an empty or
 * 1-character segment (found under valgrind with random tokens), so malformed input stops here. */
static bool jws_shape_ok(const char *t) {
  size_t seg = 0, len = 0, total = 0;
  for (const char *p = t;; p++, total++) {
    if (total > 8192) return false;
    if (*p == '.' || *p == '\0') {
      if (len < 2 || len % 4 == 1) return false;
      seg++;
      if (*p == '\0') break;
      len = 0;
      continue;
    }
    char c = *p;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
    len++;
  }
  return seg == 3;
}

static int check_jwt(const od_admin_auth *a, const char *cred, char *who, size_t who_size, char *why,
                     size_t why_size) {
  const od_admin_jwt_config *jc = &a->ac->jwt;
  jwt_t *jwt = NULL;
  if (!jws_shape_ok(cred) || jwt_decode(&jwt, cred, a->jwt_key, (int)a->jwt_key_len) != 0 || !jwt) {
    snprintf(why, why_size, "the JWT is malformed or its signature does not verify with the configured %s key",
             jc->rs256 ? "RS256 public" : "HS256");
    return OD_ROLE_NONE;
  }
  int role = OD_ROLE_NONE;
  jwt_alg_t want = jc->rs256 ? JWT_ALG_RS256 : JWT_ALG_HS256;
  time_t now = time(NULL);
  errno = 0;
  long exp = jwt_get_grant_int(jwt, "exp");
  bool has_exp = errno == 0;
  errno = 0;
  long nbf = jwt_get_grant_int(jwt, "nbf");
  bool has_nbf = errno == 0;
  const char *iss = jwt_get_grant(jwt, "iss");
  const char *rname = jwt_get_grant(jwt, jc->role_claim);
  if (jwt_get_alg(jwt) != want) {
    snprintf(why, why_size, "the JWT is signed with %s; only %s is accepted", jwt_alg_str(jwt_get_alg(jwt)),
             jc->rs256 ? "RS256" : "HS256");
  } else if (!has_exp) {
    snprintf(why, why_size, "the JWT has no exp claim (an expiry is required)");
  } else if ((long long)now > (long long)exp + jc->leeway_s) {
    snprintf(why, why_size, "the JWT expired %lld s ago", (long long)now - (long long)exp);
  } else if (has_nbf && (long long)now + jc->leeway_s < (long long)nbf) {
    snprintf(why, why_size, "the JWT is not valid before %ld (nbf)", nbf);
  } else if (jc->issuer && (!iss || strcmp(iss, jc->issuer) != 0)) {
    snprintf(why, why_size, "the JWT's issuer (iss) is not the configured one");
  } else if (jc->audience && !audience_ok(jwt, jc->audience)) {
    snprintf(why, why_size, "the JWT's audience (aud) does not name the configured one");
  } else if (!rname) {
    snprintf(why, why_size, "the JWT has no '%.64s' claim naming a role (viewer, operator, admin)", jc->role_claim);
  } else {
    for (int r = OD_ROLE_VIEWER; r <= OD_ROLE_ADMIN; r++)
      if (!strcmp(rname, od_admin_role_name(r))) role = r;
    if (role == OD_ROLE_NONE)
      snprintf(why, why_size, "the JWT's '%.64s' claim is not a role (viewer, operator, admin)", jc->role_claim);
  }
  if (role != OD_ROLE_NONE) {
    char sub[72];
    printable(sub, sizeof sub, jwt_get_grant(jwt, "sub"));
    snprintf(who, who_size, "jwt:%s", sub[0] ? sub : "(no sub)");
  }
  jwt_free(jwt);
  return role;
}

int od_admin_auth_check(const od_admin_auth *a, const char *authorization, char *who, size_t who_size, char *why,
                        size_t why_size) {
  snprintf(who, who_size, "anonymous");
  why[0] = '\0';
  if (!authorization) {
    snprintf(why, why_size, "no credentials (send Authorization: Bearer <token>)");
    return OD_ROLE_NONE;
  }
  if (strncasecmp(authorization, "Bearer ", 7) != 0) {
    snprintf(why, why_size, "the Authorization header is not of the Bearer scheme");
    return OD_ROLE_NONE;
  }
  const char *cred = authorization + 7;
  while (*cred == ' ') cred++;
  size_t len = strnlen(cred, MAX_CREDENTIAL + 1);
  if (len == 0 || len > MAX_CREDENTIAL) {
    snprintf(why, why_size, "the bearer credential is empty or longer than %d bytes", MAX_CREDENTIAL);
    return OD_ROLE_NONE;
  }
  int index = -1;
  int role = a->ntokens ? match_token(a, cred, len, &index) : OD_ROLE_NONE;
  if (role != OD_ROLE_NONE) {
    snprintf(who, who_size, "token#%d", index);
    return role;
  }
  int dots = 0;
  for (size_t i = 0; i < len; i++) dots += cred[i] == '.';
  if (a->ac->jwt.enabled && dots == 2) return check_jwt(a, cred, who, who_size, why, why_size);
  snprintf(why, why_size, "the bearer credential matches no configured token%s",
           a->ac->jwt.enabled ? " and is not a JWT" : "");
  return OD_ROLE_NONE;
}
